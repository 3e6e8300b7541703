"""The automatic canary: after the new colour is healthy, ApplicationStart sends it a share of the real
requests step by step ([canary] steps), judges each step from nginx's own log of what clients experienced,
per colour and per attempt (observe/clients.py: failures AND latency, fail closed), with probes of its own
forced to the new colour, then
promotes (100 %, and the lifecycle goes on: ValidateService drains and stops the old colour) or aborts
(0 % at once, the new colour removed, the event fails with the figures).

Why ApplicationStart: the canary is part of *moving traffic*, which ApplicationStart owns; an abort
then fails exactly like a new colour that never got healthy (bring_up removes it, the old colour never
stopped serving), and ValidateService keeps its meaning (validate the promoted colour, drain, stop the
old one). BeforeInstall refuses a step plan that cannot finish within ApplicationStart's timeout in
appspec.yml.

Every step goes through ``nginx.apply`` (write → ``nginx -t`` → reload → check), like a switch.
"""
from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError, HookError, NginxError
from bluegreen_hooks.host import nginx, nginx_canary
from bluegreen_hooks.host.nginx_canary import Split
from bluegreen_hooks.host.wait import poll
from bluegreen_hooks.lifecycle import steps
from bluegreen_hooks.lifecycle.steps import Context, verify_mode
from bluegreen_hooks.model import Canary, CanaryPhase, Colour, VerifyMode, is_deployment_id
from bluegreen_hooks.observe import clients, judgement

POLL = 0.25          # how often a step looks at the logs and at an operator's request (seconds)
SWITCH_MARGIN = 30   # seconds the plan check keeps for each apply (test, reload, verify) and the drain


class CanaryAborted(HookError):
    """The canary's new colour did worse than allowed (or an operator aborted it): traffic is back on the old."""


# ------------------------------------------------------------------------------------ BeforeInstall checks

def plan_seconds(cfg: Config) -> float:
    """The longest ApplicationStart can take with the canary: health deadline, every step at its limit,
    and a margin per nginx apply and for the drain after an abort."""
    cc = cfg.canary
    if cc is None:
        return 0.0
    return cfg.health.deadline + cc.longest + SWITCH_MARGIN * (len(cc.steps) + 2) + cfg.drain_timeout


def check_plan(cfg: Config) -> str:
    """Refuse a step plan longer than ApplicationStart's timeout in the bundle's appspec.yml; return a note."""
    from bluegreen_hooks.config import appspec

    path = cfg.root / "appspec.yml"
    try:
        spec = appspec.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {path.name} next to {cfg.path.name}: the canary's length is not checked against a hook timeout"
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    scripts = spec.hooks.get("ApplicationStart", ())
    timeout = sum(s.timeout for s in scripts) or appspec.DEFAULT_TIMEOUT
    need = plan_seconds(cfg)
    if need > timeout:
        raise ConfigError(f"{cfg.path.name}: canary: the step plan needs up to {need:.0f}s (health deadline "
                          f"{cfg.health.deadline:g}s + {len(cfg.canary.steps) if cfg.canary else 0} steps of at most "
                          f"{cfg.canary.step_limit if cfg.canary else 0:g}s + margins) but {path.name} gives "
                          f"ApplicationStart {timeout}s; shorten canary/steps, step_seconds or max_wait, or raise "
                          f"the hook's timeout")
    return f"canary plan fits: at most {need:.0f}s of ApplicationStart's {timeout}s"


def check_logging(cfg: Config) -> nginx_canary.Logging:
    """The user's access_log lines to restate and (set form) where our http-level log format goes; raise
    NginxError (one line naming what to add) when the canary could not count what clients experienced."""
    found = nginx_canary.user_access_logs(cfg)
    if found.problem:
        raise NginxError(f"canary: cannot log what clients experience: {found.problem}")
    return found


# ---------------------------------------------------------------------------------------------- probes

def probe_settings(cfg: Config) -> tuple[tuple[str, ...], float, float]:
    """(paths, interval, timeout) of the probes: [canary]'s ``probe_paths`` (else nginx/validate_path),
    ``probe_interval`` and ``probe_timeout``; with no [canary] (the watch window alone) nginx/validate_path
    and [canary]'s defaults."""
    from bluegreen_hooks.config.canary import DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_TIMEOUT

    cc = cfg.canary
    if cc is None:
        return (cfg.nginx.validate_path,), DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_TIMEOUT
    return cc.probe_paths or (cfg.nginx.validate_path,), cc.probe_interval, cc.probe_timeout


