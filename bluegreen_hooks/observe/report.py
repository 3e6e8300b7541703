"""After every event run (and rollback, maintenance change): notify, write the EMF line, write the metrics.

``after_event`` is called by lifecycle/runner.audit, the one place every event passes through, right
after the run is recorded in the state. It reads the state once, decides whether this run ended a
deployment (or a rollback, or changed maintenance), and never raises: a failure here is one WARN line.
"""
from __future__ import annotations

import time
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import Record, Say, State, count


def ended_now(state: State, deployment_id: str, started: float) -> Record | None:
    """The deployment record of ``deployment_id`` if it was closed during this run (since ``started``)."""
    for d in reversed(state.deployments):
        if d.get("id") == deployment_id:
            ended = d.get("ended")
            return d if isinstance(ended, (int, float)) and ended >= started else None
    return None


def kind_of(event: str, outcome: str, ended: Record | None) -> str | None:
    """The notification for this run: None when nothing an operator waits for happened."""
    if event == "Maintenance":
        return f"maintenance_{outcome}"
    if event == "Retire":    # after its deployment ended: that deployment was notified already
        return None
    if event == "Rollback":
        return f"rollback_{ended.get('outcome')}" if ended else None
    if ended is not None:
        return f"deployment_{ended.get('outcome')}" if ended.get("outcome") in ("succeeded", "failed") else None
    if outcome == "failed" and event != "ApplicationStop":   # refused before it claimed the app
        return "deployment_failed"
    return None


def fields(state: State, deployment_id: str, event: str, outcome: str, seconds: float, cause: str | None,
           last: str | None, ended: Record | None) -> dict[str, Any]:
    """What a notification says beyond kind, app, host and time."""
    m = state.maintenance
    return {
        "deployment": deployment_id, "event": event, "outcome": (ended or {}).get("outcome") or outcome,
        "live": state.live, "target": (ended or {}).get("target"), "from": (ended or {}).get("from"),
        "seconds": (ended or {}).get("seconds", round(seconds, 3)), "event_seconds": round(seconds, 3),
        "timings": (ended or {}).get("timings") or {}, "cause": cause,
        "last_line": last or cause or (f"maintenance page: {m.message}" if m and event == "Maintenance"
                                       else f"{event} {outcome}"),
        "maintenance": m.to_json() if m else None,
        "receipt": (ended or {}).get("receipt"),     # what clients got in its watch window (lifecycle/watch.py)
        "user": (state.events[-1].get("user") if state.events else None)}


def after_event(cfg: Config, store: Store, deployment_id: str, event: str, outcome: str, seconds: float,
                cause: str | None, say: Say, last: str | None = None) -> None:
    """Notify (when a deployment ended), append the EMF line, rewrite the .prom file. Never raises."""
    if cfg.notify is None and cfg.metrics.dir is None and cfg.metrics.emf is None:
        return
    try:
        now = time.time()
        state = store.read(quarantine=False).state
        ended = ended_now(state, deployment_id, now - seconds - 1.0)
        kind = kind_of(event, outcome, ended)
        if kind is not None and cfg.notify is not None:
            from bluegreen_hooks.observe import notify

            if not notify.send(cfg, kind, fields(state, deployment_id, event, outcome, seconds, cause, last, ended),
                               say):
                with store.update() as updated:
                    count(updated, "notify_failed")
                    state = updated
        if cfg.metrics.emf:
            from bluegreen_hooks.observe import emf

            emf.write(cfg, emf.record(cfg, state, deployment_id, event, outcome, seconds, now, ended))
        if cfg.metrics.dir is not None:
            from bluegreen_hooks.observe import metrics

            metrics.write(cfg, state)
    except Exception as exc:   # reporting must never fail (or delay past its bounds) what it reports on
        say(f"WARN could not report {event} (metrics, EMF or notification): {type(exc).__name__}: {exc}"[:300])
