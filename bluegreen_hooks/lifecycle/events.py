"""The CodeDeploy lifecycle events, each a short story over lifecycle/steps.py. Idempotent per deployment id.

* ApplicationStop  — CodeDeploy runs it from the PREVIOUS revision: reports, never stops anything. The bundle's
                     hooks/ApplicationStop is plain sh that prints the same report (no interpreter start, it
                     cannot fail); this one runs for `hooks/launch ApplicationStop` and the CLI.
* BeforeInstall    — preflight (config, Docker, nginx running and its config test), claim the app and
                     choose the target colour (the one not serving), remove leftovers of the target.
* ApplicationStart — build/pull, start the target colour, health-check it, switch nginx, verify, record.
                     The old colour keeps running.
* ValidateService  — validate through nginx; on success drain the old nginx workers, stop the old
                     colour, prune images; on failure switch back to the old colour and fail.
"""
from __future__ import annotations

import time
from typing import Callable

from bluegreen_hooks.config import Config
from bluegreen_hooks.decide import Decision
from bluegreen_hooks.errors import HookError, Interrupted, LockedError, NginxError, ValidationFailed, as_hook_error
from bluegreen_hooks.host import config_paths, include_guard, nginx
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.host.store import Read
from bluegreen_hooks.lifecycle import during_maintenance, early_start, steps
from bluegreen_hooks.lifecycle.steps import Context
from bluegreen_hooks.lifecycle.tasks import TaskRunner
from bluegreen_hooks.lifecycle.traffic import TRAFFIC_HANDLERS
from bluegreen_hooks.model import COLOURS, Colour, InProgress, finish_event, other, record_deployment
from bluegreen_hooks.runtime.base import Backend


def application_stop(ctx: Context) -> None:
    live = ctx.store.read(quarantine=False).state.live
    ctx.say(f"nothing to stop: bluegreen-hooks never stops the live colour here (live: {live or 'none recorded'}); "
            f"the old colour is stopped by ValidateService after the switch")


def check_inputs(cfg: Config) -> None:
    """What BeforeInstall (and its dry run) refuses before anything changes, from the config's paths and the
    environment: ConfigError naming the key and the path or variable."""
    include_guard.check(cfg)    # the include must be a file we may replace
    config_paths.check_paths(cfg)   # no other path of the config a FIFO, device or folder where a file belongs
    during_maintenance.check_environment(cfg)   # values read from the environment: now, not after the build
    if cfg.notify is not None:
        from bluegreen_hooks.observe import notify

        notify.check(cfg)


