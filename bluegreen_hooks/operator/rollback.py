"""``rollback``: make the previous release live again, through the same steps as a deployment.

Under the app's claim (lifecycle/steps.claim, as a deployment takes it): if the previous
colour still runs the previous release, health-check it and switch nginx to it; else start the
previous image as that colour, wait until healthy, then switch (``steps.bring_up``). Then drain the old
nginx workers and stop the colour rolled back from (``steps.retire``) unless ``keep_other``. The run
is audited like an event (``runner.audit``) under a ``rollback-…`` deployment id.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.decide import interrupted_switch, reconcile
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.host.store import Read
from bluegreen_hooks.lifecycle import steps
from bluegreen_hooks.lifecycle.runner import audit
from bluegreen_hooks.lifecycle.steps import Context
from bluegreen_hooks.model import Colour, Running, Say, State, finish_event, is_deployment_id
from bluegreen_hooks.names import operation_id
from bluegreen_hooks.operator.text import first_line
from bluegreen_hooks.runtime.base import Backend

ROLLBACK_EVENT = "Rollback"


class NoPreviousRelease(HookError):
    """Rollback has nothing to go back to."""


class RollbackFailed(HookError):
    """A rollback step failed after the claim; the colour that was live keeps serving.

    It keeps the exit code of the error that caused it (``raise RollbackFailed(...) from exc``)."""

    def __init__(self, msg: str, exit_code: int = 1) -> None:
        super().__init__(msg)
        self.exit_code = exit_code


@dataclass
class RollbackPlan:
    """What a rollback goes from and to, decided under the claim."""

    live: Colour                   # the colour rolled back from
    live_d: str | None
    live_image: str | None
    prev: Colour                   # the colour rolled back to
    prev_d: str | None
    prev_image: str | None
    up: Running | None             # "switch": what the previous colour runs now
    start_image: str | None        # "restart": the image to start the previous colour from

    @property
    def mode(self) -> str:
        """"switch" (the previous colour still runs) or "restart" (start its image first)."""
        return "switch" if self.start_image is None else "restart"


def _refuse_unless_possible(cfg: Config, state: State, running: Any) -> tuple[Colour, Colour]:
    """(live, previous); NoPreviousRelease when nothing is live, no previous release is recorded, or it
    failed its deployment."""
    live, prev = state.live, state.previous
    if not live:
        raise NoPreviousRelease(f"nothing to roll back: no colour is live for {cfg.app} (see `bluegreen-hooks status`)")
    if not prev or prev == live or not (state.previous_image or running.get(prev)):
        raise NoPreviousRelease(f"nothing to roll back to: {cfg.app} has no previous release recorded "
                                f"(live: {live}, deployment {state.live_deployment})")
    failed = next((d for d in reversed(state.deployments) if d.get("id") == state.previous_deployment), None)
    if failed and failed.get("outcome") == "failed" and state.previous_deployment != state.live_deployment:
        raise NoPreviousRelease(f"the previous release {state.previous_deployment} on {prev} failed its deployment "
                                f"({(failed.get('cause') or 'no cause recorded')[:120]}); refusing to roll back "
                                f"to it: {live} ({state.live_deployment}) stays live")
    return live, prev


def _plan(cfg: Config, state: State, backend: Backend, running: Any) -> RollbackPlan:
    """Switch when the previous colour still runs its release, else restart its image (when the backend can)."""
    live, prev = _refuse_unless_possible(cfg, state, running)
    release = (live, state.live_deployment, state.live_image, prev, state.previous_deployment, state.previous_image)
    up = running.get(prev)
    if up and (not backend.release_per_colour or up.deployment == state.previous_deployment
               or not state.previous_image):
        return RollbackPlan(*release, up=up, start_image=None)
    why_not = backend.can_restart(prev, state.previous_image, state.previous_deployment)
    if why_not:
        raise NoPreviousRelease(why_not)
    return RollbackPlan(*release, up=None, start_image=state.previous_image)


def _claim(ctx: Context, backend: Backend) -> RollbackPlan:
    """Observe (no lock), then under the lock: reconcile, refuse or plan, and claim the app."""
    from bluegreen_hooks.lifecycle import background

    background.take_over(ctx.store, ctx.say)   # a colour retired in the background still draining: keep it
    world = steps.gather(ctx.cfg, backend)
    plans: list[RollbackPlan] = []

    def reconciled(read: Read) -> steps.Hold:
        state = read.state
        include = world.served if interrupted_switch(world) else world.include_colour
        for fixed in reconcile(state, include, world.running, read.describe(), time.time()):
            ctx.say(f"reconciled: {fixed}")
        plans.append(_plan(ctx.cfg, state, backend, world.running))
        return steps.Hold(plans[-1].prev, from_colour=plans[-1].live, image=plans[-1].prev_image)

    steps.claim(ctx, "rollback", prepare=reconciled)
    return plans[-1]


def _bring_back(ctx: Context, backend: Backend, plan: RollbackPlan) -> tuple[steps.BroughtUp, str | None]:
    """The previous colour live again (started first if needed); the switch and its deployment id."""
    prev_d = plan.prev_d
    if plan.up is not None:
        ctx.say(f"{plan.prev} still runs {plan.up.name} (deployment {plan.up.deployment or prev_d}): "
                f"switching nginx to it at once (after a health check)")
        prev_d = plan.up.deployment or prev_d
    else:
        ctx.say(f"{plan.prev} is not running: starting it from {plan.start_image}")
        steps.check_target_ports(ctx.cfg, plan.prev)
    include_id = prev_d if prev_d and is_deployment_id(prev_d) else ctx.deployment_id
    up = steps.bring_up(ctx, backend, plan.prev, None, prev_d or ctx.deployment_id, plan.live, include_id,
                        restore=plan.up is None)
    return up, prev_d


def _release_config(cfg: Config, deployment: str | None, say: Say) -> Config:
    """The config release ``deployment`` was deployed with (its ports, health, container or compose
    settings), with today's nginx, state and retention settings; ``cfg`` when none is recorded."""
    import dataclasses

    from bluegreen_hooks import config
    from bluegreen_hooks.host import releases

    release = releases.load(cfg.state_dir, cfg.app, deployment)
    if release is None or not release.file("bluegreen.toml").is_file():
        return cfg
    try:
        old = config.load(release.file("bluegreen.toml"), check_files=False)
    except HookError as exc:
        say(f"warning: the recorded config of {deployment} does not load ({exc}); using the current one")
        return cfg
    if old.app != cfg.app:
        return cfg
    return dataclasses.replace(old, nginx=cfg.nginx, state_dir=cfg.state_dir, drain_timeout=cfg.drain_timeout,
                               keep_images=cfg.keep_images, stale_after=cfg.stale_after, history=cfg.history,
                               retire=cfg.retire, tasks=())


