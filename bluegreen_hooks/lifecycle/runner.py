"""Running one event: the config, the deployment id, the reporter, SIGTERM, the audit and the last line.

Every event prints one line per step with the elapsed time. On failure the last line is
``ERROR <Event>: <cause>; <next step>``, under 300 characters, right after the failed container's log
tail (CodeDeploy shows only the last 2,048 characters of a hook's output).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.errors import ConfigError, HookError, Interrupted, LockedError, as_hook_error
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.host.wait import on_sigterm
from bluegreen_hooks.lifecycle.steps import Context
from bluegreen_hooks.model import AGENT_EVENTS, is_deployment_id, record_deployment, record_event

# a dry run's describer: (config, deployment id, events, deployment group) -> the lines to print
Describe = Callable[[config_mod.Config, str, Sequence[str], 'str | None'], list[str]]

LAST_LINE_MAX = 300


class Reporter:
    """Prints ``[Event +1.23s] message`` lines, flushed at once (the agent streams them to its log)."""

    def __init__(self, event: str, stream: TextIO | None = None) -> None:
        self.event, self.t0 = event, time.monotonic()
        self.stream = stream or sys.stdout

    def __call__(self, msg: str) -> None:
        emit(self.stream, f"[{self.event} +{time.monotonic() - self.t0:.2f}s] {msg}")


_EMITTING = threading.Lock()


def emit(stream: TextIO, text: str) -> None:
    """Print one line, flushed, whole: one write under a lock, as the routes' health waits say things from their
    own threads at the same moment (``print`` writes the text and its newline apart: two lines could run into
    one). A closed output is ignored: after its timeout the CodeDeploy agent sends SIGTERM and closes its ends
    of our stdout/stderr at once, and the cleanup that follows must still run."""
    with _EMITTING, contextlib.suppress(OSError, ValueError):   # BrokenPipeError, or the stream was closed
        stream.write(text + "\n")
        stream.flush()


def deployment_id_from(environ: Mapping[str, str], bundle: Path) -> str:
    """$DEPLOYMENT_ID (set by the agent), else a stable ``manual-…`` id for hand runs of this bundle."""
    d = environ.get("DEPLOYMENT_ID")
    if d:
        if not is_deployment_id(d):
            raise ConfigError(f"DEPLOYMENT_ID: should be letters, digits, '.', '_' or '-', not {d!r}")
        return d
    cfg_file = bundle / config_mod.CONFIG_NAME
    digest = hashlib.sha256(str(bundle.resolve()).encode())
    if cfg_file.exists():
        digest.update(cfg_file.read_bytes())
    return f"manual-{digest.hexdigest()[:10]}"


def last_line(event: str, msg: str) -> str:
    """The final line of a failed event: cut in the middle if needed, so the next step at its end survives."""
    line = " ".join(f"ERROR {event}: {msg}".split())
    if len(line) <= LAST_LINE_MAX:
        return line
    keep = LAST_LINE_MAX - 5
    return line[:keep // 2] + " ... " + line[-(keep - keep // 2):]


def run_event(event: str, bundle: Path, environ: Mapping[str, str] | None = None, out: TextIO | None = None,
              describe: Describe | None = None) -> int:
    """Run one lifecycle event for the bundle at ``bundle``; return the exit status.

    ``describe`` makes it a dry run: print what the event would do and change nothing. The cli passes
    agent/plan.describe (the agent layer sits above this one, so it is handed in, not imported).
    """
    environ = os.environ if environ is None else environ
    out = out or sys.stdout
    if event not in AGENT_EVENTS:
        emit(out, last_line(event, f"unknown lifecycle event; known: {', '.join(AGENT_EVENTS)}"))
        return 2
    old_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _run(event, bundle, environ, out, describe)
    finally:
        signal.signal(signal.SIGTERM, old_handler)


def _run(event: str, bundle: Path, environ: Mapping[str, str], out: TextIO, describe: Describe | None) -> int:
    say, t0 = Reporter(event, out), time.monotonic()
    ctx: Context | None = None
    try:
        cfg = config_mod.load(config_mod.find(bundle, environ), environ)
        d = deployment_id_from(environ, bundle)
        group = environ.get("DEPLOYMENT_GROUP_ID") or None
        if describe is not None:
            if event == "BeforeInstall":   # what the real one refuses first, the dry run refuses too
                from bluegreen_hooks.lifecycle.events import check_inputs
                check_inputs(cfg)
            for ln in describe(cfg, d, [event], group):
                say(ln)
            return 0
        from bluegreen_hooks.host import instance
        from bluegreen_hooks.lifecycle.events import HANDLERS
        from bluegreen_hooks.startup import imports_done

        imports_done()
        # a state dir another user could write is refused before anything runs (and nothing is recorded there)
        Store(cfg.state_dir, cfg.app).check()
        instance.record(cfg.state_dir, environ, d, event)   # which instance this is (status says it)
        ctx = Context(cfg, d, event, say, group=group)
        say(f"deployment {d} of {cfg.app} (CodeDeploy application {environ.get('APPLICATION_NAME', '-')}, "
            f"group {environ.get('DEPLOYMENT_GROUP_NAME', '-')})")
        HANDLERS[event](ctx)
        audit(ctx, "succeeded", time.monotonic() - t0)
        say("done")
        return 0
    except Interrupted as exc:
        return _failed(event, as_hook_error(exc), ctx, out, time.monotonic() - t0)
    except HookError as exc:
        return _failed(event, exc, ctx, out, time.monotonic() - t0)
    except OSError as exc:   # disk full, read-only or unwritable folder: one line naming the file
        return _failed(event, os_error(exc), ctx, out, time.monotonic() - t0)
    except Exception as exc:
        import traceback  # only for a bug: hooks start without it

        emit(out, traceback.format_exc().rstrip())
        if ctx is not None:
            audit(ctx, "failed", time.monotonic() - t0, repr(exc), end_deployment=True)
        emit(out, last_line(event, f"unexpected {type(exc).__name__}: {exc}; see the traceback above"))
        return 1


def os_error(exc: OSError) -> HookError:
    """An OSError as a one-line HookError naming the file (ENOSPC, EROFS, EACCES…).

    The Docker SDK's errors are OSErrors too (through requests), with no errno: those name Docker instead.
    """
    if exc.errno is None and type(exc).__module__.partition(".")[0] in ("docker", "requests", "urllib3"):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return HookError(f"Docker API: {first}; retry the deployment (see `journalctl -u docker` if it persists)")
    where = f"{exc.filename}: " if exc.filename else ""
    return HookError(f"{where}{exc.strerror or exc}; free space or fix the folder's permissions, then retry")


def _failed(event: str, exc: HookError, ctx: Context | None, out: TextIO, seconds: float) -> int:
    if event == "ApplicationStop":   # never fail a deployment because of the previous revision
        Reporter(event, out)(f"warning: {exc}; ApplicationStop has nothing to do, succeeding anyway")
        return 0
    if ctx is not None and not isinstance(exc, LockedError):
        audit(ctx, "failed", seconds, str(exc), end_deployment=True)
    if ctx is not None and ctx.log_tail:
        emit(out, f"--- last {len(ctx.log_tail)} lines of the failed container's output ---")
        for ln in ctx.log_tail:
            emit(out, f"  | {ln}")
    emit(out, last_line(event, str(exc)))
    return exc.exit_code


def audit(ctx: Context, outcome: str, seconds: float, cause: str | None = None, end_deployment: bool = False) -> None:
    """Record the event run; ``end_deployment`` also closes its deployment with the same outcome (a failed
    event ends it: CodeDeploy stops at the first failure)."""
    from bluegreen_hooks.decide import same_id_running
    from bluegreen_hooks.host import procfs

    try:
        with ctx.store.update() as state:
            mine = state.holder(ctx.deployment_id)
            now = time.time()
            record_event(state, ctx.who, ctx.deployment_id, ctx.event, outcome, seconds,
                         mine.target if mine else None, now, cause)
            # a failed event ends its deployment, unless another live process runs an event of it (the
            # same deployment id started twice): this one's failure must not end that one's claim
            if mine and end_deployment and not same_id_running(mine, ctx.who, procfs.process_alive):
                record_deployment(state, mine, outcome, now, cause=cause)
    except (HookError, OSError) as exc:
        ctx.say(f"warning: could not record the event in the state file: {exc}")
    from bluegreen_hooks.observe.report import after_event  # metrics, EMF, notifications: never raises

    after_event(ctx.cfg, ctx.store, ctx.deployment_id, ctx.event, outcome, seconds, cause, ctx.say,
                last_line(ctx.event, cause) if cause else None)