def before_install(ctx: Context) -> None:
    from bluegreen_hooks import runtime

    cfg = ctx.cfg
    _detect_compose_soon(cfg)
    ctx.say(f"config {cfg.path.name} ok: app {cfg.app}, blue :{cfg.port('blue')}, green :{cfg.port('green')}")
    check_inputs(cfg)
    # compose renders only the colour this deployment will start (the one not live): each `config` costs
    # docker-compose v1 ~0.2 s of CPU; with nothing live yet, both. They start before Docker is connected.
    live = ctx.store.read(quarantine=False).state.live
    check = (ctx.deployment_id, (other(live),) if live else COLOURS)
    backend = runtime.backend(cfg, check=check)
    ctx.say(f"Docker reachable (server {backend.server_version()}); backend: {backend.kind}")
    from bluegreen_hooks.lifecycle import memory

    measuring = memory.start(cfg, backend, live)   # Docker's stats take up to ~1 s: they run while nginx is checked
    try:   # nginx is checked while compose still renders; be.check() collects the renders
        _check_nginx(ctx)
    except BaseException:
        backend.cancel_pending()
        raise
    backend.check(ctx.say, *check)
    during_maintenance.guard(cfg, ctx.store, ctx.say)
    from bluegreen_hooks.lifecycle import background

    background.take_over(ctx.store, ctx.say)   # a background retire of the last deployment still running
    d = steps.take(ctx, backend)
    if d.done:
        ctx.say(f"deployment {ctx.deployment_id} is already live on {d.live}: nothing to do")
        return
    ctx.say(f"live colour: {d.live or 'none'}; target colour: {d.target}")
    from bluegreen_hooks.host import nginx_watch

    if d.live and nginx_watch.plain_again(cfg, d.live, (d.state.live_deployment if d.state else None) or "unknown"):
        ctx.say(f"an interrupted ApplicationStart left the watch's baseline form: plain include of {d.live} again")
    # before anything is removed or started
    memory.preflight(cfg, backend, d.live, d.target, ctx.say, started=measuring,
                     deployment_id=ctx.deployment_id)
    drain_workers = d.state.drain_workers if d.state else []
    if drain_workers and backend.running().get(d.target):
        # the target served traffic before the last switch (e.g. an earlier ValidateService was stopped
        # while draining): nginx workers from before that switch may still be proxying requests to it
        steps.drain(ctx, drain_workers, f"nginx workers from before the last switch finished their requests "
                                        f"to {d.target}")
    removed = backend.remove_colour(d.target, d.live, ctx.say, grace=0)
    if removed:
        ctx.say(f"removed {removed} leftover container(s) of {d.target}")
    steps.check_target_ports(cfg, d.target)
    if cfg.canary is not None and d.live is not None:
        from bluegreen_hooks.lifecycle import canary

        ctx.say(canary.check_plan(cfg))
        canary.check_logging(cfg)
    if cfg.watch_seconds > 0 and d.live is not None:
        from bluegreen_hooks.lifecycle import watch

        ctx.say(watch.check_plan(ctx))
    ctx.finish("BeforeInstall")
    early_start.start_soon(ctx, backend, d.target)


def _detect_compose_soon(cfg: Config) -> None:
    """A compose app whose config does not name the compose command: find it while the hook does other things."""
    if cfg.compose is not None and not cfg.compose.command:
        from bluegreen_hooks.runtime.compose_exec import detect_soon

        detect_soon()


def _check_nginx(ctx: Context) -> None:
    """nginx runs, its config passes ``nginx -t`` (with our include, created empty the first time) and its
    server block includes the include and proxies through its variable."""
    cfg = ctx.cfg
    nginx.check_running(cfg)
    if not cfg.nginx.include.exists():
        if not cfg.nginx.include.parent.is_dir():
            raise NginxError(f"nginx/include: folder {cfg.nginx.include.parent} does not exist")
        nginx.write_include(cfg, "")
        ctx.say(f"created an empty {cfg.nginx.include} (first deployment)")
    nginx.test_config(cfg)
    ctx.say("nginx is running and its config test passes")
    steps.check_nginx_config(ctx)