class Prober:
    """Our own requests to the public URL, one path at a time (``probe_settings``), every ``probe_interval``
    seconds, each with ``probe_timeout``. During the canary they carry its token (``ROUTE_HEADER``), which
    forces them to the new colour; in the watch window (``token`` "") the new colour is nginx's primary and
    they need none. nginx logs them like any request (marked by their ids); the client side of each is kept
    too: during the canary a probe answered by the other colour means the routing failed, and fails the step."""

    def __init__(self, cfg: Config, token: str, new: Colour) -> None:
        self.cfg, self.token, self.new = cfg, token, new
        self.paths, self.interval, self.timeout = probe_settings(cfg)
        self.ids: set[str] = set()
        self.sent = self.failed = self.elsewhere = 0
        self.last_failure = ""
        self.reached = False             # a probe was answered by the new colour (before: a stale nginx worker)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary-probes", daemon=True)

    def start(self) -> Prober:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self, wait: bool = True) -> None:
        """Stop sending; ``wait``: for the probe in flight too (up to ``probe_timeout``). Without it the thread
        (a daemon) ends by itself once that probe is answered or times out."""
        self._stop.set()
        if wait and self._thread.is_alive():
            self._thread.join(self.timeout + 2)

    def sent_ids(self) -> set[str]:
        """The ids of the probes sent so far (a copy: the probe thread adds to them)."""
        with self._lock:
            return set(self.ids)

    def counts(self) -> tuple[int, int, int]:
        with self._lock:
            return self.sent, self.failed, self.elsewhere

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                if self._stop.is_set():
                    return
                self.one(path)
                self._stop.wait(self.interval)

    def one(self, path: str) -> None:
        pid = uuid.uuid4().hex[:16]
        with self._lock:
            self.ids.add(pid)
            self.sent += 1
        headers = {clients.PROBE_HEADER: pid, "User-Agent": "bluegreen-hooks-probe"}
        if self.token:
            headers[nginx_canary.ROUTE_HEADER] = self.token
        try:
            a = nginx.probe(self.cfg, path, timeout=self.timeout, headers=headers)
        except OSError as exc:
            with self._lock:
                self.failed += 1
                self.last_failure = f"{path}: {type(exc).__name__}: {exc}"
            return
        with self._lock:
            if a.status >= 500:
                self.failed += 1
                self.last_failure = f"{path}: HTTP {a.status}"
            if a.colour == self.new:
                self.reached = True
            elif a.colour and self.reached:
                self.elsewhere += 1
                self.last_failure = f"{path}: answered by {a.colour}, not {self.new}"

    def to_json(self) -> dict[str, object]:
        sent, failed, elsewhere = self.counts()
        return {"sent": sent, "failed": failed, "elsewhere": elsewhere, "paths": list(self.paths)}


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class Judged:
    """One step's outcome: the verdict (ok | abort | promote | extend), both tallies, seconds, why."""

    verdict: str
    new: clients.Tally
    old: clients.Tally
    seconds: float
    by: str | None = None
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def rules(cfg: Config) -> judgement.Rules:
    cc = cfg.canary
    assert cc is not None
    on: judgement.OnTooFew = "extend" if cc.on_too_few == "extend" else (
        "promote" if cc.on_too_few == "promote" else "abort")
    return judgement.Rules(max_error_rate=cc.max_error_rate, min_requests=cc.min_requests,
                         latency_factor=cc.latency_factor, latency_margin=cc.latency_margin, on_too_few=on)


@dataclass
class Watch:
    """What a run needs to count: the log reader, the probes, a window carried over (on_too_few = extend)."""

    reader: clients.LogReader
    prober: Prober
    colour_of: Callable[[str], str | None]
    carried: list[clients.Entry]


def run(ctx: Context, old: Colour, new: Colour, deployment_id: str) -> nginx.Switch:
    """Walk the steps, then promote; on a bad step or an operator's abort go back to ``old`` and raise
    CanaryAborted. Any other failure (SIGTERM, an nginx error) also puts all traffic back on ``old``."""
    cfg = ctx.cfg
    logging = check_logging(cfg)
    state = ctx.store.read(quarantine=False).state
    old_dep = state.live_deployment if state.live_deployment and is_deployment_id(state.live_deployment) else "unknown"
    nginx_canary.remove_logs(cfg)
    if logging.format_file is not None and nginx_canary.write_format_file(cfg, logging.format_file):
        ctx.say(f"canary: the log format is in {logging.format_file} (nginx's http level; kept for later "
                f"deployments)")
    token = secrets.token_hex(16)
    w = Watch(clients.LogReader(nginx_canary.clients_log(cfg), offset=0), Prober(cfg, token, new),
              clients.colour_by_port(nginx_canary.colour_ports(cfg)), [])
    _save(ctx, Canary(old, new, 0, started=time.time()))
    try:
        steps_ = cfg.canary.steps if cfg.canary else ()
        for i, share in enumerate(steps_):
            judged = _step(ctx, Split(old, new, share, old_dep, deployment_id, logging.restated, token), i, w)
            if judged.verdict == "abort":
                w.prober.stop()
                raise _abort(ctx, old, new, share, judged, old_dep)
            if judged.verdict == "promote":
                ctx.say(f"canary: promote requested by {judged.by}: skipping the remaining steps")
                break
        w.prober.stop()
        sw = nginx.switch(cfg, new, deployment_id, ctx.say, verify_mode(ctx))
    except CanaryAborted:
        raise
    except BaseException:
        w.prober.stop()
        _back(ctx, old, old_dep, "the canary was interrupted", drain=False)
        raise
    _end(ctx, "promoted", None, 100)
    nginx_canary.remove_logs(cfg)
    ctx.say(f"canary promoted: {new} takes 100 % of requests")
    return sw


