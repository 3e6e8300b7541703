"""The watch window's latency baseline: the old colour's latency as clients saw it just before the switch.

During the watch window (lifecycle/watch.py) the new colour gets every request and the old colour only nginx's
retries, so there is no same-window latency of the old colour to compare with. The baseline is taken instead
from the same client log (observe/clients.py's format), which ApplicationStart turns on while the new colour
starts (host/nginx_watch.render_baseline), and recorded at the switch in the deployment's state, so
ValidateService (a later process) judges the new colour's p95/p99 against it with the canary's latency rule
(observe/judgement.judge, ``latency_factor`` and ``latency_margin``). The switch never waits for it: the watch's
cost stays its window (``deploy/watch_seconds``).

Pure logic. The window: the old colour's *successful* attempts of clients' requests (not 499, no failure kind)
in the last ``SECONDS`` before the switch, at most the last ``MAX_SAMPLES`` of them (fresh and bounded; at the
switch only the log's last ``TAIL_BYTES`` are read). The minimum counts are the judgement's own:
``min_latency_samples`` (20) for p95, five times that for p99. A baseline below them (a quiet site, a new
colour that started in a second, no log before the switch) is said in the output and in the receipt, and the
watch then judges errors and too-few only: fail safe, never a switch back without evidence of harm.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from bluegreen_hooks.observe.clients import Entry, attempt_failure
from bluegreen_hooks.observe.stats import percentile

SECONDS = 60.0            # the baseline covers at most the last 60 s before the switch ...
MAX_SAMPLES = 1000        # ... and at most the old colour's last 1000 successful attempts in them
TAIL_BYTES = 4 << 20      # the log's tail read at the switch (a line is ~300 bytes: some 14,000 requests)


@dataclass(frozen=True)
class Baseline:
    """``samples`` latencies of ``colour`` in the ``seconds`` before the switch, their p95/p99 (None: no
    samples); ``why``: why there is none (no log of ours before the switch)."""

    colour: str
    samples: int = 0
    p95: float | None = None
    p99: float | None = None
    seconds: float = 0.0
    why: str = ""

    def percentile(self, p: int) -> float | None:
        return {95: self.p95, 99: self.p99}.get(p)

    def describe(self, min_samples: int) -> str:
        """One line for the hook's output: the figures, and what the watch judges with them."""
        if self.why:
            return f"no latency baseline of {self.colour} ({self.why}): the watch judges errors, not latency"
        head = (f"latency baseline of {self.colour}: {self.samples} clients' requests in the {self.seconds:.1f}s "
                f"before the switch")
        if self.samples < min_samples:
            return (f"{head}, fewer than the {min_samples} a p95 needs: the watch judges errors, not latency")
        p99 = f", p99 {self.p99:.3f}s" if self.p99 is not None and self.samples >= 5 * min_samples else ""
        return f"{head}, p95 {self.p95:.3f}s{p99}"

    def to_json(self) -> dict[str, Any]:
        return {"colour": self.colour, "samples": self.samples, "seconds": round(self.seconds, 2),
                "p95": None if self.p95 is None else round(self.p95, 4),
                "p99": None if self.p99 is None else round(self.p99, 4), **({"why": self.why} if self.why else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, colour: str) -> Baseline:
        """The recorded baseline of ``colour``; an empty one (with ``why``) when none or another colour's."""
        if not isinstance(data, Mapping) or data.get("colour") != colour:
            return cls(colour, why="none was recorded at the switch")

        def num(key: str) -> float | None:
            v = data.get(key)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None

        samples = data.get("samples")
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0 or num("p95") is None:
            samples = 0     # no figure to compare with: nothing judged against it
        return cls(colour, samples, num("p95"), num("p99"),
                   num("seconds") or 0.0, str(data.get("why") or ""))


def of(entries: Iterable[Entry], colour_of: Callable[[str], str | None], colour: str, until: float,
       seconds: float = SECONDS, limit: int = MAX_SAMPLES) -> Baseline:
    """The baseline of ``colour`` from ``entries`` (log lines), for a switch at ``until`` (epoch seconds)."""
    found: list[tuple[float, float]] = []
    for e in entries:
        if not until - seconds <= e.msec <= until or e.status == 499:
            continue
        for i, a in enumerate(e.attempts):
            if a.response_time is not None and colour_of(a.addr) == colour and attempt_failure(e, i) is None:
                found.append((e.msec, a.response_time))
    found.sort()
    kept = found[-limit:] if limit > 0 else []
    if not kept:
        return Baseline(colour, 0, None, None, 0.0)
    values = [t for _, t in kept]
    return Baseline(colour, len(values), percentile(values, 95), percentile(values, 99), max(0.0, until - kept[0][0]))
