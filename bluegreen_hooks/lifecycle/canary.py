"""The automatic canary: after the new colour is healthy, ApplicationStart sends it a share of the real
requests step by step ([canary] steps), judges each step from nginx's own per-colour access logs, then
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

import time
from dataclasses import dataclass

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError, HookError, NginxError
from bluegreen_hooks.host import nginx, nginx_canary
from bluegreen_hooks.host.nginx_canary import Split, Tally
from bluegreen_hooks.host.wait import poll
from bluegreen_hooks.lifecycle import steps
from bluegreen_hooks.lifecycle.steps import Context
from bluegreen_hooks.model import Canary, Colour, is_deployment_id

REQUESTS = ("promote", "abort")
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
    from bluegreen_hooks.agent import appspec

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


def check_logging(cfg: Config) -> tuple[str, ...]:
    """The user's access_log lines to restate; raise NginxError when the canary could not count answers."""
    found = nginx_canary.user_access_logs(cfg)
    if found.problem:
        raise NginxError(f"canary: cannot log answers per colour: {found.problem}; fix the nginx config or "
                         f"remove the [canary] table")
    return found.restated


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class Judged:
    """One step's outcome: the verdict (ok | abort | promote | extended-ok), both tallies, seconds."""

    verdict: str
    new: Tally
    old: Tally
    seconds: float
    by: str | None = None


def run(ctx: Context, old: Colour, new: Colour, deployment_id: str) -> nginx.Switch:
    """Walk the steps, then promote; on a bad step or an operator's abort go back to ``old`` and raise
    CanaryAborted. Any other failure (SIGTERM, an nginx error) also puts all traffic back on ``old``."""
    cfg = ctx.cfg
    restated = check_logging(cfg)
    st = ctx.store.read(quarantine=False).state
    old_dep = st.live_deployment if st.live_deployment and is_deployment_id(st.live_deployment) else "unknown"
    nginx_canary.remove_logs(cfg)
    _save(ctx, Canary(old, new, 0, started=time.time()))
    try:
        for i, share in enumerate(cfg.canary.steps if cfg.canary else ()):
            judged = _step(ctx, Split(old, new, share, old_dep, deployment_id, restated), i)
            if judged.verdict == "abort":
                raise _abort(ctx, old, new, share, judged, old_dep)
            if judged.verdict == "promote":
                ctx.say(f"canary: promote requested by {judged.by}: skipping the remaining steps")
                break
        sw = nginx.switch(cfg, new, deployment_id, ctx.say)
    except CanaryAborted:
        raise
    except BaseException:
        _back(ctx, old, old_dep, "the canary was interrupted", drain=False)
        raise
    _end(ctx, "promoted", None, 100)
    nginx_canary.remove_logs(cfg)
    ctx.say(f"canary promoted: {new} takes 100 % of requests")
    return sw


def _step(ctx: Context, split: Split, i: int) -> Judged:
    cfg = ctx.cfg
    text = nginx.render_include(cfg, split.old, split.old_deployment, split)
    nginx.apply(cfg, text, lambda before: nginx.reloaded(cfg, before))
    start = nginx_canary.offsets(cfg)
    steps = cfg.canary.steps if cfg.canary else ()
    exact = f", {nginx_canary.real_share(split.share):.1f} % exactly" if cfg.nginx.form == "set" else ""
    ctx.say(f"canary step {i + 1} of {len(steps)}: {split.share} % of requests to {split.new}{exact} "
            f"(watched {cfg.canary.step_seconds if cfg.canary else 0:g}s)")
    with ctx.store.update() as st:
        ip = st.holder(ctx.deployment_id)
        if ip is not None and ip.canary is not None:
            ip.canary.share, ip.canary.step = split.share, i
    judged = watch(ctx, split, start)
    rec = {"share": split.share, "seconds": round(judged.seconds, 2), "verdict": judged.verdict,
           "new": judged.new.to_json(), "old": judged.old.to_json()}
    with ctx.store.update() as st:
        ip = st.holder(ctx.deployment_id)
        if ip is not None and ip.canary is not None:
            ip.canary.steps.append(rec)
    ctx.say(f"canary step {i + 1} at {split.share} %: {split.new} {_figures(judged.new)}, {split.old} "
            f"{_figures(judged.old)} in {judged.seconds:.1f}s: {judged.verdict}")
    return judged


def _figures(t: Tally) -> str:
    return f"{t.requests} requests, 5xx {t.rate * 100:.1f} % ({t.errors})"


