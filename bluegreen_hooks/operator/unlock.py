"""``unlock``: release the app from a deployment that holds it but will not finish.

A deployment that fails outside our hooks (the agent could not run the next event, a bundle without
``hooks/ApplicationStart``, a deployment stopped in the console) leaves the app claimed until
``deploy/stale_after``. ``unlock`` ends that claim now: the deployment is recorded as ``unlocked`` and
an ``Unlock`` event names who released it. While the holder's event process is alive it refuses
(exit 3), unless ``--force``: that process would go on changing containers and nginx.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bluegreen_hooks.errors import LockedError
from bluegreen_hooks.host import procfs
from bluegreen_hooks.host.store import Store, me
from bluegreen_hooks.model import InProgress, record_deployment, record_event

UNLOCK_EVENT = "Unlock"


def holder_running(in_progress: InProgress, this_host: str) -> str | None:
    """Why the holder may still be running (its event process is alive, or runs on another host), else None."""
    if in_progress.event_done:
        return None
    if in_progress.host not in (None, this_host):
        return f"its {in_progress.event or '?'} runs on host {in_progress.host}, which this host cannot check"
    if procfs.process_alive(in_progress.pid, in_progress.pid_start):
        return f"its {in_progress.event or '?'} process (pid {in_progress.pid}) is still running"
    return None


def describe(in_progress: InProgress, now: float) -> dict[str, Any]:
    """The released claim, as reported."""
    return {"id": in_progress.id, "target": in_progress.target, "stage": in_progress.stage, "event": in_progress.event,
            "event_done": in_progress.event_done,
            "pid": in_progress.pid, "host": in_progress.host, "user": in_progress.user, "started": in_progress.started,
            "idle_seconds": round(now - (in_progress.updated or in_progress.started), 1)}


def unlock(state_dir: Path, app: str, force: bool = False, history: int = 100) -> dict[str, Any]:
    """Release ``app``'s claim (see the module docstring); ``{ok, app, released, forced, by}``."""
    store = Store(state_dir, app, history)
    store.check()
    who = me()
    by = f"{who.user}@{who.host}"
    with store.locked():
        read = store.read()
        state, now = read.state, time.time()
        in_progress = state.in_progress
        if in_progress is None:
            return {"ok": True, "app": app, "released": None, "forced": False, "by": by,
                    "message": f"{app} is not held by any deployment: nothing to unlock"}
        running = holder_running(in_progress, who.host)
        if running and not force:
            raise LockedError(f"deployment {in_progress.id} holds {app} and {running}: unlocking now would let another "
                              f"deployment change containers and nginx under it; wait for it, stop it, or pass "
                              f"--force")
        cause = f"unlocked by {by}" + (f" with --force ({running})" if running else "")
        released = describe(in_progress, now)
        record_deployment(state, in_progress, "unlocked", now, cause)
        record_event(state, who, in_progress.id, UNLOCK_EVENT, "succeeded", 0.0, in_progress.target, now, cause)
        store.write(state)
    return {"ok": True, "app": app, "released": released, "forced": bool(running), "by": by,
            "message": f"released {app} from deployment {in_progress.id} (stage {in_progress.stage or 'none'}, "
                       f"last event {in_progress.event or 'none'}); recorded as an Unlock event by {by}"}
