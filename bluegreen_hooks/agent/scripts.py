"""Running one hook script the way the CodeDeploy agent does (aws-codedeploy-agent 1.8.1, ``CommandExecutor``).

* environment: what the caller passes; stdin closed; its own process group; ``runas`` through ``su``;
  made executable if it is not;
* one deadline (the script's ``timeout``) for the script to exit AND close its stdout/stderr: on
  expiry the process group gets SIGTERM and our ends of its pipes are closed, as the agent does; a
  script that exits but leaves a background process holding its output fails with "failed to close
  STDOUT" at the deadline (agent error code 6);
* every output line goes to scripts.log in the agent's format, and the agent's 2048-character tail
  of whole lines (what CodeDeploy shows) is kept.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import selectors
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, NoReturn

from bluegreen_hooks.config.appspec import Script
from bluegreen_hooks.errors import HookError

LOG_TAIL = 2048
KILL_GRACE = 60.0   # after SIGTERM on a timeout: wait this long for the group, then SIGKILL
EXIT_WARNING_AFTER = 1.0   # the script exited this long ago but its outputs are still open: say so once

# agent error codes (ScriptError)
SCRIPT_MISSING = 1
SCRIPT_NOT_EXECUTABLE = 2
SCRIPT_TIMED_OUT = 3
SCRIPT_FAILED = 4
UNKNOWN_ERROR = 5
OUTPUTS_LEFT_OPEN = 6


class EventFailed(HookError):
    """A lifecycle event failed (the agent's ScriptError): ``code`` is the agent's error code."""

    def __init__(self, msg: str, code: int = SCRIPT_FAILED, script: str | None = None) -> None:
        super().__init__(msg)
        self.code, self.script = code, script


class ScriptLog:
    """scripts.log in the agent's format, plus the agent's 2048-character tail of whole lines."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path, self.echo = path, echo
        self.tail: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, entry: str, show: str | None = None) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + entry)
        self.tail.append(entry)
        total, keep = 0, 0
        for item in reversed(self.tail):      # the agent keeps whole lines totalling under 2048 characters
            if total + len(item) >= LOG_TAIL:
                break
            total += len(item)
            keep += 1
        self.tail = self.tail[len(self.tail) - keep:]
        if show is not None:
            self.echo(show)


class Stop:
    """A signal (SIGTERM, SIGINT) asking the runner to stop: forwarded to the running hook's process group.

    The hook runs in its own session, so a signal to the runner (or Ctrl-C) would not reach it: without
    this, the runner died and the hook carried on, orphaned (it switched traffic with no ValidateService
    after it). ``install()`` puts the handler in place; ``run_script`` registers the hook it runs, waits
    for it to exit (SIGKILL after ``KILL_GRACE``) and the runner then stops before the next event.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum, self.at = signum, time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGTERM)     # what the agent sends; our hooks clean up on it

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stop]:
        """Handle SIGTERM and SIGINT with this object while the block runs (main thread only)."""
        old = {sig: signal.signal(sig, self) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def _command(path: Path, runas: str | None) -> list[str]:
    if runas and runas != pwd.getpwuid(os.getuid()).pw_name:
        return ["su", runas, "-c", str(path)]
    return [str(path)]


def run_script(script: Script, archive: Path, env: dict[str, str], log: ScriptLog,
               say: Callable[[str], None], stop: Stop | None = None) -> None:
    """Run one hook script as the agent does; raise EventFailed with the agent's error code.

    With ``stop`` (installed as the signal handler), a SIGTERM/SIGINT to us is forwarded to the script's
    process group, and the script is waited for (``KILL_GRACE``, then SIGKILL) before this returns.
    """
    path = _executable(script, archive, say)
    log.add(f"Script - {script.location}\n")
    deadline = time.monotonic() + script.timeout
    stop = stop or Stop()
    if stop.signum is not None:
        raise EventFailed(f"not started: stopped by {stop.name}", UNKNOWN_ERROR, script.location)
    try:
        proc = subprocess.Popen(_command(path, script.runas), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise EventFailed(f"Script at specified location: {script.location} failed with error {type(exc).__name__} "
                          f"with message {exc}", SCRIPT_FAILED, script.location) from exc
    stop.proc = proc
    if stop.signum is not None:        # the signal came while the script was being started
        _kill_group(proc, signal.SIGTERM)
    outputs = _Outputs(proc, log)
    try:
        _wait(proc, outputs, deadline, script, say, stop)
    except BaseException:              # an unexpected error here: never leave the hook running
        _kill_group(proc, signal.SIGTERM)
        raise
    finally:
        open_pipes = outputs.close()
        stop.proc = None
    _judge(proc, script, open_pipes, stop)


def _executable(script: Script, archive: Path, say: Callable[[str], None]) -> Path:
    """The script's path in the archive, made executable if it is not (as the agent does)."""
    path = archive / script.location
    if not path.exists():
        raise EventFailed(f"Script does not exist at specified location: {path}", SCRIPT_MISSING, script.location)
    real, root = os.path.realpath(path), os.path.realpath(archive)
    if not real.startswith(root + os.sep):       # unpack refuses such links; never chmod or run outside
        raise EventFailed(f"Script at specified location: {script.location} leads outside the bundle "
                          f"(-> {real})", SCRIPT_MISSING, script.location)
    if not os.access(path, os.X_OK):
        say(f"warning: {script.location} is not executable; making it executable")
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise EventFailed(f"Unable to set script at specified location: {script.location} as executable",
                              SCRIPT_NOT_EXECUTABLE, script.location) from exc
    return path


