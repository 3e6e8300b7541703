"""The CodeDeploy lifecycle events. Each is idempotent for a deployment id.

* ApplicationStop  — CodeDeploy runs it from the PREVIOUS revision: reports, never stops anything.
* BeforeInstall    — preflight (config, Docker, nginx running and its config test, lock), choose the
                     target colour (the one not serving), remove leftovers of the target colour.
* ApplicationStart — build/pull, start the target colour, health-check it, switch nginx, verify, record.
                     The old colour keeps running.
* ValidateService  — validate through nginx; on success drain the old nginx workers, stop the old
                     colour, prune images; on failure switch back to the old colour and fail.

Every event prints one line per step with the elapsed time. On failure the last line is
``ERROR <Event>: <cause>; <next step>``, under 300 characters, right after the failed container's log
tail (CodeDeploy shows only the last 2,048 characters of a hook's output).
"""
from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from bluegreen_hooks import config as config_mod
from bluegreen_hooks import state
from bluegreen_hooks.config import Colour, Config
from bluegreen_hooks.errors import ConfigError, HealthCheckFailed, HookError, LockedError, NginxError, ValidationFailed

EVENTS = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")
LAST_LINE_MAX = 300


class Terminated(HookError):
    """The hook got SIGTERM (e.g. the CodeDeploy agent's timeout)."""


@dataclass
class Context:
    cfg: Config
    deployment_id: str
    event: str
    say: Callable[[str], None]
    store: state.Store = field(init=False)
    log_tail: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = state.Store(self.cfg.state_dir, self.cfg.app, self.cfg.history)


class Reporter:
    """Prints ``[Event +1.23s] message`` lines, flushed at once (the agent streams them to its log)."""

    def __init__(self, event: str, stream=None) -> None:
        self.event, self.t0 = event, time.monotonic()
        self.stream = stream or sys.stdout

    def __call__(self, msg: str) -> None:
        emit(self.stream, f"[{self.event} +{time.monotonic() - self.t0:.2f}s] {msg}")


def emit(stream, text: str) -> None:
    """Print one line, flushed. A closed output is ignored: after its timeout the CodeDeploy agent sends
    SIGTERM and closes its ends of our stdout/stderr at once, and the cleanup that follows must still run."""
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):   # BrokenPipeError, or the stream was closed
        pass


def deployment_id_from(environ: Mapping[str, str], bundle: Path) -> str:
    """$DEPLOYMENT_ID (set by the agent), else a stable ``manual-…`` id for hand runs of this bundle."""
    d = environ.get("DEPLOYMENT_ID")
    if d:
        from bluegreen_hooks.nginx import DEPLOYMENT_ID_RE
        if not DEPLOYMENT_ID_RE.match(d):
            raise ConfigError(f"DEPLOYMENT_ID: should be letters, digits, '.', '_' or '-', not {d!r}")
        return d
    cfg_file = bundle / config_mod.CONFIG_NAME
    digest = hashlib.sha256(str(bundle.resolve()).encode())
    if cfg_file.exists():
        digest.update(cfg_file.read_bytes())
    return f"manual-{digest.hexdigest()[:10]}"


# ------------------------------------------------------------------------------------------------ helpers

def _completed(st: dict[str, Any], d: str) -> bool:
    ip = st.get("in_progress")
    return st.get("live_deployment") == d and not (ip and ip.get("id") == d)


def _take(ctx: Context, st: dict[str, Any], backend) -> dict[str, Any]:
    """Reconcile the state with reality, claim the deployment and choose its target; return in_progress."""
    from bluegreen_hooks import nginx

    include_colour, running = nginx.include_colour(ctx.cfg, nginx.read_include(ctx.cfg)), backend.running()
    # A switch killed between writing the include and reloading nginx (SIGKILL) leaves a file that names a
    # colour nginx does not serve: go by what nginx answers (its colour header) when that colour runs here.
    served = nginx.served_colour(ctx.cfg) if include_colour else None
    interrupted = bool(served and served != include_colour and running.get(served))
    for note in state.reconcile(st, served if interrupted else include_colour, running, ctx.store.problem):
        ctx.say(f"reconciled: {note}")
    ip = st.get("in_progress")
    mine = ip if ip and ip.get("id") == ctx.deployment_id else None
    target = mine.get("target") if mine and mine.get("target") else (Config.other(st["live"]) if st["live"] else "blue")
    note = state.claim(st, ctx.deployment_id, ctx.event, target, ctx.cfg.stale_after)
    if note:
        ctx.say(note)
    if interrupted:   # we hold the app now: make the file say what nginx serves again (no reload needed)
        ctx.say(f"nginx serves {served} but {ctx.cfg.nginx.include} names {include_colour} (an interrupted "
                f"switch): include rewritten for {served}")
        dep = (running.get(served) or {}).get("deployment") or st.get("live_deployment") or ""
        nginx.write_atomic(ctx.cfg.nginx.include, nginx.render_include(
            ctx.cfg, served, dep if nginx.DEPLOYMENT_ID_RE.match(dep) else "unknown"))
    ip = st["in_progress"]
    if mine is None or "from" not in ip:
        ip["from"] = st["live"] if st["live"] != target else st.get("previous")
    return ip