def application_start(ctx: Context) -> None:
    cfg, dep = ctx.cfg, ctx.deployment_id
    during_maintenance.guard(cfg, ctx.store, ctx.say)
    backend, d, started = _claim_start(ctx)
    if d.done or d.state is None:
        ctx.say(f"deployment {dep} is already live on {d.live}: nothing to do")
        return
    if d.switched:
        mode = d.state.in_progress.verify_mode if d.state.in_progress else None
        ctx.say(during_maintenance.validate(cfg, ctx.store, d.target, path=cfg.health.path, mode=mode))
        ctx.say(f"deployment {dep} already switched nginx to {d.target}: nothing to do")
        ctx.finish("switched")
        return
    if d.refused:
        raise HookError(d.refused)
    if not started and not backend.running().get(d.target):   # our own container of the target may hold it
        steps.check_target_ports(cfg, d.target)
    route, undo = _route(ctx, backend, d)
    t_image = time.monotonic()
    try:
        image = backend.prepare(dep, ctx.say)
    except (HookError, Interrupted) as exc:   # the build or pull failed: say what keeps serving, what to do
        undo()
        raise steps.with_serving(as_hook_error(exc), d.live, False, getattr(exc, "next_step", "")) from exc
    t_start = time.monotonic()
    tasks = TaskRunner(ctx, backend, d.target, d.live, dep)

    def on_failure(exc: BaseException) -> None:
        tasks.on_failure(exc)
        undo()
    try:
        up = steps.bring_up(ctx, backend, d.target, image, dep, d.live, dep, route=route,
                            before_switch=tasks.before_switch, on_failure=on_failure)
    except (HookError, Interrupted) as exc:
        raise steps.with_serving(as_hook_error(exc), d.live, bool(ctx.log_tail)) from exc
    timings = {"image": round(t_start - t_image, 3), "healthy": round(up.healthy_seconds, 3),
               "switch_ms": round(up.switch.seconds * 1000, 1), "healthy_to_serving_ms": up.healthy_to_serving_ms}
    _record_release(ctx, backend, d.target)
    try:
        _record_switch(ctx, d.target, image, up.switch, timings)
    except (HookError, OSError) as exc:   # disk full / read-only state dir after the switch
        from bluegreen_hooks.lifecycle.recovery import back_to_recorded
        raise back_to_recorded(ctx, backend, d, exc) from exc
    try:
        tasks.run("after_switch")
    except HookError as exc:
        raise _switch_back(ctx, backend, d.target, d.live, str(exc), "a release task failed") from exc
    if tasks.timings:
        timings.update(tasks.timings)
        with ctx.store.update() as state:
            finish_event(state, dep, "switched", time.time(), timings=timings)
    ctx.say(f"{d.target} is live for {dep}; {d.live or 'no colour'} keeps running until ValidateService")


def _route(ctx: Context, backend: Backend, d: Decision) -> tuple[Callable[[], nginx.Switch] | None, Callable[[], None]]:
    """How ApplicationStart moves traffic once the new colour is healthy: the canary ([canary]), the switch into
    the watch form (deploy/watch_seconds: the failure-absorbing switch, lifecycle/watch.py; from now on nginx
    logs what clients get from the live colour, the watch's latency baseline), else None (nginx.switch); and
    ``undo`` for a start that fails before the switch (the plain include again)."""
    cfg, dep, live, target = ctx.cfg, ctx.deployment_id, d.live, d.target
    if live is None:
        return None, lambda: None
    if cfg.canary is not None and backend.running().get(live):
        from bluegreen_hooks.lifecycle import canary

        return lambda: canary.run(ctx, live, target, dep), lambda: None
    if cfg.canary is None and cfg.watch_seconds > 0 and not ctx.store.read().state.maintenance\
            and backend.running().get(live):
        from bluegreen_hooks.lifecycle import watch

        began, undo = watch.start_baseline(ctx, live, (d.state.live_deployment if d.state else None) or dep)
        return lambda: watch.switch_in(ctx, live, target, dep, began()), undo
    return None, lambda: None


def _claim_start(ctx: Context) -> tuple[Backend, Decision, bool]:
    """Connect to Docker and take the deployment; True when the target's start is already under way.

    A compose app's target starts first when BeforeInstall's choice still holds (steps.claim_early): its
    ``up`` overlaps importing the SDK and the claim. Should the claim decide otherwise, that start is ended
    and its containers are removed before anything else happens."""
    from bluegreen_hooks import runtime

    cfg = ctx.cfg
    _detect_compose_soon(cfg)
    early = steps.claim_early(ctx) if cfg.compose is not None and not cfg.compose.pull else None
    if early is None and cfg.compose is not None:
        early_start.end_uncollected(cfg)
    backend = runtime.backend(cfg, start=(early, ctx.deployment_id, ctx.say) if early else None)
    try:
        d = steps.take(ctx, backend, starting=early)
    except BaseException:
        if early:
            _undo_early(ctx, backend, early, None, "the claim failed")
        raise
    if early and d.confirmed != early:
        _undo_early(ctx, backend, early, d.live, f"the claim did not confirm {early} as the target")
        early = None
    return backend, d, early is not None


