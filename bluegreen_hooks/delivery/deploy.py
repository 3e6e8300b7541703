"""CodeDeploy: create a deployment of a pushed revision, follow it to the end, report a failure in one line."""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from bluegreen_hooks.delivery.s3 import Revision, aws_error, aws_errors, client, session
from bluegreen_hooks.errors import DeliveryError

DONE = ("Succeeded", "Failed", "Stopped")

Events = list[dict[str, Any]]


@dataclass
class DeployResult:
    deployment_id: str
    status: str
    info: dict[str, Any] = field(default_factory=dict)
    failed_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class DeployOptions:
    """create_deployment's optional settings (the deploy command's options); None/False: the group's default."""

    deployment_config: str | None = None
    description: str | None = None
    file_exists: str | None = None
    ignore_stop_failures: bool = False
    auto_rollback: tuple[str, ...] = ()

    def request(self, application: str, group: str, rev: Revision) -> dict[str, Any]:
        """The create_deployment keyword arguments."""
        kw: dict[str, Any] = {"applicationName": application, "deploymentGroupName": group,
                              "revision": rev.revision()}
        if self.deployment_config:
            kw["deploymentConfigName"] = self.deployment_config
        if self.description:
            kw["description"] = self.description
        if self.file_exists:
            kw["fileExistsBehavior"] = self.file_exists
        if self.ignore_stop_failures:
            kw["ignoreApplicationStopFailures"] = True
        if self.auto_rollback:
            kw["autoRollbackConfiguration"] = {"enabled": True, "events": list(self.auto_rollback)}
        return kw


def check_group(application: str, group: str, profile: str | None = None, region: str | None = None) -> None:
    """Fail with one line unless the application and its deployment group exist."""
    try:
        cd = session(profile, region).client("codedeploy")
        cd.get_deployment_group(applicationName=application, deploymentGroupName=group)
    except aws_errors() as exc:
        raise aws_error(f"deployment group {group!r} of {application!r}", exc) from exc


def create_deployment(application: str, group: str, rev: Revision, opts: DeployOptions = DeployOptions(),
                      profile: str | None = None, region: str | None = None, cd: Any = None) -> tuple[Any, str]:
    """Create the deployment; return (the codedeploy client, the deployment id)."""
    if cd is None:
        cd = client("codedeploy", profile, region)
    try:
        cd.get_deployment_group(applicationName=application, deploymentGroupName=group)
        return cd, cd.create_deployment(**opts.request(application, group, rev))["deploymentId"]
    except aws_errors() as exc:
        raise aws_error(f"create deployment of {application!r} to group {group!r}", exc) from exc


def _targets(cd: Any, deployment_id: str) -> list[tuple[str, Events]]:
    """[(instance id, lifecycle events)] via the targets API, else the (older) instances API."""
    from botocore.exceptions import ClientError

    try:
        ids = cd.list_deployment_targets(deploymentId=deployment_id).get("targetIds", [])
        if not ids:
            return []
        got = cd.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=ids[:25])
        found = []
        for t in got.get("deploymentTargets", []):
            inst = t.get("instanceTarget") or {}
            found.append((inst.get("targetId") or inst.get("targetArn", "?"), inst.get("lifecycleEvents") or []))
        return found
    except ClientError:
        ids = cd.list_deployment_instances(deploymentId=deployment_id).get("instancesList", [])
        if not ids:
            return []
        got = cd.batch_get_deployment_instances(deploymentId=deployment_id, instanceIds=ids[:25])
        return [(i.get("instanceId", "?"), i.get("lifecycleEvents") or []) for i in got.get("instancesSummary", [])]


def _duration(ev: Mapping[str, Any]) -> str:
    a, b = ev.get("startTime"), ev.get("endTime")
    try:
        return f" ({(b - a).total_seconds():.0f}s)" if a and b else ""
    except TypeError:
        return ""


def _print_events(targets: Sequence[tuple[str, Events]], seen: dict[tuple[str, str], str], out: TextIO) -> None:
    """Each lifecycle event whose status changed since the last poll, once."""
    for target, events in targets:
        for ev in events:
            k = (target, ev.get("lifecycleEventName", "?"))
            if seen.get(k) != ev.get("status"):
                seen[k] = ev.get("status", "?")
                print(f"  {target} {k[1]}: {seen[k]}{_duration(ev)}", file=out, flush=True)


def wait(cd: Any, deployment_id: str, out: TextIO | None = None, poll: float = 2.0, timeout: float = 3600,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> DeployResult:
    """Follow a deployment until it ends, printing each status and lifecycle event change once."""
    out = out or sys.stdout
    deadline = clock() + timeout
    status = None
    seen: dict[tuple[str, str], str] = {}
    while True:
        try:
            info = cd.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
            targets = _targets(cd, deployment_id)
        except aws_errors() as exc:
            raise aws_error(f"deployment {deployment_id}", exc) from exc
        if info.get("status") != status:
            status = info.get("status")
            ov = info.get("deploymentOverview") or {}
            counts = ", ".join(f"{k} {v}" for k, v in ov.items() if v)
            print(f"{deployment_id}: {status}" + (f" ({counts})" if counts else ""), file=out, flush=True)
        _print_events(targets, seen, out)
        if status in DONE:
            failed = [(t, ev) for t, evs in targets for ev in evs if ev.get("status") == "Failed"]
            return DeployResult(deployment_id, str(status), info, failed)
        if clock() >= deadline:
            raise DeliveryError(f"deployment {deployment_id} still {status} after {timeout:.0f}s; follow it with "
                                f"'aws deploy get-deployment --deployment-id {deployment_id}'")
        sleep(poll)


def _print_diagnostics(result: DeployResult, out: TextIO) -> None:
    for target, ev in result.failed_events:
        d = ev.get("diagnostics") or {}
        print(f"failed: {target} {ev.get('lifecycleEventName')}: {d.get('errorCode', '?')} "
              f"{d.get('scriptName') or ''}".rstrip(), file=out)
        if d.get("message"):
            print(f"  message: {d['message']}", file=out)
        tail = (d.get("logTail") or "").rstrip("\n")
        if tail:
            print("  --- log tail (the agent's last 2048 characters) ---", file=out)
            for ln in tail.splitlines():
                print(f"  | {ln}", file=out)


def report_failure(result: DeployResult, out: TextIO | None = None) -> str:
    """Print the failed events' diagnostics (error code, script, message, log tail); return the one-line cause."""
    out = out or sys.stdout
    _print_diagnostics(result, out)
    err = result.info.get("errorInformation") or {}
    first = result.failed_events[0][1] if result.failed_events else {}
    event = first.get("lifecycleEventName") if first else None
    cause = f"deployment {result.deployment_id} {result.status}" + (f" in {event}" if event else "")
    # our hooks end a failure with "ERROR <Event>: <cause>": that is the line to repeat
    lines = [ln.split("]", 1)[-1] if ln.startswith(("[stdout]", "[stderr]")) else ln
             for ln in ((first.get("diagnostics") or {}).get("logTail") or "").splitlines()]
    ours = [ln for ln in lines if event and ln.startswith(f"ERROR {event}: ")]
    if ours and event:
        cause += ": " + ours[-1][len(f"ERROR {event}: "):]
    elif err:
        cause += f" ({err.get('code', '?')}: {' '.join(str(err.get('message', '')).split())})"
    out.flush()
    return cause
