"""The one state store: ``<state_dir>/<app>.json``, read and written under the app's lock.

``<state_dir>/<app>.json`` holds a ``model.State``::

    live / live_since / live_deployment / live_image        the colour nginx sends traffic to
    previous / previous_deployment / previous_image          the colour (and image) live before it
    in_progress     the deployment under way: id, target colour, stage, event, pid, timestamps
    drain_workers   nginx workers ([pid, start time]) alive at the last switch: until they exit they may
                    still proxy to the colour that was live before it, so nothing removes that colour sooner
    deployments     bounded history, one record per deployment: outcome, colours, timings
    events          bounded audit log, one record per event run: event, outcome, duration, host, user

Every read-modify-write happens under an ``fcntl.flock`` on ``<app>.lock`` (the kernel drops it when a
process dies, so there is no stale lock *file*); writes go to a temp file, are fsynced, then renamed.
The lock is held only to read the state, decide and commit: never across Docker calls or HTTP probes.
Whether a *deployment* may start is decided from ``in_progress`` by ``decide.claim``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bluegreen_hooks.errors import StateError
from bluegreen_hooks.host import procfs, trust
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.model import BadState, State, Who

LOCK_TIMEOUT = 30.0


def me() -> Who:
    """This process, as recorded with a claim and in the audit log."""
    pid = os.getpid()
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return Who(pid, procfs.process_start_time(pid), socket.gethostname(), user)


@dataclass
class Read:
    """A state as read: ``problem`` is None, "missing" or "corrupt" (``why`` says what is wrong)."""

    state: State
    problem: str | None
    why: str | None = None

    def describe(self) -> str | None:
        """``missing``, ``corrupt (<why>)`` or None."""
        return f"{self.problem} ({self.why})" if self.problem and self.why else self.problem


class Store:
    """The state of one app in ``state_dir``."""

    def __init__(self, state_dir: Path | str, app: str, history: int = 100) -> None:
        self.dir = Path(state_dir)
        self.app = app
        self.history = history
        self.path = self.dir / f"{app}.json"
        self.lock_path = self.dir / f"{app}.lock"
        self.config_path = self.dir / f"{app}.toml"

    def check(self) -> None:
        """Refuse (StateError, one line) a state dir, state, lock or config copy another user could have
        written (host/trust.py): checked before anything runs."""
        trust.check_folder(self.dir)
        for path in (self.path, self.lock_path, self.config_path):
            trust.check_file(path)

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"state directory {self.dir}: cannot create: {exc.strerror}; "
                             f"set BLUEGREEN_STATE_DIR or deploy/state_dir to a writable folder") from exc

    @contextlib.contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the app's exclusive lock (waits up to ``timeout`` seconds for another update to end)."""
        self._ensure_dir()
        trust.check_folder(self.dir)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:   # a symlink: never followed, never created through
                raise trust.refuse(self.lock_path, "is a symbolic link") from exc
            raise StateError(f"{self.lock_path}: cannot open the lock file: {exc.strerror}") from exc
        try:
            trust.check_fd(fd, self.lock_path)
            end = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > end:
                        raise StateError(f"{self.lock_path}: could not lock within {timeout:.0f}s") from exc
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)   # closing the descriptor releases the lock

    def read(self, quarantine: bool = True) -> Read:
        """The state, or an empty one when the file is missing or corrupt (``Read.problem`` says which).

        A corrupt file (not JSON, or JSON of the wrong shape) is moved aside as
        ``<app>.json.corrupt-<UTC time>`` for inspection, unless ``quarantine=False`` (the read-only
        commands: status, dry-run plans leave it for the next deployment).
        """
        trust.check_folder(self.dir)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, encoding="utf-8") as f:
                trust.check_fd(f.fileno(), self.path)
                text = f.read()
        except FileNotFoundError:
            return Read(State(self.app), "missing")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise trust.refuse(self.path, "is a symbolic link") from exc
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError:
            text = ""
        try:
            return Read(State.from_json(json.loads(text), self.app), None)
        except (ValueError, RecursionError) as exc:
            why = str(exc) if isinstance(exc, BadState) else "not JSON"
            if quarantine:
                self._quarantine()
            return Read(State(self.app), "corrupt", why)

    def _quarantine(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while dest.exists():
            n += 1
            dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        with contextlib.suppress(OSError):
            os.replace(self.path, dest)

    def write(self, state: State) -> None:
        """Atomically replace the state file (temp file in the same folder, fsync, rename, fsync dir)."""
        self._ensure_dir()
        state.deployments = state.deployments[-self.history:]
        state.events = state.events[-self.history * 5:]
        text = json.dumps(state.to_json(), indent=1, sort_keys=True) + "\n"
        try:
            write_atomic(self.path, text, mode=0o600, fsync_dir=True)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot write: {exc.strerror}") from exc

    @contextlib.contextmanager
    def update(self) -> Iterator[State]:
        """Read-modify-write under the lock: ``with store.update() as st: st.live = "green"``."""
        with self.locked():
            state = self.read().state
            yield state
            self.write(state)