def _check_target_ports(ctx: Context, target: Colour) -> None:
    """Refuse when something that is not our container answers on the target colour's port(s): it would
    make our container fail to bind, or answer the health check in its place (see ports.py)."""
    from bluegreen_hooks import ports

    cfg = ctx.cfg
    keys = [(f"colours/{target}", cfg.port(target))]
    keys += [(f"compose/routes/{r.service}/{target}", r.ports[target]) for r in cfg.extra_routes]
    ports.check_free(cfg.host, keys, target)


def _drain(ctx: Context, workers: list[list[int]], done: str) -> None:
    """Wait (at most deploy/drain_timeout) until nginx ``workers`` from before a switch have exited."""
    from bluegreen_hooks import nginx

    drained, left = nginx.wait_drained(workers, ctx.cfg.drain_timeout)
    ctx.say(done if drained else
            f"drain timeout ({ctx.cfg.drain_timeout:g}s) reached with {left} nginx worker(s) still busy")


def _finish(ctx: Context, stage: str, **extra: Any) -> None:
    with ctx.store.update() as st:
        state.finish_event(st, ctx.deployment_id, stage, **extra)


# ------------------------------------------------------------------------------------------------- events

def application_stop(ctx: Context) -> None:
    st = ctx.store.read()
    ctx.say(f"nothing to stop: bluegreen-hooks never stops the live colour here "
            f"(live: {st.get('live') or 'none recorded'}); the old colour is stopped by ValidateService after the switch")


def before_install(ctx: Context) -> None:
    from bluegreen_hooks import containers, nginx

    cfg = ctx.cfg
    ctx.say(f"config {cfg.path.name} ok: app {cfg.app}, blue :{cfg.port('blue')}, green :{cfg.port('green')}")
    be = containers.backend(cfg)
    ctx.say(f"Docker reachable (server {be.client.version().get('Version', '?')}); backend: {be.kind}")
    if hasattr(be, "check"):   # e.g. compose: the files parse and name the configured services
        be.check(ctx.say)
    nginx.check_running(cfg)
    if not cfg.nginx.include.exists():
        if not cfg.nginx.include.parent.is_dir():
            raise NginxError(f"nginx/include: folder {cfg.nginx.include.parent} does not exist")
        nginx.write_atomic(cfg.nginx.include, "")
        ctx.say(f"created an empty {cfg.nginx.include} (first deployment)")
    nginx.test_config(cfg)
    ctx.say("nginx is running and its config test passes")
    with ctx.store.update() as st:
        if _completed(st, ctx.deployment_id):
            ctx.say(f"deployment {ctx.deployment_id} is already live on {st['live']}: nothing to do")
            return
        ip = _take(ctx, st, be)
        live, target = st["live"], ip["target"]
        drain_workers = st.get("drain_workers") or []
    ctx.say(f"live colour: {live or 'none'}; target colour: {target}")
    if drain_workers and be.running().get(target):
        # the target served traffic before the last switch (e.g. an earlier ValidateService was stopped
        # while draining): nginx workers from before that switch may still be proxying requests to it
        _drain(ctx, drain_workers, f"nginx workers from before the last switch finished their requests to {target}")
    removed = be.remove_colour(target, live, ctx.say, grace=0)
    if removed:
        ctx.say(f"removed {removed} leftover container(s) of {target}")
    _check_target_ports(ctx, target)
    _finish(ctx, "BeforeInstall")


