"""Which instance this is: the hostname and, when known, the CodeDeploy instance id.

A deployment group has many instances, each with its own state directory; ``status`` run on one of them
should say which one it is. Every hook records, in ``<state_dir>/.instance.json``, what it saw in the
agent's environment: the hostname, the instance id (``$BLUEGREEN_INSTANCE_ID``, else the EC2 instance id
cloud-init keeps in /var/lib/cloud/data/instance-id) and the deployment, group and event. The agent itself
gives hooks no instance id, so on-premises instances set ``BLUEGREEN_INSTANCE_ID`` (e.g. in /etc/profile,
which the agent's unit sources). Stdlib only: the no-op hooks record it too.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bluegreen_hooks.host import files
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.host.trust import STATE_KEY

INSTANCE_ID_ENV = "BLUEGREEN_INSTANCE_ID"
CLOUD_INIT_ID = Path("/var/lib/cloud/data/instance-id")
FILE = ".instance.json"   # hidden: operator.find_app.apps_in lists <app>.json files


def instance_id(environ: Mapping[str, str], cloud_init: Path = CLOUD_INIT_ID) -> str | None:
    """``$BLUEGREEN_INSTANCE_ID``, else cloud-init's instance id (EC2), else None."""
    got = environ.get(INSTANCE_ID_ENV, "").strip()
    if got:
        return got
    try:
        text = cloud_init.read_text().strip()
    except OSError:
        return None
    return text if text.startswith("i-") and text.replace("-", "").isalnum() else None


def record(state_dir: Path, environ: Mapping[str, str], deployment_id: str, event: str) -> None:
    """Write what this hook knows about its instance; a failure to write is not the deployment's problem."""
    data = {"hostname": socket.gethostname(), "instance_id": instance_id(environ), "at": time.time(),
            "deployment": deployment_id, "event": event,
            "application": environ.get("APPLICATION_NAME"), "group": environ.get("DEPLOYMENT_GROUP_NAME")}
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)   # the state dir: private, as host/store makes it
        write_atomic(Path(state_dir) / FILE, json.dumps(data, sort_keys=True) + "\n", mode=0o600)
    except OSError:
        pass


def read(state_dir: Path) -> dict[str, Any] | None:
    """What the last hook recorded, or None."""
    try:
        data = json.loads(files.read_text(Path(state_dir) / FILE, STATE_KEY, follow=False))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(state_dir: Path) -> str:
    """``host1, instance i-host1 (CodeDeploy group web, last event BeforeInstall of d-X)``, or the hostname."""
    now = socket.gethostname()
    rec = read(state_dir)
    if rec is None:
        return f"{now} (no hook has run here yet: CodeDeploy instance unknown)"
    text = str(rec.get("hostname") or now)
    if rec.get("instance_id"):
        text += f", instance {rec['instance_id']}"
    text += (f" (CodeDeploy group {rec.get('group') or '-'}, last event {rec.get('event')} of "
             f"{rec.get('deployment')})")
    if rec.get("hostname") and rec["hostname"] != now:
        text += f"; this shell runs on {now}"
    return text