def watch(ctx: Context, split: Split, start: dict[Colour, int]) -> Judged:
    """Watch one step: at least step_seconds, extended up to max_wait while the new colour has fewer than
    min_requests; an operator's promote/abort ends it at once. Then judge."""
    cfg, cc = ctx.cfg, ctx.cfg.canary
    assert cc is not None
    t0, said = time.monotonic(), [False]

    def done() -> Judged | None:
        elapsed = time.monotonic() - t0
        new, old = nginx_canary.tally(cfg, split.new, start[split.new]), nginx_canary.tally(cfg, split.old,
                                                                                         start[split.old])
        request = _request(ctx)
        if request is not None:
            return Judged(request[0], new, old, elapsed, request[1])
        if elapsed < cc.step_seconds:
            return None
        if new.requests < cc.min_requests and elapsed < cc.step_limit:
            if not said[0]:
                ctx.say(f"canary: only {new.requests} requests through {split.new} after {elapsed:.1f}s "
                        f"(min_requests {cc.min_requests}): step extended, up to {cc.step_limit:g}s")
                said[0] = True
            return None
        return Judged(_verdict(cc.max_error_rate, new, old), new, old, elapsed)

    judged = poll(done, cc.step_limit + 5, interval=POLL, max_interval=POLL)
    if judged is None:   # the poll's own deadline: judge what there is
        new, old = nginx_canary.tally(cfg, split.new, start[split.new]), nginx_canary.tally(cfg, split.old,
                                                                                         start[split.old])
        judged = Judged(_verdict(cc.max_error_rate, new, old), new, old, time.monotonic() - t0)
    return judged


def _verdict(max_rate: float, new: Tally, old: Tally) -> str:
    """abort when the new colour's 5xx share is above max_error_rate AND above the old colour's."""
    return "abort" if new.rate > max_rate and new.rate > old.rate else "ok"


def _request(ctx: Context) -> tuple[str, str | None] | None:
    """An operator's ``bluegreen-hooks canary promote|abort`` for this deployment, if one is waiting."""
    ip = ctx.store.read(quarantine=False).state.holder(ctx.deployment_id)
    c = ip.canary if ip else None
    return (c.request, c.requested_by) if c is not None and c.request in REQUESTS else None


def _abort(ctx: Context, old: Colour, new: Colour, share: int, j: Judged, old_dep: str | None) -> CanaryAborted:
    """Back to 0 % at once, wait for the canary's nginx workers, and the error the event fails with."""
    if j.by:
        msg = (f"canary aborted at {share} % by {j.by}: new colour 5xx {j.new.rate * 100:.1f} % "
               f"({j.new.errors} of {j.new.requests}) vs old {j.old.rate * 100:.1f} % "
               f"({j.old.errors} of {j.old.requests})")
    else:
        msg = (f"canary aborted at {share} %: new colour 5xx {j.new.rate * 100:.1f} % ({j.new.errors} of "
               f"{j.new.requests}) vs old {j.old.rate * 100:.1f} % ({j.old.errors} of {j.old.requests}), "
               f"max_error_rate {ctx.cfg.canary.max_error_rate * 100 if ctx.cfg.canary else 0:g} %")
    ctx.say(msg)
    _back(ctx, old, old_dep, msg)
    return CanaryAborted(f"{msg}; {new} removed")


def _back(ctx: Context, old: Colour, old_dep: str | None, cause: str, drain: bool = True) -> None:
    """All traffic to ``old`` at once; let the canary's nginx workers finish (``drain``); remember why."""
    back = nginx.switch(ctx.cfg, old, old_dep if old_dep and is_deployment_id(old_dep) else "unknown", ctx.say)
    _end(ctx, "aborted", cause, 0)
    nginx_canary.remove_logs(ctx.cfg)
    if drain:
        steps.drain(ctx, back.old_workers, "nginx workers of the canary finished their requests")


def _save(ctx: Context, canary: Canary) -> None:
    with ctx.store.update() as st:
        ip = st.holder(ctx.deployment_id)
        if ip is not None:
            ip.canary = canary


def _end(ctx: Context, phase: str, cause: str | None, share: int) -> None:
    with ctx.store.update() as st:
        ip = st.holder(ctx.deployment_id)
        if ip is not None and ip.canary is not None:
            ip.canary.phase, ip.canary.cause, ip.canary.share = phase, cause, share
