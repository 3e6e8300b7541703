"""``status``/``history`` from the state file alone: when no config is found (no copy in the state
directory, e.g. the first deployment failed before ApplicationStart kept one, and no ``--config``),
what is live, what is in progress and what failed last — and why — still come from ``<app>.json``.
Nginx and the containers are not looked at (that needs the config)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import State
from bluegreen_hooks.operator.find_app import choose_app, default_state_dir
from bluegreen_hooks.operator.text import ago, utc


def state_store(state_dir: Path | None, app: str | None, why: ConfigError) -> Store:
    """The app's store when its state file exists; else re-raise ``why`` (the reason no config was found)."""
    sd = Path(state_dir) if state_dir is not None else default_state_dir()
    try:
        name = choose_app(sd, app)
    except ConfigError:
        raise why from None
    store = Store(sd, name)
    if not store.path.is_file():
        raise why
    return store


def _last_failure(state: State) -> dict[str, Any] | None:
    failed = [d for d in state.deployments if d.get("outcome") != "succeeded"]
    if not failed or failed[-1] is not (state.deployments[-1] if state.deployments else None):
        return None
    d = failed[-1]
    event = next((e.get("event") for e in reversed(state.events)
                  if e.get("deployment") == d.get("id") and e.get("outcome") == "failed"), None)
    return {"id": d.get("id"), "outcome": d.get("outcome"), "event": event, "cause": d.get("cause"),
            "ended": d.get("ended"), "target": d.get("target")}


def gather(store: Store, why: str) -> dict[str, Any]:
    """status as far as the state file says (JSON-ready; the same top-level keys as the full status)."""
    read = store.read(quarantine=False)
    state = read.state
    in_progress = state.in_progress
    failure = _last_failure(state)
    warnings = [f"last deployment {failure['id']} {failure['outcome']}"
                + (f" at {failure['event']}" if failure["event"] else "") + f": {failure['cause'] or '?'}"]\
        if failure else []
    return {
        "app": store.app, "config": None, "config_error": why, "state_file": str(store.path),
        "state_problem": read.problem,
        "live": {"colour": state.live, "since": state.live_since, "deployment": state.live_deployment,
                 "image": state.live_image},
        "previous": {"colour": state.previous, "deployment": state.previous_deployment, "image": state.previous_image},
        "in_progress": None if in_progress is None else {"id": in_progress.id, "event": in_progress.event,
                                                         "stage": in_progress.stage, "target": in_progress.target,
                                                         "started": in_progress.started},
        "last_failure": failure, "nginx": None, "colours": None, "notes": [], "warnings": warnings,
        "ok": not warnings,
    }


def print_state(s: dict[str, Any]) -> None:
    live, prev = s["live"], s["previous"]
    print(f"app          {s['app']}  (state {s['state_file']}; no config: {s['config_error']})")
    print(f"live         {live['colour']} since {utc(live['since'])} ({ago(live['since'])}), deployment "
          f"{live['deployment']}, image {live['image']}" if live["colour"] else "live         none")
    if prev["colour"]:
        print(f"previous     {prev['colour']}, deployment {prev['deployment']}, image {prev['image']}")
    in_progress = s["in_progress"]
    if in_progress:
        print(f"in progress  {in_progress['id']} -> {in_progress['target']}: {in_progress['event']} "
              f"({in_progress['stage']}) since {utc(in_progress['started'])}")
    print("note: from the state file only; nginx and containers not checked (pass --config PATH to see them)")
    for w in s["warnings"]:
        print(f"WARNING: {w}")