def rollback(cfg: Config, say: Say, keep_other: bool = False) -> dict[str, Any]:
    """Make the previous release live again; return what was done. Raises HookError (nothing else changed)."""
    from bluegreen_hooks import runtime

    t0 = time.monotonic()
    ctx = Context(cfg, operation_id("rollback"), ROLLBACK_EVENT, say)
    backend = runtime.backend(cfg)
    plan = _claim(ctx, backend)
    live, prev = plan.live, plan.prev
    ctx.cfg = _release_config(cfg, plan.prev_d, say)
    if ctx.cfg is not cfg:
        backend = runtime.reconfigured(backend, ctx.cfg)
    say(f"rolling {cfg.app} back from {live} ({plan.live_d}) to {prev} ({plan.prev_d}, image {plan.prev_image})")
    try:
        up, prev_d = _bring_back(ctx, backend, plan)
    except BaseException as exc:
        audit(ctx, "failed", time.monotonic() - t0, first_line(exc), end_deployment=True)
        if isinstance(exc, HookError):
            raise RollbackFailed(f"rollback failed: {exc}; {live} keeps serving", exc.exit_code) from exc
        raise
    with ctx.store.update() as state:
        state.record_switch(prev, prev_d, plan.prev_image, time.time(), up.switch.old_workers)
        finish_event(state, ctx.deployment_id, "switched", time.time(), timings={
            "healthy": round(up.healthy_seconds, 3), "switch_ms": round(up.switch.seconds * 1000, 1)})
    live_after = time.monotonic() - t0   # what users feel: until nginx verified the old release serving
    say(f"{prev} is live again (deployment {prev_d}) after {live_after:.1f}s")
    from bluegreen_hooks.lifecycle import memory

    memory.settle_live(ctx.cfg, backend, prev, say)   # a restarted release starts with the new colour's OOM score
    stopped = _retire(ctx, backend, plan, up, keep_other, t0)
    seconds = time.monotonic() - t0
    audit(ctx, "succeeded", seconds, end_deployment=True)
    other = "retiring in the background" if stopped is None else ("stopped" if stopped else "still running")
    say(f"rollback {ctx.deployment_id} done in {seconds:.1f}s: {prev} live ({prev_d}), {live} {other}")
    return {"id": ctx.deployment_id, "mode": plan.mode, "from": live, "from_deployment": plan.live_d,
            "from_image": plan.live_image, "to": prev, "deployment": prev_d, "image": plan.prev_image,
            "stopped_other": bool(stopped), "retiring": stopped is None, "seconds": round(seconds, 3),
            "live_after": round(live_after, 3), "healthy": round(up.healthy_seconds, 3),
            "switch_ms": round(up.switch.seconds * 1000, 1)}


def _retire(ctx: Context, backend: Backend, plan: RollbackPlan, up: steps.BroughtUp, keep_other: bool,
            t0: float) -> bool | None:
    """Drain the old nginx workers, then stop the colour rolled back from (unless ``keep_other``); with
    deploy/retire = "background", hand both to a detached process (None is returned then)."""
    try:
        if keep_other:
            steps.drain(ctx, up.switch.old_workers, "old nginx workers finished their requests")
            ctx.say(f"{plan.live} keeps running (--keep-other); roll back again to switch to it at once")
            return False
        if ctx.cfg.retire == "background":
            from bluegreen_hooks.lifecycle import background

            if background.hand_over(ctx, plan.live, plan.prev, up.switch.old_workers):
                return None
        steps.retire(ctx, backend, plan.live, plan.prev, up.switch.old_workers,
                     "old nginx workers finished their requests", keep=True)
        return True
    except BaseException as exc:
        audit(ctx, "failed", time.monotonic() - t0, f"{plan.prev} is live, but stopping {plan.live} failed: "
              f"{first_line(exc)}", end_deployment=True)
        raise