def _undo_early(ctx: Context, backend: Backend, colour: Colour, live: Colour | None, why: str) -> None:
    """End the early ``up`` of ``colour`` and remove what it started (never the live colour)."""
    backend.cancel_pending()
    if colour == live:
        return
    ctx.say(f"{why}: the early start of {colour} is ended and its containers removed")
    try:
        backend.remove_colour(colour, live, ctx.say, grace=0)
    except Exception as exc:   # the error that ends the hook is the claim's; the next BeforeInstall removes them
        ctx.say(f"warning: could not remove {colour}: {exc}")


def _record_release(ctx: Context, backend: Backend, target: Colour) -> None:
    """Keep what the new release runs (settings, per-release images) for a later rollback (host/releases.py)."""
    try:
        backend.record(target, ctx.deployment_id, ctx.say)
    except Exception as exc:   # the release serves; only a later rollback to it would lack its record
        ctx.say(f"warning: could not record release {ctx.deployment_id} for rollbacks: {exc}")


def _record_switch(ctx: Context, target: Colour, image: str, sw: nginx.Switch, timings: dict[str, float]) -> None:
    cfg = ctx.cfg
    live_config = ctx.store.dir / f"{cfg.app}.toml"
    write_atomic(live_config, cfg.path.read_text(encoding="utf-8"), mode=0o600)  # for the operator commands
    now = time.time()
    with ctx.store.update() as state:
        state.record_switch(target, ctx.deployment_id, image, now, sw.old_workers)
        state.config = str(live_config)
        finish_event(state, ctx.deployment_id, "switched", now, image=image, old_workers=sw.old_workers,
                     timings=timings)


def _validation_claim(ctx: Context) -> InProgress:
    """ValidateService continues the deployment ApplicationStart switched; claim it for this event."""
    from bluegreen_hooks.decide import locked_message, same_id_running
    from bluegreen_hooks.host import procfs

    def switched(read: Read) -> steps.Hold:
        in_progress = read.state.holder(ctx.deployment_id)
        if in_progress and same_id_running(in_progress, ctx.who, procfs.process_alive):
            raise LockedError(locked_message(f"deployment {ctx.deployment_id} is already running {in_progress.event} "
                                             f"as pid {in_progress.pid}", ctx.cfg.app, ctx.deployment_id))
        if not (in_progress and in_progress.stage in ("switched", "validated")):
            raise HookError(f"deployment {ctx.deployment_id} has not switched nginx (ApplicationStart did not "
                            f"succeed): nothing to validate")
        return steps.Hold()   # keeps its target

    in_progress = steps.claim(ctx, "validate", prepare=switched).holder(ctx.deployment_id)
    assert in_progress is not None   # switched() found it, and the claim keeps it
    return in_progress


def validate_service(ctx: Context) -> None:
    from bluegreen_hooks import runtime

    cfg, dep = ctx.cfg, ctx.deployment_id
    backend = runtime.deferred(cfg)   # Docker only for tasks, a switch back or a retire here
    if ctx.store.read().state.completed(dep):
        ctx.say(f"deployment {dep} is already validated and live: nothing to do")
        return
    in_progress = _validation_claim(ctx)
    target: Colour = in_progress.target or "blue"
    old = in_progress.from_colour
    # the watch window first (lifecycle/watch.py): it watches the port and the clients from the first second,
    # where a validation probe would wait out verify_timeout while a dead colour fails every request
    workers = in_progress.old_workers + _watch(ctx, backend, target, old)
    try:
        ctx.say(during_maintenance.validate(cfg, ctx.store, target, mode=in_progress.verify_mode))
    except NginxError as exc:
        raise _switch_back(ctx, backend, target, old, _with_watch(ctx, old, target, str(exc))) from exc
    tasks = TaskRunner(ctx, backend, target, old, dep)
    try:
        tasks.run("after_validate")
    except HookError as exc:
        raise _switch_back(ctx, backend, target, old, str(exc), "a release task failed") from exc
    ctx.finish("validated", timings={**in_progress.timings, **tasks.timings})
    handed_over = False
    if old and old != target and cfg.retire == "background":   # it stops nothing when the old colour no longer runs
        from bluegreen_hooks.lifecycle import background

        # the retire process connects to Docker anyway: it gives the live colour its OOM score, so this hook
        # ends without loading the SDK
        handed_over = background.hand_over(ctx, old, target, workers)
    if not handed_over:   # the background retire settles the score, stops and prunes
        from bluegreen_hooks.lifecycle import memory

        memory.settle_live(cfg, backend, target, ctx.say)   # live now: the OOM killer should prefer any other colour
        if old and old != target:
            steps.retire(ctx, backend, old, target, workers, "old nginx workers finished their requests", keep=True)
        steps.prune(ctx, backend)
    with ctx.store.update() as state:
        mine = state.holder(dep)
        if mine is not None:
            record_deployment(state, mine, "succeeded", time.time())
    ctx.say(f"deployment {dep} succeeded: {target} live")


