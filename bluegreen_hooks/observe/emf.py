"""CloudWatch Embedded Metric Format: one JSON line per event (deploy/emf = "stdout" or a file path), which
the CloudWatch agent on the instance turns into metrics without any API call.

The shape (docs/operator.md; AWS's "Specification: Embedded metric format")::

    {"_aws": {"Timestamp": <ms>, "CloudWatchMetrics": [{"Namespace": "BlueGreenHooks",
              "Dimensions": [["App"], ["App", "Event"]],
              "Metrics": [{"Name": "EventDuration", "Unit": "Seconds"}, ...]}]},
     "App": "shop", "Event": "ValidateService", "Outcome": "succeeded", "Colour": "green",
     "Deployment": "d-ABC", "EventDuration": 3.2, "EventFailed": 0, "DeploymentDuration": 41.0, ...}
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.host import files
from bluegreen_hooks.model import Record, State

# the figures of a deployment that ended with this event: (EMF name, timings key or record key, factor)
DEPLOYMENT_FIGURES = (("DeploymentDuration", "seconds", 1.0), ("ImagePrepare", "image", 1.0),
                      ("HealthWait", "healthy", 1.0), ("SwitchLatency", "switch_ms", 0.001),
                      ("DrainTime", "drain", 1.0))


def record(cfg: Config, state: State, deployment_id: str, event: str, outcome: str, seconds: float, now: float,
           ended: Record | None) -> dict[str, Any]:
    """The EMF object for one event run; ``ended``: the deployment record this event closed, if any."""
    values: dict[str, float] = {"EventDuration": round(seconds, 3), "EventFailed": 1.0 if outcome == "failed" else 0.0}
    if ended is not None:
        timings = ended.get("timings") or {}
        for name, key, factor in DEPLOYMENT_FIGURES:
            raw = ended.get(key) if key == "seconds" else timings.get(key)
            if isinstance(raw, (int, float)):
                values[name] = round(float(raw) * factor, 6)
        values["DeploymentSucceeded"] = 1.0 if ended.get("outcome") == "succeeded" else 0.0
    units = {name: "Count" if name in ("EventFailed", "DeploymentSucceeded") else "Seconds" for name in values}
    return {
        "_aws": {"Timestamp": int(now * 1000), "CloudWatchMetrics": [{
            "Namespace": cfg.metrics.emf_namespace, "Dimensions": [["App"], ["App", "Event"]],
            "Metrics": [{"Name": name, "Unit": units[name]} for name in values]}]},
        "App": cfg.app, "Event": event, "Outcome": outcome, "Colour": state.live or "none",
        "Deployment": deployment_id, **values}


def write(cfg: Config, obj: dict[str, Any]) -> None:
    """Append one line to deploy/emf (a file, created 0644), or print it on stdout."""
    line = json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"
    if cfg.metrics.emf == "stdout":
        sys.stdout.write(line)
        sys.stdout.flush()
        return
    if cfg.metrics.emf:
        fd = files.open_file(Path(cfg.metrics.emf), "deploy/emf", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644,
                             follow=False)
        try:
            os.write(fd, line.encode("utf-8"))   # one write of one line: lines of concurrent writers never mix
        finally:
            os.close(fd)