def _step(ctx: Context, split: Split, i: int, w: Watch) -> Judged:
    cfg = ctx.cfg
    text = nginx.render_include(cfg, split.old, split.old_deployment, split)
    mode = verify_mode(ctx)   # decided at the first step, recorded for the deployment

    def check(before: list[list[int]]) -> None:
        nginx.reloaded(cfg, before, mode)
        routed(cfg, split, mode)

    nginx.apply(cfg, text, check)
    if i == 0:
        w.prober.start()
    steps = cfg.canary.steps if cfg.canary else ()
    exact = f", {nginx_canary.real_share(split.share):.1f} % exactly" if cfg.nginx.form == "set" else ""
    ctx.say(f"canary step {i + 1} of {len(steps)}: {split.share} % of requests to {split.new}{exact} "
            f"(watched {cfg.canary.step_seconds if cfg.canary else 0:g}s)")
    with ctx.store.update() as state:
        in_progress = state.holder(ctx.deployment_id)
        if in_progress is not None and in_progress.canary is not None:
            in_progress.canary.share, in_progress.canary.step = split.share, i
    sent0 = w.prober.counts()
    judged = watch(ctx, split, w)
    if judged.verdict == "extend" and i == len(steps) - 1:      # nothing left to carry the window into
        judged.verdict = "abort"
        judged.reasons = (*judged.notes[:1], "still too few at the last step (on_too_few = \"extend\")")
    sent1 = w.prober.counts()
    probes = {"sent": sent1[0] - sent0[0], "failed": sent1[1] - sent0[1], "elsewhere": sent1[2] - sent0[2]}
    rec = {"share": split.share, "seconds": round(judged.seconds, 2), "verdict": judged.verdict,
           "new": judged.new.to_json(), "old": judged.old.to_json(), "reasons": list(judged.reasons),
           "notes": list(judged.notes), "probes": probes}
    with ctx.store.update() as state:
        in_progress = state.holder(ctx.deployment_id)
        if in_progress is not None and in_progress.canary is not None:
            in_progress.canary.steps.append(rec)
    ctx.say(f"canary step {i + 1} at {split.share} %: {split.new} {judged.new.figures()}, {split.old} "
            f"{judged.old.figures()}; probes {probes['sent']} sent, {probes['failed']} failed, in "
            f"{judged.seconds:.1f}s: {judged.verdict}" + "".join(f"\n  {x}" for x in judged.reasons + judged.notes))
    return judged


def routed(cfg: Config, split: Split, mode: VerifyMode) -> None:
    """The step's check after the reload (set form): a request with the canary's token is answered by the new
    colour (when nginx sends the colour header: ``mode``); raise NginxError, and nginx.apply puts the previous include
    back. Not in the upstream form: there nginx may rightly send the token's request to the old colour (it
    took a failing new server out for fail_timeout), and the step's judgement of the log is what counts."""
    if not split.token or cfg.nginx.form != "set" or mode != "header":
        return
    headers = {nginx_canary.ROUTE_HEADER: split.token, "User-Agent": "bluegreen-hooks-probe"}
    last = ["no answer"]

    def answered() -> bool:
        try:
            a = nginx.probe(cfg, cfg.health.path, timeout=2.0, headers=headers)
        except OSError as exc:
            last[0] = f"{type(exc).__name__}: {exc}"
            return False
        last[0] = f"HTTP {a.status} from {a.colour or '(no colour header)'}"
        return a.colour == split.new

    if not poll(answered, cfg.nginx.verify_timeout, interval=0.01, max_interval=0.05):
        raise NginxError(f"canary: a request with the probe token to {cfg.nginx.public_url}{cfg.health.path} was not "
                         f"answered by {split.new} (last: {last[0]})")