def _watch(ctx: Context, backend: Backend, target: Colour, old: Colour | None) -> list[list[int]]:
    """deploy/watch_seconds (lifecycle/watch.py): watch the new colour's live traffic while ``old`` stays ready;
    switch back and fail with the figures when it does worse than the rules. Returns the nginx workers of the
    watch that may still proxy to ``old`` (drained before it stops)."""
    if not (ctx.cfg.watch_seconds > 0 and old and old != target and backend.running().get(old)):
        return []   # the watch is off: nothing more is imported or done
    from bluegreen_hooks.lifecycle import watch

    watched, workers = watch.run(ctx, old, target, ctx.deployment_id)
    receipt = watched.receipt(ctx.cfg.watch_seconds, ctx.cfg.nginx.form)
    if watched.verdict == "ok":
        watch.save_receipt(ctx, receipt)
        return workers
    receipt["verdict"] = "switched back"
    watch.save_receipt(ctx, receipt)
    from bluegreen_hooks.host import nginx_watch

    try:
        raise _switch_back(ctx, backend, target, old, watched.cause(), "the watch window failed")
    finally:
        nginx_watch.remove_logs(ctx.cfg)


def _with_watch(ctx: Context, old: Colour | None, target: Colour, cause: str) -> str:
    """``cause``, and what clients got in the watch window so far when it runs (lifecycle/watch.py)."""
    if not (old and ctx.cfg.watch_seconds > 0):
        return cause
    from bluegreen_hooks.host import nginx_watch
    from bluegreen_hooks.lifecycle import watch

    try:
        figures = watch.figures_now(ctx, old, target)
    finally:
        nginx_watch.remove_logs(ctx.cfg)
    return f"{cause}; {figures}" if figures else cause


def _switch_back(ctx: Context, backend: Backend, target: Colour, old: Colour | None, cause: str,
                 what: str = "validation through nginx failed") -> ValidationFailed:
    """Validation failed: traffic back to ``old`` (when it still runs), drain, remove ``target``.

    Returns the error the event fails with."""
    state = ctx.store.read().state
    if not (old and backend.running().get(old)):
        return ValidationFailed(f"{what} ({cause}); no old colour to go back to, {target} stays live")
    ctx.say(f"{what}: {cause}; switching back to {old}")
    steps.check_ports_owned(ctx.cfg, backend, old)
    back = steps.switch(ctx, old, state.previous_deployment or ctx.deployment_id)
    with ctx.store.update() as st2:
        st2.record_switch(old, state.previous_deployment, state.previous_image, time.time(), back.old_workers)
    ctx.log_tail = backend.logs_tail(target)
    # the workers from before the switch back may still be proxying requests to the target: let them finish
    steps.retire(ctx, backend, target, old, back.old_workers, f"nginx workers finished their requests to {target}")
    return ValidationFailed(f"{what} ({cause}); traffic is back on {old}")


HANDLERS: dict[str, Callable[[Context], None]] = {
    "ApplicationStop": application_stop, "BeforeInstall": before_install,
    "ApplicationStart": application_start, "ValidateService": validate_service,
    **TRAFFIC_HANDLERS,   # the load balancer's events: nothing to do here (lifecycle/traffic.py)
}
