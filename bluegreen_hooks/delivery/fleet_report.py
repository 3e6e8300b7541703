"""The live report of a deployment across a fleet: every instance, event by event, and the overview counts.

``deploy.wait`` polls CodeDeploy and hands each poll to a ``Follower``, which prints only what changed:

    d-ABCDEFGHI: InProgress (CodeDeployDefault.OneAtATime) - Pending 2, InProgress 1, Succeeded 0, Failed 0, Skipped 0
      i-host1 BlockTraffic: Succeeded (0s)
      ...
      i-host1: Succeeded
    d-ABCDEFGHI: Succeeded - Pending 0, InProgress 0, Succeeded 3, Failed 0, Skipped 0

After a failure ``summary`` names each instance's outcome (which one failed, in which event; the others
Skipped) and ``rollback_id`` finds the deployment CodeDeploy created to roll back automatically.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

OVERVIEW = ("Pending", "InProgress", "Succeeded", "Failed", "Skipped")

Events = list[dict[str, Any]]


@dataclass
class Target:
    """One instance of a deployment: its id, status and lifecycle events (as CodeDeploy lists them)."""

    id: str
    status: str
    events: Events = field(default_factory=list)

    def failed_event(self) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("status") == "Failed"), None)


def targets(cd: Any, deployment_id: str) -> list[Target]:
    """Every instance of the deployment, via the targets API, else the (older) instances API."""
    from botocore.exceptions import ClientError

    try:
        ids = _all_ids(lambda **kw: cd.list_deployment_targets(deploymentId=deployment_id, **kw), "targetIds")
        found = []
        for i in range(0, len(ids), 25):
            got = cd.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=ids[i:i + 25])
            for t in got.get("deploymentTargets", []):
                inst = t.get("instanceTarget") or {}
                found.append(Target(inst.get("targetId") or inst.get("targetArn", "?"), inst.get("status", "?"),
                                    inst.get("lifecycleEvents") or []))
        return found
    except ClientError:
        ids = _all_ids(lambda **kw: cd.list_deployment_instances(deploymentId=deployment_id, **kw), "instancesList")
        found = []
        for i in range(0, len(ids), 25):
            got = cd.batch_get_deployment_instances(deploymentId=deployment_id, instanceIds=ids[i:i + 25])
            found += [Target(s.get("instanceId", "?"), s.get("status", "?"), s.get("lifecycleEvents") or [])
                      for s in got.get("instancesSummary", [])]
        return found


def _all_ids(call: Callable[..., dict[str, Any]], key: str) -> list[str]:
    ids: list[str] = []
    kw: dict[str, Any] = {}
    while True:
        page = call(**kw)
        ids += page.get(key, [])
        if not page.get("nextToken"):
            return ids
        kw = {"nextToken": page["nextToken"]}


def overview_text(info: Mapping[str, Any]) -> str:
    """``Pending 2, InProgress 1, Succeeded 0, Failed 0, Skipped 0`` (empty when CodeDeploy gives none)."""
    ov = info.get("deploymentOverview") or {}
    return ", ".join(f"{k} {ov.get(k, 0)}" for k in OVERVIEW) if ov else ""


def duration(ev: Mapping[str, Any]) -> str:
    a, b = ev.get("startTime"), ev.get("endTime")
    try:
        return f" ({(b - a).total_seconds():.0f}s)" if a and b else ""
    except TypeError:
        return ""


class Follower:
    """Prints a deployment's changes poll by poll: overview, each lifecycle event, each instance's status."""

    def __init__(self, deployment_id: str, out: TextIO) -> None:
        self.deployment_id, self.out = deployment_id, out
        self.head: tuple[Any, str] | None = None
        self.events: dict[tuple[str, str], str] = {}
        self.instances: dict[str, str] = {}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def update(self, info: Mapping[str, Any], found: Sequence[Target]) -> None:
        head = (info.get("status"), overview_text(info))
        if head != self.head:
            self.head = head
            config = info.get("deploymentConfigName")
            self.say(f"{self.deployment_id}: {head[0]}" + (f" ({config})" if config and len(found) > 1 else "")
                     + (f" - {head[1]}" if head[1] else ""))
        for t in found:
            for ev in t.events:
                k = (t.id, ev.get("lifecycleEventName", "?"))
                if self.events.get(k) != ev.get("status"):
                    self.events[k] = ev.get("status", "?")
                    self.say(f"  {t.id} {k[1]}: {self.events[k]}{duration(ev)}")
            if t.status in ("Succeeded", "Failed", "Skipped", "Ready") and self.instances.get(t.id) != t.status:
                self.instances[t.id] = t.status
                failed = t.failed_event()
                self.say(f"  {t.id}: {t.status}" + (f" in {failed.get('lifecycleEventName')}" if failed else ""))


def summary(found: Sequence[Target]) -> str:
    """``i-host1 Failed (ValidateService), i-host2 Skipped, i-host3 Skipped``."""
    parts = []
    for t in found:
        failed = t.failed_event()
        parts.append(f"{t.id} {t.status}" + (f" ({failed.get('lifecycleEventName')})" if failed else ""))
    return ", ".join(parts)


def rollback_id(info: Mapping[str, Any]) -> str | None:
    """The automatic rollback deployment CodeDeploy started for this (failed or stopped) deployment."""
    return (info.get("rollbackInfo") or {}).get("rollbackDeploymentId") or None


def rolls_back(info: Mapping[str, Any]) -> bool:
    """True when the deployment's auto-rollback configuration covers how it ended."""
    arc = info.get("autoRollbackConfiguration") or {}
    want = {"Failed": "DEPLOYMENT_FAILURE", "Stopped": "DEPLOYMENT_STOP_ON_REQUEST"}.get(str(info.get("status")))
    return bool(arc.get("enabled")) and want in (arc.get("events") or [])
