"""The one state module: what is live, what is in progress, and what happened, per app, on disk.

``<state_dir>/<app>.json`` holds::

    live / live_since / live_deployment / live_image        the colour nginx sends traffic to
    previous / previous_deployment / previous_image          the colour (and image) live before it
    in_progress     the deployment under way: id, target colour, stage, event, pid, timestamps
    drain_workers   nginx workers ([pid, start time]) alive at the last switch: until they exit they may
                    still proxy to the colour that was live before it, so nothing removes that colour sooner
    deployments     bounded history, one record per deployment: outcome, colours, timings
    events          bounded audit log, one record per event run: event, outcome, duration, host, user

Every read-modify-write happens under an ``fcntl.flock`` on ``<app>.lock`` (the kernel drops it when a
process dies, so there is no stale lock *file*); writes go to a temp file, are fsynced, then renamed.

The lock file only serialises single updates. Whether a *deployment* may start is decided by
``claim()`` from ``in_progress``:

* its event process is alive (pid and start time match) → busy: refuse, naming the holder and its age;
* its event process died without finishing (SIGKILL, a crash, the agent's timeout) → stale at once;
* its last event finished and the next has not started within ``stale_after`` seconds → stale;
* otherwise (between two events of the holder, e.g. during Install) → busy.

A deployment whose event failed is over (CodeDeploy stops at the first failure): it clears
``in_progress`` itself.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from bluegreen_hooks.errors import LockedError, StateError

SCHEMA = 1


def empty(app: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "app": app, "live": None, "live_since": None, "live_deployment": None,
            "live_image": None, "previous": None, "previous_deployment": None, "previous_image": None,
            "in_progress": None, "deployments": [], "events": []}


def _valid(data: Any, app: str) -> bool:
    return (isinstance(data, dict) and data.get("app") == app and data.get("live") in (None, "blue", "green")
            and isinstance(data.get("deployments"), list) and isinstance(data.get("events"), list)
            and (data.get("in_progress") is None or isinstance(data.get("in_progress"), dict)))


class Store:
    """The state of one app in ``state_dir``."""

    def __init__(self, state_dir: Path | str, app: str, history: int = 100) -> None:
        self.dir = Path(state_dir)
        self.app = app
        self.history = history
        self.path = self.dir / f"{app}.json"
        self.lock_path = self.dir / f"{app}.lock"
        self.problem: str | None = None   # set by read() when the file was missing or unreadable

    def _ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"state directory {self.dir}: cannot create: {exc.strerror}; "
                             f"set BLUEGREEN_STATE_DIR or deploy/state_dir to a writable folder") from exc

    @contextlib.contextmanager
    def locked(self, timeout: float = 30) -> Iterator[None]:
        """Hold the app's exclusive lock (waits up to ``timeout`` seconds for another update to end)."""
        self._ensure_dir()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
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

    def read(self, quarantine: bool = True) -> dict[str, Any]:
        """The state, or an empty one when the file is missing or corrupt (``self.problem`` says which).

        A corrupt file is moved next to the original as ``<app>.json.corrupt`` for inspection, unless
        ``quarantine=False`` (the read-only commands: status, dry-run plans leave it for the next deployment).
        """
        self.problem = None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.problem = "missing"
            return empty(self.app)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not _valid(data, self.app):
            self.problem = "corrupt"
            if quarantine:
                with contextlib.suppress(OSError):
                    os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
            return empty(self.app)
        return data

    def write(self, data: dict[str, Any]) -> None:
        """Atomically replace the state file (temp file in the same folder, fsync, rename, fsync dir)."""
        self._ensure_dir()
        data["deployments"] = data["deployments"][-self.history:]
        data["events"] = data["events"][-self.history * 5:]
        fd, tmp = tempfile.mkstemp(prefix=f".{self.app}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under the lock: ``with store.update() as st: st["live"] = "green"``."""
        with self.locked():
            data = self.read()
            yield data
            self.write(data)


# ----------------------------------------------------------------------------------- processes & claims

def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int | None, start_time: int | None) -> bool:
    """True when ``pid`` runs and is the same process (same start time, so a reused pid does not count)."""
    if not pid:
        return False
    now = process_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def me() -> dict[str, Any]:
    pid = os.getpid()
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return {"pid": pid, "pid_start": process_start_time(pid), "host": socket.gethostname(), "user": user}


def holder_status(ip: dict[str, Any], now: float, stale_after: float) -> tuple[str, str]:
    """Classify an ``in_progress`` record: ("busy" | "stale", human reason)."""
    age = now - ip.get("started", now)
    idle = now - ip.get("updated", now)
    event = ip.get("event", "?")
    if not ip.get("event_done"):
        if ip.get("host") not in (None, socket.gethostname()):
            return "busy", f"{event} running on {ip.get('host')}"
        if process_alive(ip.get("pid"), ip.get("pid_start")):
            return "busy", f"{event} running as pid {ip.get('pid')}, started {age:.0f}s ago"
        return "stale", f"its {event} process (pid {ip.get('pid')}) died without finishing"
    if idle < stale_after:
        return "busy", f"between events (last: {event} finished {idle:.0f}s ago, started {age:.0f}s ago)"
    return "stale", f"idle for {idle:.0f}s after {event} (stale after {stale_after:.0f}s)"