def application_start(ctx: Context) -> None:
    from bluegreen_hooks import containers, health, nginx

    cfg, d = ctx.cfg, ctx.deployment_id
    be = containers.backend(cfg)
    with ctx.store.update() as st:
        if _completed(st, d):
            ctx.say(f"deployment {d} is already live on {st['live']}: nothing to do")
            return
        ip = _take(ctx, st, be)
        live, target = st["live"], ip["target"]
        already = ip.get("stage") in ("switched", "validated") and live == target
    if already:
        nginx.verify(cfg, target, path=cfg.health.path)
        ctx.say(f"deployment {d} already switched nginx to {target}: nothing to do")
        _finish(ctx, "switched")
        return
    if target == live:
        raise HookError(f"target colour {target} is live; refusing to replace it (run `bluegreen-hooks status`)")
    if not be.running().get(target):   # our own container of the target colour may hold it: start() replaces that
        _check_target_ports(ctx, target)
    t_image = time.monotonic()
    image = be.prepare(d, ctx.say)
    t_start = time.monotonic()
    try:
        be.start(target, image, d, live, ctx.say)
        healthy_after = health.wait_healthy(cfg, target, lambda: be.watch(target), ctx.say)
        t_switch = time.monotonic()
        sw = nginx.switch(cfg, target, d, ctx.say)
    except BaseException as exc:
        if isinstance(exc, HealthCheckFailed):
            ctx.log_tail = be.logs_tail(target)
        ctx.say(f"removing {target}: {live or 'nothing'} keeps serving")
        be.remove_colour(target, live, ctx.say, grace=0)
        if isinstance(exc, HookError):
            serving = f"{live} keeps serving" if live else "nothing was serving"
            step = "; see the output above, fix the app and deploy again" if ctx.log_tail else ""
            exc.args = (f"{exc.args[0]}; {serving}{step}",)
        raise
    timings = {"image": round(t_start - t_image, 3), "healthy": round(healthy_after, 3),
               "switch_ms": round(sw.seconds * 1000, 1), "healthy_to_serving_ms": round((time.monotonic() - t_switch) * 1000, 1)}
    live_config = ctx.store.dir / f"{cfg.app}.toml"
    nginx.write_atomic(live_config, cfg.path.read_text(encoding="utf-8"), mode=0o600)  # for the operator commands
    with ctx.store.update() as st:
        state.set_live(st, target, d, image)
        st["drain_workers"] = sw.old_workers   # they may still proxy to the colour that was live
        st["config"] = str(live_config)
        state.finish_event(st, d, "switched", image=image, old_workers=sw.old_workers, timings=timings)
    ctx.say(f"{target} is live for {d}; {live or 'no colour'} keeps running until ValidateService")


def validate_service(ctx: Context) -> None:
    from bluegreen_hooks import containers, nginx

    cfg, d = ctx.cfg, ctx.deployment_id
    be = containers.backend(cfg)
    with ctx.store.update() as st:
        if _completed(st, d):
            ctx.say(f"deployment {d} is already validated and live on {st['live']}: nothing to do")
            return
        ip = st.get("in_progress")
        if not (ip and ip.get("id") == d and ip.get("stage") in ("switched", "validated")):
            raise HookError(f"deployment {d} has not switched nginx (ApplicationStart did not succeed): nothing to validate")
        state.claim(st, d, ctx.event, None, cfg.stale_after)
        target, old = ip["target"], ip.get("from")
        previous_deployment, previous_image = st.get("previous_deployment"), st.get("previous_image")
    try:
        answer = nginx.verify(cfg, target)
        ctx.say(f"validated through nginx: {cfg.nginx.public_url}{cfg.nginx.validate_path} -> HTTP {answer.status} from {target}")
    except NginxError as exc:
        cause = str(exc)
        old_running = old and be.running().get(old)
        if old_running:
            ctx.say(f"validation failed: {cause}; switching back to {old}")
            back = nginx.switch(cfg, old, previous_deployment or d, ctx.say)
            with ctx.store.update() as st:
                state.set_live(st, old, previous_deployment, previous_image)
                st["drain_workers"] = back.old_workers
            ctx.log_tail = be.logs_tail(target)
            # the workers from before the switch back may still be proxying requests to the target: let them finish
            _drain(ctx, back.old_workers, f"nginx workers finished their requests to {target}")
            be.remove_colour(target, old, ctx.say)
            raise ValidationFailed(f"validation through nginx failed ({cause}); traffic is back on {old}") from exc
        raise ValidationFailed(f"validation through nginx failed ({cause}); no old colour to go back to, "
                               f"{target} stays live") from exc
    with ctx.store.update() as st:
        state.finish_event(st, d, "validated")
    if old and old != target:
        _drain(ctx, ip.get("old_workers") or [], "old nginx workers finished their requests")
        be.remove_colour(old, target, ctx.say)
    with ctx.store.update() as st:
        in_use = {st.get("live_image"), st.get("previous_image")} - {None}
    be.prune(in_use, ctx.say)
    with ctx.store.update() as st:
        ip = st.get("in_progress")
        if ip and ip.get("id") == d:
            state.record_deployment(st, ip, "succeeded")
    ctx.say(f"deployment {d} succeeded: {target} live")


