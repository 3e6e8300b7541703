"""Which bluegreen-hooks container holds a process: from /proc/<pid>/cgroup (the container id) and its labels.

With host networking a port held by another app's container shows up as a plain process; the labels
say which app, colour and deployment it is, so the refusal can say "app shop2's blue" instead of
"not a bluegreen-hooks container". Docker is imported lazily (through runtime.sdk.connect).
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from bluegreen_hooks.runtime.base import LABEL_APP, LABEL_COLOUR, LABEL_DEPLOYMENT

_CONTAINER_ID = re.compile(r"(?:docker[-/]|/docker/|libpod-)([0-9a-f]{64})(?:\.scope)?\Z")
PROC = Path("/proc")


def container_id(pid: int, proc: Path = PROC) -> str | None:
    """The id of the Docker container ``pid`` runs in (cgroup v1 or v2, cgroupfs or systemd driver), or None."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        m = _CONTAINER_ID.search(line.rsplit(":", 1)[-1])
        if m:
            return m.group(1)
    return None


def describe(pid: int, client: Any | None = None) -> str | None:
    """``the bluegreen-hooks container shop2-blue (app shop2, colour blue, deployment d-1)``, or None
    when ``pid`` is not in a container we labelled (or Docker cannot say)."""
    cid = container_id(pid)
    if cid is None:
        return None
    with contextlib.suppress(Exception):       # Docker unreachable, the container just went: no description
        from bluegreen_hooks.runtime.sdk import connect

        cont = (client or connect()).containers.get(cid)
        labels = cont.labels or {}
        if labels.get(LABEL_APP):
            return (f"the bluegreen-hooks container {cont.name} (app {labels[LABEL_APP]}, colour "
                    f"{labels.get(LABEL_COLOUR, '?')}, deployment {labels.get(LABEL_DEPLOYMENT, '?')})")
    return None
