"""The judgement of a window (canary step, watch window) from the per-colour tallies of observe/clients.py.

Pure logic. The statistics: the failure share is judged by the one-sided 95 % Wilson score lower bound of a
binomial share (observe/stats.py ``wilson_lower``), so a single unlucky error in a small sample is no abort while a few
failures of a few requests are; latency by nearest-rank percentiles (stats ``percentile``) against the old
colour's in the same window, or (the watch window, where the old colour gets only retries) against its
``baseline`` before the switch (observe/baseline.py). ``judge`` says which rule fired, with the figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bluegreen_hooks.observe.stats import Z_ONE_SIDED_95, wilson_lower

if TYPE_CHECKING:
    from bluegreen_hooks.observe.baseline import Baseline
    from bluegreen_hooks.observe.clients import Tally

OnTooFew = Literal["abort", "extend", "promote"]
ON_TOO_FEW = ("abort", "extend", "promote")


@dataclass(frozen=True)
class Rules:
    """What a window must meet. Defaults: 1 % failures, 50 attempts, p95/p99 at most 2x the old colour's
    and 100 ms more, too few → abort."""

    max_error_rate: float = 0.01
    min_requests: int = 50
    latency_factor: float = 2.0          # new p95/p99 may be up to this times the old's ...
    latency_margin: float = 0.1          # ... and more than this many seconds above it
    on_too_few: OnTooFew = "abort"
    min_latency_samples: int = 20        # p95 needs this many clients' attempts on each colour; p99 five times as many
    z: float = Z_ONE_SIDED_95


@dataclass(frozen=True)
class Verdict:
    """``outcome``: ``ok`` (go on), ``abort``, ``wait`` (too few so far, time left: look again) or ``extend``
    (too few at the end, on_too_few = "extend": carry the window into the next one). ``reasons``: a
    sentence each, with figures; ``notes``: what was not judged and why."""

    outcome: str
    reasons: tuple[str, ...]
    new: Tally
    old: Tally
    notes: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "; ".join(self.notes)

    def to_json(self) -> dict[str, object]:
        return {"outcome": self.outcome, "reasons": list(self.reasons), "notes": list(self.notes),
                "new": self.new.to_json(), "old": self.old.to_json()}


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def judge(new: Tally, old: Tally, rules: Rules, *, can_wait: bool = False, baseline: Baseline | None = None,
          latency: bool = True) -> Verdict:
    """Judge the new colour's window against the rules and the old colour's same window; fail closed.

    * **failures**: abort when the one-sided 95 % Wilson lower bound of the new colour's failure share is
      above ``max_error_rate`` and the new share is above the old colour's (an outage failing both alike is
      not the new version's fault). The bound makes one unlucky error in a small sample no abort, while
      3 failures of 3 already give a bound of 53 %.
    * **latency**: abort when the new colour's p95 (and p99, with 5x ``min_latency_samples``) is above the
      old's times ``latency_factor`` *and* more than ``latency_margin`` seconds above it. With a ``baseline``
      (the watch window) the old colour's figures are the baseline's, from before the switch; too small a
      baseline leaves latency unjudged (a note says so). ``latency=False``: not judged in this look.
    * **too few** (fewer than ``min_requests`` attempts on the new colour, probes included, or fewer than
      ``min_latency_samples`` clients' latencies on either colour): ``wait`` while ``can_wait``; then, for
      too few attempts, ``on_too_few``: ``abort`` (the default), ``extend`` or ``promote`` (goes on: ``ok``,
      with the reason said). Evidence of harm aborts even when the count is small.
    """
    reasons: list[str] = []
    notes: list[str] = []
    if new.failed and new.share > old.share:
        bound = wilson_lower(new.failed, new.attempts, rules.z)
        if bound > rules.max_error_rate:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(new.failures.items()))
            reasons.append(f"failed {_pct(new.share)} ({new.failed} of {new.attempts}: {kinds}; 95 % lower bound "
                           f"{_pct(bound)}) vs old {_pct(old.share)} ({old.failed} of {old.attempts}), "
                           f"max_error_rate {_pct(rules.max_error_rate)}")
    n_old = len(old.latencies) if baseline is None else baseline.samples
    before = "" if baseline is None else " before the switch"
    for p, need in ((95, rules.min_latency_samples), (99, 5 * rules.min_latency_samples)) if latency else ():
        if len(new.latencies) < need or n_old < need:
            notes.append(f"p{p} not judged: {len(new.latencies)} new / {n_old} old latencies{before} "
                         f"(needs {need} each)")
            continue
        n_p, o_p = new.percentile(p), old.percentile(p) if baseline is None else baseline.percentile(p)
        if n_p is None or o_p is None:     # a recorded baseline without its p99
            notes.append(f"p{p} not judged: no old p{p}{before}")
            continue
        if n_p > o_p * rules.latency_factor and n_p - o_p > rules.latency_margin:
            reasons.append(f"p{p} {n_p:.3f}s vs old {o_p:.3f}s{before} (more than {rules.latency_factor:g}x and "
                           f"{rules.latency_margin * 1000:g} ms above)")
    if reasons:
        return Verdict("abort", tuple(reasons), new, old, tuple(notes))
    if can_wait and min(len(new.latencies), n_old) < rules.min_latency_samples:
        return Verdict("wait", (), new, old, tuple(notes))
    if new.attempts < rules.min_requests:
        few = f"only {new.attempts} requests through the new colour (min_requests {rules.min_requests})"
        if can_wait:
            return Verdict("wait", (), new, old, (few,))
        if rules.on_too_few == "abort":
            return Verdict("abort", (few + ": on_too_few = \"abort\"",), new, old, tuple(notes))
        if rules.on_too_few == "extend":
            return Verdict("extend", (), new, old, (few + ": on_too_few = \"extend\"", *notes))
        return Verdict("ok", (), new, old, (few + ": promoted anyway, on_too_few = \"promote\"", *notes))
    return Verdict("ok", (), new, old, tuple(notes))