HANDLERS: dict[str, Callable[[Context], None]] = {
    "ApplicationStop": application_stop, "BeforeInstall": before_install,
    "ApplicationStart": application_start, "ValidateService": validate_service,
}


# ---------------------------------------------------------------------------------------------- the runner

def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated("stopped by SIGTERM (the CodeDeploy agent's timeout?)")


def last_line(event: str, msg: str) -> str:
    """The final line of a failed event: cut in the middle if needed, so the next step at its end survives."""
    line = " ".join(f"ERROR {event}: {msg}".split())
    if len(line) <= LAST_LINE_MAX:
        return line
    keep = LAST_LINE_MAX - 5
    return line[:keep // 2] + " ... " + line[-(keep - keep // 2):]


def run_event(event: str, bundle: Path, environ: Mapping[str, str] | None = None, out=None,
              dry_run: bool = False) -> int:
    """Run one lifecycle event for the bundle at ``bundle``; return the exit status.

    ``dry_run``: print what the event would do (plan.py) and change nothing.
    """
    environ = os.environ if environ is None else environ
    out = out or sys.stdout
    say = Reporter(event, out)
    if event not in HANDLERS:
        print(last_line(event, f"unknown lifecycle event; known: {', '.join(EVENTS)}"), file=out, flush=True)
        return 2
    t0 = time.monotonic()
    ctx: Context | None = None
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cfg = config_mod.load(config_mod.find(bundle, environ), environ)
        d = deployment_id_from(environ, bundle)
        if dry_run:
            from bluegreen_hooks import plan
            for ln in plan.describe(cfg, d, [event]):
                say(ln)
            return 0
        ctx = Context(cfg, d, event, say)
        say(f"deployment {d} of {cfg.app} (CodeDeploy application {environ.get('APPLICATION_NAME', '-')}, "
            f"group {environ.get('DEPLOYMENT_GROUP_NAME', '-')})")
        HANDLERS[event](ctx)
        _audit(ctx, "succeeded", time.monotonic() - t0)
        say("done")
        return 0
    except HookError as exc:
        if event == "ApplicationStop":   # never fail a deployment because of the previous revision
            say(f"warning: {exc}; ApplicationStop has nothing to do, succeeding anyway")
            return 0
        if ctx is not None and not isinstance(exc, LockedError):
            _audit(ctx, "failed", time.monotonic() - t0, str(exc), end_deployment=True)
        if ctx is not None and ctx.log_tail:
            emit(out, f"--- last {len(ctx.log_tail)} lines of the failed container's output ---")
            for ln in ctx.log_tail:
                emit(out, f"  | {ln}")
        emit(out, last_line(event, str(exc)))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a bug or an unexpected error: traceback, then the one-line cause
        emit(out, traceback.format_exc().rstrip())
        if ctx is not None:
            _audit(ctx, "failed", time.monotonic() - t0, repr(exc), end_deployment=True)
        emit(out, last_line(event, f"unexpected {type(exc).__name__}: {exc}; see the traceback above"))
        return 1
    finally:
        signal.signal(signal.SIGTERM, old_handler)


def _audit(ctx: Context, outcome: str, seconds: float, cause: str | None = None, end_deployment: bool = False) -> None:
    """Record the event run; a failed event also ends its deployment (CodeDeploy stops at the first failure)."""
    try:
        with ctx.store.update() as st:
            ip = st.get("in_progress")
            mine = ip if ip and ip.get("id") == ctx.deployment_id else None
            state.record_event(st, ctx.deployment_id, ctx.event, outcome, seconds, st.get("live"),
                               mine.get("target") if mine else None, cause)
            if mine and end_deployment:
                state.record_deployment(st, mine, "failed", cause=cause)
    except HookError as exc:
        ctx.say(f"warning: could not record the event in the state file: {exc}")
