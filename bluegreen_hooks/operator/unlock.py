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


def holder_running(ip: InProgress, this_host: str) -> str | None:
    """Why the holder may still be running (its event process is alive, or runs on another host), else None."""
    if ip.event_done:
        return None
    if ip.host not in (None, this_host):
        return f"its {ip.event or '?'} runs on host {ip.host}, which this host cannot check"
    if procfs.process_alive(ip.pid, ip.pid_start):
        return f"its {ip.event or '?'} process (pid {ip.pid}) is still running"
    return None


def describe(ip: InProgress, now: float) -> dict[str, Any]:
    """The released claim, as reported."""
    return {"id": ip.id, "target": ip.target, "stage": ip.stage, "event": ip.event, "event_done": ip.event_done,
            "pid": ip.pid, "host": ip.host, "user": ip.user, "started": ip.started,
            "idle_seconds": round(now - (ip.updated or ip.started), 1)}


def unlock(state_dir: Path, app: str, force: bool = False, history: int = 100) -> dict[str, Any]:
    """Release ``app``'s claim (see the module docstring); ``{ok, app, released, forced, by}``."""
    store = Store(state_dir, app, history)
    store.check()
    who = me()
    by = f"{who.user}@{who.host}"
    with store.locked():
        read = store.read()
        st, now = read.state, time.time()
        ip = st.in_progress
        if ip is None:
            return {"ok": True, "app": app, "released": None, "forced": False, "by": by,
                    "message": f"{app} is not held by any deployment: nothing to unlock"}
        running = holder_running(ip, who.host)
        if running and not force:
            raise LockedError(f"deployment {ip.id} holds {app} and {running}: unlocking now would let another "
                              f"deployment change containers and nginx under it; wait for it, stop it, or pass "
                              f"--force")
        cause = f"unlocked by {by}" + (f" with --force ({running})" if running else "")
        released = describe(ip, now)
        record_deployment(st, ip, "unlocked", now, cause)
        record_event(st, who, ip.id, UNLOCK_EVENT, "succeeded", 0.0, ip.target, now, cause)
        store.write(st)
    return {"ok": True, "app": app, "released": released, "forced": bool(running), "by": by,
            "message": f"released {app} from deployment {ip.id} (stage {ip.stage or 'none'}, last event "
                       f"{ip.event or 'none'}); recorded as an Unlock event by {by}"}