class _Outputs:
    """A script's stdout and stderr, read line by line into the log until they close."""

    def __init__(self, proc: subprocess.Popen[bytes], log: ScriptLog) -> None:
        self.log = log
        self.sel = selectors.DefaultSelector()
        self.partial = {"stdout": b"", "stderr": b""}
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if pipe is not None:          # always: the script runs with stdout=PIPE, stderr=PIPE
                self.sel.register(pipe, selectors.EVENT_READ, name)

    def open(self) -> list[str]:
        """The names of the outputs still open ("stdout", "stderr")."""
        return [k.data for k in self.sel.get_map().values()]

    def read(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for output; log every whole line, and the last partial one at EOF."""
        for key, _ in self.sel.select(timeout):
            name: str = key.data
            chunk = os.read(key.fd, 65536)
            if not chunk:
                self.sel.unregister(key.fileobj)
                if self.partial[name]:
                    self._emit(name, self.partial[name])
                    self.partial[name] = b""
                continue
            lines = (self.partial[name] + chunk).split(b"\n")
            self.partial[name] = lines.pop()
            for ln in lines:
                self._emit(name, ln + b"\n")

    def _emit(self, name: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        self.log.add(f"[{name}]{text}" + ("" if text.endswith("\n") else "\n"), f"  | {text.rstrip()}")

    def close(self) -> list[str]:
        """Stop watching; return the outputs that were still open."""
        still_open = self.open()
        self.sel.close()
        return still_open


def _wait(proc: subprocess.Popen[bytes], outputs: _Outputs, deadline: float, script: Script,
          say: Callable[[str], None], stop: Stop) -> None:
    """Log the script's output until it closes, then wait for the script to exit: both by ``deadline``
    (or ``KILL_GRACE`` after a stop signal, whichever comes first)."""
    warned, exited_at = False, None
    while outputs.open():
        left = _left(deadline, stop)
        if left <= 0:
            break
        outputs.read(min(left, 0.5))
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        if not warned and exited_at is not None and outputs.open()\
                and time.monotonic() - exited_at > EXIT_WARNING_AFTER:
            warned = True
            say(f"warning: {script.location} exited but a background process keeps its stdout/stderr open; "
                f"the agent waits for it until the timeout ({script.timeout}s)")
    while proc.poll() is None and _left(deadline, stop) > 0:   # outputs closed, process still running
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(min(_left(deadline, stop), 0.5))


def _left(deadline: float, stop: Stop) -> float:
    """Seconds left to wait for the script: to its deadline, or to the end of the grace after a stop."""
    if stop.signum is not None:
        deadline = min(deadline, stop.at + KILL_GRACE)
    return deadline - time.monotonic()


def _judge(proc: subprocess.Popen[bytes], script: Script, open_pipes: list[str], stop: Stop) -> None:
    """After the deadline or the script's end: stop what is left and raise the agent's error, if any."""
    if stop.signum is not None:
        _stopped(proc, script, stop)
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        _close(proc)                       # the agent closes its ends of the pipes right after the kill
        try:
            proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
        raise EventFailed(f"Script at specified location: {script.location} failed to complete in "
                          f"{script.timeout} seconds", SCRIPT_TIMED_OUT, script.location)
    if open_pipes:
        _kill_group(proc, signal.SIGTERM)  # the agent leaves the background process running; we do not
        _close(proc)
        raise EventFailed(f"Script at specified location: {script.location} failed to close "
                          f"{open_pipes[0].upper()}", OUTPUTS_LEFT_OPEN, script.location)
    _close(proc)
    if proc.returncode != 0:
        who = f" run as user {script.runas}" if script.runas else ""
        code = proc.returncode if proc.returncode >= 0 else f"{proc.returncode} (signal {-proc.returncode})"
        raise EventFailed(f"Script at specified location: {script.location}{who} failed with exit code {code}",
                          SCRIPT_FAILED, script.location)


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _close(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _stopped(proc: subprocess.Popen[bytes], script: Script, stop: Stop) -> NoReturn:
    """We were told to stop while the script ran: it had SIGTERM and ``KILL_GRACE``; kill what is left."""
    alive = proc.poll() is None
    _kill_group(proc, signal.SIGKILL)        # the group: background children must not outlive the stop
    _close(proc)
    proc.wait()
    how = f"killed after {KILL_GRACE:g}s" if alive else f"exit code {proc.returncode}"
    raise EventFailed(f"Script at specified location: {script.location} was stopped: {stop.name} forwarded to "
                      f"its process group ({how})", UNKNOWN_ERROR, script.location)