def watch(ctx: Context, split: Split, w: Watch) -> Judged:
    """Watch one step: at least step_seconds, extended up to max_wait while the new colour has fewer than
    min_requests (probes included) or either colour fewer than 20 clients' latencies; clear harm (3 failed
    attempts with the bound above max_error_rate) or an operator's promote/abort ends it at once. Then judge
    (observe/judgement.judge)."""
    cfg, cc = ctx.cfg, ctx.cfg.canary
    assert cc is not None
    r = rules(cfg)
    t0, said = time.monotonic(), [False]
    entries = list(w.carried)
    w.carried = []
    # what was logged since the last look counts in this step: in step 1 it is all this include's traffic (the
    # log exists only during the canary), later the reload's few hundred ms: fail closed, nothing is dropped

    def look(final: bool) -> Judged | None:
        elapsed = time.monotonic() - t0
        entries.extend(w.reader.read())
        t = clients.tally(entries, w.colour_of, probe_ids=w.prober.sent_ids())
        new, old = t[split.new], t[split.old]
        request = _request(ctx)
        if request is not None:
            return Judged(request[0], new, old, elapsed, request[1])
        v = judgement.judge(new, old, r, can_wait=not final and elapsed < cc.step_limit)
        if v.outcome == "abort" and (final or elapsed >= cc.step_seconds or new.failed >= 3):
            return Judged("abort", new, old, elapsed, reasons=v.reasons, notes=v.notes)
        sent, _, elsewhere = w.prober.counts()
        if elsewhere:      # nginx took the new colour out after failures (upstream form), or the routing broke
            return Judged("abort", new, old, elapsed, reasons=(
                f"{elsewhere} of {sent} probes were not answered by {split.new} ({w.prober.last_failure}; "
                f"{split.new} {new.figures()})",))
        if elapsed < cc.step_seconds and not final:
            return None
        if v.outcome == "wait":
            if not said[0]:
                ctx.say(f"canary: only {new.attempts} requests through {split.new} ({len(new.latencies)} of "
                        f"clients, {len(old.latencies)} through {split.old}) after {elapsed:.1f}s (min_requests "
                        f"{cc.min_requests}, {r.min_latency_samples} latencies each): step extended, up to "
                        f"{cc.step_limit:g}s")
                said[0] = True
            return None
        if v.outcome == "extend":
            w.carried = entries
        return Judged(v.outcome, new, old, elapsed, reasons=v.reasons, notes=v.notes)

    judged = poll(lambda: look(False), cc.step_limit + 5, interval=POLL, max_interval=POLL)
    return judged if judged is not None else look(True) or Judged("abort", clients.Tally(), clients.Tally(), 0.0)


def _request(ctx: Context) -> tuple[str, str | None] | None:
    """An operator's ``bluegreen-hooks canary promote|abort`` for this deployment, if one is waiting."""
    in_progress = ctx.store.read(quarantine=False).state.holder(ctx.deployment_id)
    c = in_progress.canary if in_progress else None
    return (c.request, c.requested_by) if c is not None and c.request is not None else None


def _abort(ctx: Context, old: Colour, new: Colour, share: int, j: Judged, old_dep: str | None) -> CanaryAborted:
    """Back to 0 % at once, wait for the canary's nginx workers, and the error the event fails with."""
    if j.by:
        msg = f"canary aborted at {share} % by {j.by}: new colour {new} {j.new.figures()}; old {j.old.figures()}"
    else:
        msg = f"canary aborted at {share} %: new colour {new} " + "; ".join(j.reasons)
    ctx.say(msg)
    _back(ctx, old, old_dep, msg)
    return CanaryAborted(f"{msg}; {new} removed")
def _back(ctx: Context, old: Colour, old_dep: str | None, cause: str, drain: bool = True) -> None:
    """All traffic to ``old`` at once; let the canary's nginx workers finish (``drain``); remember why."""
    back = nginx.switch(ctx.cfg, old, old_dep if old_dep and is_deployment_id(old_dep) else "unknown", ctx.say,
                        verify_mode(ctx))
    _end(ctx, "aborted", cause, 0)
    nginx_canary.remove_logs(ctx.cfg)
    if drain:
        steps.drain(ctx, back.old_workers, "nginx workers of the canary finished their requests")


def _save(ctx: Context, canary: Canary) -> None:
    with ctx.store.update() as state:
        in_progress = state.holder(ctx.deployment_id)
        if in_progress is not None:
            in_progress.canary = canary


def _end(ctx: Context, phase: CanaryPhase, cause: str | None, share: int) -> None:
    with ctx.store.update() as state:
        in_progress = state.holder(ctx.deployment_id)
        if in_progress is not None and in_progress.canary is not None:
            in_progress.canary.phase, in_progress.canary.cause, in_progress.canary.share = phase, cause, share