def claim(data: dict[str, Any], deployment_id: str, event: str, target: str | None, stale_after: float,
          now: float | None = None) -> str | None:
    """Make ``deployment_id`` the holder of ``data`` for ``event``.

    Returns a note when a stale holder was taken over; raises LockedError when another deployment is busy.
    """
    now = time.time() if now is None else now
    ip = data.get("in_progress")
    note = None
    if ip and ip.get("id") != deployment_id:
        status, reason = holder_status(ip, now, stale_after)
        if status == "busy":
            raise LockedError(f"deployment {ip.get('id')} is in progress ({reason}); "
                              f"wait for it to finish, or stop it, then retry {deployment_id}")
        note = f"took over from stale deployment {ip.get('id')}: {reason}"
        record_deployment(data, ip, "abandoned", now, reason)
        ip = None
    if not ip:
        ip = {"id": deployment_id, "target": target, "started": now, "stage": None}
    ip.update(me(), event=event, event_done=False, updated=now)
    if target is not None:
        ip["target"] = target
    data["in_progress"] = ip
    return note


def finish_event(data: dict[str, Any], deployment_id: str, stage: str, **extra: Any) -> None:
    """Mark the holder's current event as done (the deployment stays in progress)."""
    ip = data.get("in_progress")
    if ip and ip.get("id") == deployment_id:
        ip.update(extra, stage=stage, event_done=True, updated=time.time())


def record_deployment(data: dict[str, Any], ip: dict[str, Any], outcome: str, now: float | None = None,
                      cause: str | None = None) -> None:
    """Close the deployment described by ``ip`` in the history (and clear in_progress if it is the holder)."""
    now = time.time() if now is None else now
    data["deployments"].append({
        "id": ip.get("id"), "target": ip.get("target"), "from": ip.get("from"), "outcome": outcome,
        "cause": cause, "started": ip.get("started"), "ended": now,
        "seconds": round(now - ip.get("started", now), 3), "stage": ip.get("stage"), "image": ip.get("image"),
        "timings": ip.get("timings", {})})
    if data.get("in_progress") and data["in_progress"].get("id") == ip.get("id"):
        data["in_progress"] = None


def record_event(data: dict[str, Any], deployment_id: str, event: str, outcome: str, seconds: float,
                 live: str | None, target: str | None, cause: str | None = None) -> None:
    """Append one event run to the audit log."""
    who = me()
    data["events"].append({"at": time.time(), "deployment": deployment_id, "event": event, "outcome": outcome,
                           "seconds": round(seconds, 3), "live": live, "target": target, "cause": cause,
                           "host": who["host"], "user": who["user"], "pid": who["pid"]})


def set_live(data: dict[str, Any], colour: str, deployment_id: str | None, image: str | None) -> None:
    """Record ``colour`` as live; the colour live before it becomes ``previous``."""
    if data.get("live") != colour:
        data["previous"], data["previous_deployment"], data["previous_image"] = (
            data.get("live"), data.get("live_deployment"), data.get("live_image"))
        data["live_since"] = time.time()
    data["live"], data["live_deployment"], data["live_image"] = colour, deployment_id, image


def reconcile(data: dict[str, Any], include_colour: str | None, running: dict[str, dict[str, Any] | None],
              problem: str | None = None) -> list[str]:
    """Make ``data["live"]`` agree with reality; return what was corrected, one note per line.

    The nginx include says which colour serves traffic; container labels say what runs. The include
    wins when its colour runs; else the recorded colour if it runs; else the only colour running.
    ``running`` maps a colour to ``{"deployment": ..., "image": ...}`` of its running container, or None.
    """
    notes = []
    if problem:
        notes.append(f"state file was {problem}; rebuilt from the nginx include and the containers")
    recorded = data.get("live")
    if include_colour and running.get(include_colour):
        live = include_colour
    elif recorded and running.get(recorded) and include_colour is None:
        live = recorded
    else:
        up = [c for c in ("blue", "green") if running.get(c)]
        live = up[0] if len(up) == 1 else (recorded if recorded in up else None)
    if live != recorded:
        why = (f"nginx include points at {include_colour}" if include_colour else "the nginx include names no colour")
        notes.append(f"state said live={recorded}, but {why} and running colours are "
                     f"{sorted(c for c in running if running[c]) or 'none'}: live is now {live}")
        if live is None:
            data.update(live=None, live_since=None, live_deployment=None, live_image=None)
        else:
            info = running[live] or {}
            set_live(data, live, info.get("deployment"), info.get("image"))
    return notes
