"""Fleet pieces that need no fleet: the traffic hooks, the instance record, the live report's text."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta

from bluegreen_hooks.delivery.fleet_report import Follower, Target, rolls_back, summary
from bluegreen_hooks.host import instance
from tests.test_structure import HEAVY, ROOT


def _hook(tmp_path, event: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "bluegreen.toml").write_text(
        f'app = "shop"\n[container]\nimage = "shop:1"\n[deploy]\nstate_dir = "{tmp_path / "state"}"\n')
    e = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PYTHON"))}
    e.update(PYTHONPATH=str(ROOT), DEPLOYMENT_ID="d-TRAFFIC", LIFECYCLE_EVENT=event, DEPLOYMENT_GROUP_NAME="web",
             **env)
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "bluegreen_hooks", "hook", event, "--bundle",
                           str(tmp_path)], capture_output=True, text=True, env=e, timeout=60)


def test_the_traffic_hooks_succeed_doing_nothing_and_record_the_instance(tmp_path):
    """Before/AfterBlockTraffic and Before/AfterAllowTraffic: exit 0, say there is nothing to do, import no
    docker/boto3/tenacity, and record which instance ran them (the id from $BLUEGREEN_INSTANCE_ID)."""
    for event in ("BeforeBlockTraffic", "AfterBlockTraffic", "BeforeAllowTraffic", "AfterAllowTraffic"):
        proc = _hook(tmp_path, event, BLUEGREEN_INSTANCE_ID="i-0abc123")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"[{event} " in proc.stdout and "nothing to do: the load balancer" in proc.stdout, proc.stdout
        imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines()
                    if ln.startswith("import time:") and ln.count("|") == 2}
        assert not sorted(m for m in imported if m.split(".")[0] in HEAVY)
        rec = json.loads((tmp_path / "state" / ".instance.json").read_text())
        assert (rec["instance_id"], rec["event"], rec["group"], rec["hostname"]) == (
            "i-0abc123", event, "web", socket.gethostname())
    text = instance.describe(tmp_path / "state")
    assert text == f"{socket.gethostname()}, instance i-0abc123 (CodeDeploy group web, last event " \
                   f"AfterAllowTraffic of d-TRAFFIC)"


def test_an_unknown_event_is_still_refused(tmp_path):
    proc = _hook(tmp_path, "BlockTraffic")      # the load balancer's own event: no hook can name it
    assert proc.returncode == 2 and "invalid choice: 'BlockTraffic'" in proc.stderr


def test_instance_id_comes_from_the_environment_else_cloud_init(tmp_path):
    ci = tmp_path / "instance-id"
    assert instance.instance_id({}, ci) is None
    ci.write_text("i-0123456789abcdef0\n")
    assert instance.instance_id({}, ci) == "i-0123456789abcdef0"
    assert instance.instance_id({"BLUEGREEN_INSTANCE_ID": "web-7"}, ci) == "web-7"
    ci.write_text("not an id\n")
    assert instance.instance_id({}, ci) is None
    assert "no hook has run here yet" in instance.describe(tmp_path / "nothing")


def test_the_live_report_prints_each_change_once_with_the_overview():
    t0 = datetime(2025, 1, 1)
    ev = {"lifecycleEventName": "ValidateService", "status": "Failed", "startTime": t0,
          "endTime": t0 + timedelta(seconds=2)}
    found = [Target("i-1", "Failed", [ev]), Target("i-2", "Skipped", [{"lifecycleEventName": "ValidateService",
                                                                         "status": "Skipped"}])]
    info = {"status": "Failed", "deploymentConfigName": "CodeDeployDefault.OneAtATime",
            "deploymentOverview": {"Pending": 0, "InProgress": 0, "Succeeded": 0, "Failed": 1, "Skipped": 1}}
    out = io.StringIO()
    f = Follower("d-X", out)
    f.update(info, found)
    f.update(info, found)                      # nothing changed: nothing printed
    assert out.getvalue().splitlines() == [
        "d-X: Failed (CodeDeployDefault.OneAtATime) - Pending 0, InProgress 0, Succeeded 0, Failed 1, Skipped 1",
        "  i-1 ValidateService: Failed (2s)", "  i-1: Failed in ValidateService",
        "  i-2 ValidateService: Skipped", "  i-2: Skipped"]
    assert summary(found) == "i-1 Failed (ValidateService), i-2 Skipped"
    assert rolls_back({"status": "Failed", "autoRollbackConfiguration": {"enabled": True,
                                                                          "events": ["DEPLOYMENT_FAILURE"]}})
    assert not rolls_back({"status": "Failed", "autoRollbackConfiguration": {"enabled": False}})
