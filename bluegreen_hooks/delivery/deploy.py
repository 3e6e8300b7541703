"""CodeDeploy: create a deployment of a pushed revision, follow it to the end, report a failure in one line."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from bluegreen_hooks.delivery.fleet_report import Follower, Target, rollback_id, rolls_back, summary, targets
from bluegreen_hooks.delivery.s3 import Revision, aws_error, aws_errors, client, session
from bluegreen_hooks.errors import DeliveryError

DONE = ("Succeeded", "Failed", "Stopped")

@dataclass
class DeployResult:
    deployment_id: str
    status: str
    info: dict[str, Any] = field(default_factory=dict)
    failed_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    rollback: DeployResult | None = None


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


def wait(cd: Any, deployment_id: str, out: TextIO | None = None, poll: float = 2.0, timeout: float = 3600,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> DeployResult:
    """Follow a deployment until it ends, printing the overview, each instance and each lifecycle event as
    they change (fleet_report.Follower)."""
    out = out or sys.stdout
    deadline = clock() + timeout
    follower = Follower(deployment_id, out)
    while True:
        try:
            info = cd.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
            found = targets(cd, deployment_id)
        except aws_errors() as exc:
            raise aws_error(f"deployment {deployment_id}", exc) from exc
        follower.update(info, found)
        status = info.get("status")
        if status in DONE:
            failed = [(t.id, ev) for t in found for ev in t.events if ev.get("status") == "Failed"]
            return DeployResult(deployment_id, str(status), info, failed, found)
        if clock() >= deadline:
            raise DeliveryError(f"deployment {deployment_id} still {status} after {timeout:.0f}s; follow it with "
                                f"'aws deploy get-deployment --deployment-id {deployment_id}'")
        sleep(poll)


def follow_rollback(cd: Any, result: DeployResult, out: TextIO | None = None, poll: float = 2.0,
                    timeout: float = 3600, sleep: Callable[[float], None] = time.sleep) -> DeployResult | None:
    """When CodeDeploy rolls the failed deployment back automatically, follow the rollback to its end."""
    out = out or sys.stdout
    info = result.info
    for _ in range(10):          # set when the deployment fails; give the service a few polls anyway
        if rollback_id(info) or not rolls_back(info):
            break
        sleep(poll)
        try:
            info = cd.get_deployment(deploymentId=result.deployment_id)["deploymentInfo"]
        except aws_errors() as exc:
            raise aws_error(f"deployment {result.deployment_id}", exc) from exc
    rid = rollback_id(info)
    if not rid:
        msg = (info.get("rollbackInfo") or {}).get("rollbackMessage")
        if msg:
            print(f"no automatic rollback: {msg}", file=out, flush=True)
        return None
    print(f"automatic rollback: CodeDeploy redeploys the last successful revision as {rid}", file=out, flush=True)
    rb = wait(cd, rid, out, poll, timeout, sleep)
    rev = (rb.info.get("revision") or {}).get("s3Location") or {}
    where = f" (s3://{rev.get('bucket')}/{rev.get('key')})" if rev else ""
    print(f"rollback {rid} {rb.status}: " + ("every instance is back on the last good revision" + where
                                             if rb.status == "Succeeded" else summary(rb.targets)),
          file=out, flush=True)
    result.rollback = rb
    return rb


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
    """Print the failed events' diagnostics (error code, script, message, log tail) and each instance's
    outcome; return the one-line cause."""
    out = out or sys.stdout
    _print_diagnostics(result, out)
    if len(result.targets) > 1:
        print(f"instances: {summary(result.targets)}", file=out)
    out.flush()
    return failure_cause(result)


def failure_cause(result: DeployResult) -> str:
    """``deployment d-X Failed in ValidateService: <our hook's cause>`` (+ the automatic rollback, if any)."""
    err = result.info.get("errorInformation") or {}
    first = result.failed_events[0][1] if result.failed_events else {}
    event = first.get("lifecycleEventName") if first else None
    where = f" on {result.failed_events[0][0]}" if event and len(result.targets) > 1 else ""
    cause = f"deployment {result.deployment_id} {result.status}" + (f" in {event}{where}" if event else "")
    # our hooks end a failure with "ERROR <Event>: <cause>": that is the line to repeat
    lines = [ln.split("]", 1)[-1] if ln.startswith(("[stdout]", "[stderr]")) else ln
             for ln in ((first.get("diagnostics") or {}).get("logTail") or "").splitlines()]
    ours = [ln for ln in lines if event and ln.startswith(f"ERROR {event}: ")]
    if ours and event:
        cause += ": " + ours[-1][len(f"ERROR {event}: "):]
    elif err:
        cause += f" ({err.get('code', '?')}: {' '.join(str(err.get('message', '')).split())})"
    if result.rollback is not None:
        cause += f"; rolled back automatically by {result.rollback.deployment_id} ({result.rollback.status})"
    return cause
