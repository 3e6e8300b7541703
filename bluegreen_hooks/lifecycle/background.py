"""deploy/retire = "background": the old colour's drain and stop, after ValidateService, in a detached process.

With ``retire = "wait"`` (the default) ValidateService waits until the nginx workers from before the
switch have finished their requests to the old colour (at most deploy/drain_timeout), then stops it: a
deployment with 30 s requests in flight takes 30 s longer. With "background", ValidateService ends as soon
as the new colour is validated and the deployment has succeeded; ``hand_over`` starts a detached process
(its own session, its output in ``<state>/<app>.retire.log``) that drains, stops the old colour (kept for
a rollback) and prunes images, and is recorded in the state (``State.retiring``) while it runs.

Whoever changes the colours next takes it over first (``take_over``): the next BeforeInstall, a rollback.
While it drains it is cancelled (SIGTERM): the old colour keeps running untouched, so a rollback switches
back to it at once, and BeforeInstall drains and removes it as it always does. Once it is stopping it is
waited for: the colour is running or stopped, never half of each.

    python -m bluegreen_hooks.lifecycle.background CONFIG DEPLOYMENT_ID   (what ``hand_over`` starts)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from bluegreen_hooks.config.model import STATE_DIR_ENV
from bluegreen_hooks.errors import ConfigError, HookError, Interrupted
from bluegreen_hooks.host import files, procfs
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.host.trust import STATE_KEY
from bluegreen_hooks.host.wait import on_sigterm, poll
from bluegreen_hooks.lifecycle import steps
from bluegreen_hooks.lifecycle.steps import Context
from bluegreen_hooks.model import Colour, Retiring

EVENT = "Retire"
TAKE_OVER_TIMEOUT = 120.0   # a retire that is stopping: its containers' stop grace, and more


def log_path(store: Store) -> Path:
    return store.dir / f"{store.app}.retire.log"


def hand_over(ctx: Context, old: Colour, live: Colour, workers: list[list[int]]) -> bool:
    """Start the detached retire of ``old``; False (nothing started, nothing recorded) when it cannot start."""
    copy = ctx.store.dir / f"{ctx.cfg.app}.toml"   # the live config ApplicationStart copied
    if not copy.is_file():
        ctx.say(f"warning: no copy of the live config at {copy}; retiring {old} here instead of in the background")
        return False
    with ctx.store.update() as state:
        state.retiring = Retiring(colour=old, live=live, deployment=ctx.deployment_id, since=time.time(),
                               workers=workers)
    log = log_path(ctx.store)
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, STATE_DIR_ENV: str(ctx.cfg.state_dir),
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    try:
        # a FIFO there blocked this open for ever: host/files.py refuses it (and a symlink) at once
        fd = files.open_file(log, STATE_KEY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, follow=False)
        try:   # no pipe of the agent's stays open in it: the agent waits for those to close
            proc = subprocess.Popen([sys.executable, "-m", __name__, str(copy), ctx.deployment_id], env=env,
                                    stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, cwd="/", start_new_session=True)
        finally:
            os.close(fd)
    except (OSError, ConfigError) as exc:
        with ctx.store.update() as state:
            state.retiring = None
        ctx.say(f"warning: could not start the background retire ({exc}); retiring {old} here")
        return False
    with ctx.store.update() as state:
        if state.retiring is not None and state.retiring.deployment == ctx.deployment_id:
            state.retiring.pid, state.retiring.pid_start = proc.pid, procfs.process_start_time(proc.pid)
    ctx.say(f"{old} is retired in the background (pid {proc.pid}; deploy/retire = \"background\"): stopped once "
            f"the nginx workers from before the switch have finished their requests (at most "
            f"{ctx.cfg.drain_timeout:g}s); its output goes to {log}")
    return True


def take_over(store: Store, say: Callable[[str], None], timeout: float = TAKE_OVER_TIMEOUT) -> None:
    """Before the colours change again: cancel a background retire that still drains, or wait for one that
    is stopping; then forget it. HookError when it does not end within ``timeout``."""
    if store.read(quarantine=False).state.retiring is None:   # the usual case: no lock taken
        return
    with store.update() as state:
        r = state.retiring
        if r is None:
            return
        if not procfs.process_alive(r.pid, r.pid_start):   # it ended (or died) without clearing its record
            state.retiring = None
            return
        if r.phase == "draining":
            r.cancelled = True
            os.kill(r.pid or 0, signal.SIGTERM)
    say(f"the background retire of {r.colour} (pid {r.pid}, deployment {r.deployment}) "
        + ("was draining: cancelled, " + r.colour + " keeps running" if r.phase == "draining"
           else "is stopping it: waiting for it to finish"))
    if not poll(lambda: not procfs.process_alive(r.pid, r.pid_start), timeout):
        raise HookError(f"the background retire of {r.colour} (pid {r.pid}) did not end within {timeout:g}s; "
                        f"see {log_path(store)}, stop it (kill {r.pid}) and retry")
    with store.update() as state:
        if state.retiring is not None and state.retiring.deployment == r.deployment:
            state.retiring = None


def _run(ctx: Context, r: Retiring | None) -> str:
    """Drain, stop and prune the colour ``r`` records; returns the outcome ("succeeded" or "cancelled")."""
    from bluegreen_hooks import runtime

    if r is None or r.deployment != ctx.deployment_id:
        ctx.say(f"nothing to retire for {ctx.deployment_id} (taken over already)")
        return "cancelled"
    backend = runtime.backend(ctx.cfg)
    from bluegreen_hooks.lifecycle import memory

    memory.settle_live(ctx.cfg, backend, r.live, ctx.say)   # ValidateService left the live colour's OOM score to us

    def still_mine() -> bool:   # under the lock: from "stopping" on, nobody cancels it any more
        with ctx.store.update() as state:
            mine = state.retiring
            if mine is None or mine.deployment != ctx.deployment_id or mine.cancelled or state.live != r.live:
                return False
            mine.phase = "stopping"
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            return True

    try:
        stopped = steps.retire(ctx, backend, r.colour, r.live, r.workers, "old nginx workers finished their requests",
                               keep=True, before_stop=still_mine)
    except Interrupted:
        stopped = False
    if not stopped:
        ctx.say(f"cancelled: {r.colour} keeps running (a deployment or a rollback took over)")
        return "cancelled"
    steps.prune(ctx, backend)
    with ctx.store.update() as state:
        if state.retiring is not None and state.retiring.deployment == ctx.deployment_id:
            state.retiring = None
    ctx.say(f"{r.colour} retired: {r.live} serves alone")
    return "succeeded"


def _record(ctx: Context, outcome: str, seconds: float, colour: Colour | None, cause: str | None = None) -> None:
    """The retire as an event "Retire" of its deployment: in the history, the metrics and EMF (as the hooks
    record theirs; it sends no notification). Never raises."""
    from bluegreen_hooks.model import record_event
    from bluegreen_hooks.observe.report import after_event

    try:
        with ctx.store.update() as state:
            record_event(state, ctx.who, ctx.deployment_id, EVENT, outcome, seconds, colour, time.time(), cause)
    except (HookError, OSError) as exc:
        ctx.say(f"warning: could not record the retire in the state file: {exc}")
    after_event(ctx.cfg, ctx.store, ctx.deployment_id, EVENT, outcome, seconds, cause, ctx.say)


def main(argv: list[str] | None = None) -> int:
    from bluegreen_hooks import config

    path, deployment_id = argv if argv is not None else sys.argv[1:3]
    signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.monotonic()

    def say(msg: str) -> None:   # the hooks' line format; the output is the retire log
        print(f"[{EVENT} +{time.monotonic() - t0:.2f}s] {msg}", flush=True)
    ctx: Context | None = None
    colour: Colour | None = None
    try:
        ctx = Context(config.load(Path(path), check_files=False), deployment_id, EVENT, say)
        r = ctx.store.read().state.retiring
        colour = r.colour if r is not None else None
        _record(ctx, _run(ctx, r), time.monotonic() - t0, colour)
        return 0
    except Interrupted:
        say("cancelled before it began")
        if ctx is not None:
            _record(ctx, "cancelled", time.monotonic() - t0, colour)
        return 0
    except (HookError, OSError) as exc:
        say(f"ERROR {EVENT}: {exc}")
        if ctx is not None:
            _record(ctx, "failed", time.monotonic() - t0, colour, str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
