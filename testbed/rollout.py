"""Deploying one revision across a test fleet through the CodeDeploy emulator (tests/aws/test_fleet.py, bench/fleet.py).

* ``group_settings`` / ``create_group``: a deployment group with or without the load balancer's traffic
  control, its deployment config and auto-rollback;
* ``make_zip``: a revision bundle of the example app with the fleet's bluegreen.toml (one for every host);
* ``spans``: each instance's first event start and last event end, as CodeDeploy reports them;
* ``lb_changes`` / ``requests_while_out``: the balancer's deregister/register log and its access log.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.bundle import ROOT, toml_dumps

ROLE = "arn:aws:iam::123456789012:role/CodeDeployServiceRole"
LB_APPSPEC = ROOT / "appspec-lb.yml"


def create_group(cd: Any, app: str, group: str, traffic_control: bool = True,
                 config: str = "CodeDeployDefault.OneAtATime", rollback: bool = False) -> None:
    kw: dict[str, Any] = {"applicationName": app, "deploymentGroupName": group, "serviceRoleArn": ROLE,
                          "deploymentConfigName": config}
    if traffic_control:
        kw.update(deploymentStyle={"deploymentType": "IN_PLACE", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
                  loadBalancerInfo={"targetGroupInfoList": [{"name": f"{group}-tg"}]})
    if rollback:
        kw["autoRollbackConfiguration"] = {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}
    cd.create_deployment_group(**kw)


def make_zip(work: Path, cfg: dict, name: str, appspec: Path | None = LB_APPSPEC, wheels: bool = True) -> Path:
    """The example app with ``cfg`` as its bluegreen.toml, bundled (with the runtime wheels) into work/name."""
    from bluegreen_hooks.delivery.bundle import bundle

    src = work / f"src-{name}"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT / "example" / "app", src / "app")
    (src / "bluegreen.toml").write_text(toml_dumps(cfg))
    return bundle(src / "bluegreen.toml", work / name, appspec=appspec, with_wheels=wheels).path


@dataclass(frozen=True)
class Span:
    instance: str
    status: str
    start: datetime
    end: datetime


def spans(cd: Any, deployment_id: str) -> list[Span]:
    """Each instance's span (first event start .. last event end, 1 s resolution here), in the API's order."""
    ids = cd.list_deployment_instances(deploymentId=deployment_id)["instancesList"]
    got = cd.batch_get_deployment_instances(deploymentId=deployment_id, instanceIds=ids)["instancesSummary"]
    by_id = {s["instanceId"]: s for s in got}
    out = []
    for i in ids:
        ev = [e for e in by_id[i]["lifecycleEvents"] if e.get("startTime") and e.get("endTime")]
        if ev:
            out.append(Span(i, by_id[i]["status"], min(e["startTime"] for e in ev), max(e["endTime"] for e in ev)))
    return out


def batches(found: list[Span]) -> list[list[str]]:
    """Instances grouped into batches (each sorted): a span starting before the current batch ended joins it."""
    out: list[list[str]] = []
    end = None
    for s in sorted(found, key=lambda s: s.start):
        if end is not None and s.start < end:
            out[-1].append(s.instance)
            end = max(end, s.end)
        else:
            out.append([s.instance])
            end = s.end
    return [sorted(b) for b in out]


def lb_changes(lb_dir: Path, deployment_id: str | None = None) -> list[tuple[float, float, str, str]]:
    """(start, end, action, instance) of each deregister/register (of one deployment, if given)."""
    path = lb_dir / "changes.log"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        end, action, instance, seconds, dep = line.split()[:5]
        if deployment_id is None or dep == deployment_id:
            rows.append((float(end) - float(seconds), float(end), action, instance))
    return rows


def requests_while_out(lb_dir: Path, sockets: dict[str, Path], deployment_id: str) -> dict[str, int]:
    """Per instance: requests the balancer sent it between its deregister's end and its register's start."""
    windows: dict[str, tuple[float, float]] = {}
    for start, end, action, inst in lb_changes(lb_dir, deployment_id):
        if action == "deregister":
            windows[inst] = (end, float("inf"))
        elif inst in windows:
            windows[inst] = (windows[inst][0], start)
    by_sock = {f"unix:{p}": i for i, p in sockets.items()}
    count = dict.fromkeys(windows, 0)
    for line in (lb_dir / "access.log").read_text().splitlines():
        msec, addr = line.split()[:2]
        for a in addr.split(","):
            inst = by_sock.get(a.strip())
            if inst in windows and windows[inst][0] < float(msec) < windows[inst][1]:
                count[inst] += 1
    return count
