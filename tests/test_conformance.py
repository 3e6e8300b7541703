"""Conformance: the same deployment scenarios through the REAL CodeDeploy agent and our local runner.

The agent is found through $CODEDEPLOY_LOCAL (.ci/run points it at ../shared/codedeploy-agent/
codedeploy-local; on a host: /opt/codedeploy-agent/bin/codedeploy-local). Without it the agent half is
skipped, except under CI where that is an error. Both runners keep their folders per test (same root,
same -g for consecutive deployments, as on a long-lived instance); the hooks inherit our environment
with the venv's bin first on PATH (their ``python3`` has docker + tenacity) and DOCKER_HOST.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.bundle import bed_config, make_bundle
from testbed.load import Load
from testbed.ports import free_port
from tests.helpers import IN_CI, get, wait_for

VENV_BIN = str(Path(sys.executable).parent)

pytestmark = pytest.mark.agent


@dataclass
class Result:
    returncode: int
    output: str
    folder: Path              # deployment-root/<group>/<deployment id>
    diag: dict | None         # what the agent would report to CodeDeploy for the failed event

    @property
    def scripts_log(self) -> str:
        p = self.folder / "logs" / "scripts.log"
        return p.read_text() if p.exists() else ""

    @property
    def tail_lines(self) -> list[str]:
        return [ln for ln in (self.diag or {}).get("log", "").splitlines() if ln.strip()]

    def explain(self) -> str:
        return f"rc={self.returncode}\n{self.output}\n--- scripts.log\n{self.scripts_log}\n--- diag {self.diag}"


class Runner:
    """Deploys bundles to one deployment group, through the agent or ``bluegreen-hooks local``."""

    def __init__(self, kind: str, root: Path, app: str, group: str) -> None:
        self.kind, self.root, self.app, self.group = kind, root, app, group
        self.n = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
        return env

    def deploy(self, bundle: Path, timeout: float = 300) -> Result:
        self.n += 1
        did = f"d-{uuid.uuid4().hex[:9].upper()}"
        env = self.env()
        diag_file = self.root / f"diag-{self.n}.json"
        if self.kind == "agent":
            env.update(CODEDEPLOY_LOCAL_ROOT=str(self.root), CODEDEPLOY_LOCAL_DEPLOYMENT_ID=did,
                       CODEDEPLOY_LOCAL_DIAGNOSTICS_FILE=str(diag_file))
            argv = [os.environ["CODEDEPLOY_LOCAL"], "-l", str(bundle), "-t", "directory", "-a", self.app,
                    "-d", "testbed", "-g", self.group, "-b", "OVERWRITE"]
        else:
            argv = [sys.executable, "-m", "bluegreen_hooks", "local", str(bundle), "--root", str(self.root),
                    "-a", self.app, "-d", "testbed", "-g", self.group, "--deployment-id", did]
        proc = subprocess.run(argv, env=env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        folder = self.root / "deployment-root" / self.group / did
        local_diag = folder / "logs" / "diagnostics.json"
        diag_path = diag_file if self.kind == "agent" else local_diag
        diag = json.loads(diag_path.read_text()) if diag_path.exists() else None
        return Result(proc.returncode, proc.stdout, folder, diag)


@pytest.fixture(params=["agent", "local"])
def runner(request, tmp_path, app_name):
    if request.param == "agent" and not os.environ.get("CODEDEPLOY_LOCAL"):
        if IN_CI:
            pytest.fail("CI must run the conformance suite under the real agent: set CODEDEPLOY_LOCAL (.ci/run does)")
        pytest.skip("CODEDEPLOY_LOCAL is not set (path of codedeploy-local, e.g. "
                    "../shared/codedeploy-agent/codedeploy-local or /opt/codedeploy-agent/bin/codedeploy-local)")
    root = tmp_path / f"{request.param}-root"
    root.mkdir()
    return Runner(request.param, root, app_name, f"grp-{app_name}")


@pytest.fixture
def bundles(docker_client, nginx, site, app_name, tmp_path):
    ports = (free_port(), free_port())
    state_dir = tmp_path / "state"

    def make(version: str, appspec: str | None = None, **overrides) -> Path:
        cfg = bed_config(app_name, nginx, site, ports, state_dir, version, **overrides)
        b = make_bundle(tmp_path / f"bundle-{version}-{uuid.uuid4().hex[:6]}", cfg)
        if appspec is not None:
            (b / "appspec.yml").write_text(appspec)
        return b

    make.site, make.client, make.state_dir = site, docker_client, state_dir
    return make


def _served(url: str) -> str:
    return get(url + "/")[1].strip()


def _colours(client, app: str) -> dict[str, str]:
    return {c.labels["bluegreen.colour"]: c.id
            for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"bluegreen.app={app}"})
            if c.status != "exited"}   # a release stopped after the next one went live is kept for a rollback


def _ok(r: Result) -> Result:
    assert r.returncode == 0, r.explain()
    assert "failed to close" not in r.scripts_log and "keeps its stdout/stderr open" not in r.output, r.explain()
    return r


TIMEOUT_APPSPEC = """\
version: 0.0
os: linux
hooks:
  ApplicationStop:
    - location: hooks/ApplicationStop
      timeout: 60
  BeforeInstall:
    - location: hooks/BeforeInstall
      timeout: 120
  ApplicationStart:
    - location: hooks/ApplicationStart
      timeout: 5
  ValidateService:
    - location: hooks/ValidateService
      timeout: 300
"""


def test_lifecycle_scenarios_under_load(runner, bundles, app_name):
    """First, second, failed-validation, rollback, same-revision-twice and timed-out deployments: 0 failed."""
    url, client = bundles.site.url, bundles.client
    state = lambda: json.loads((bundles.state_dir / f"{app_name}.json").read_text())  # noqa: E731

    v1, v2 = bundles("v1"), bundles("v2")
    _ok(runner.deploy(v1))                                             # first deployment
    assert state()["live"] == "blue" and _served(url) == "v1"

    with Load(url + "/", threads=2) as load:
        r = _ok(runner.deploy(v2))                                     # second: previous revision's ApplicationStop
        stop_part = r.scripts_log.split("LifecycleEvent - BeforeInstall")[0]
        assert "LifecycleEvent - ApplicationStop" in stop_part and "nothing to stop" in stop_part, r.explain()
        assert state()["live"] == "green" and set(_colours(client, app_name)) == {"green"}

        v3 = bundles("v3", nginx={"validate_path": "/missing"})          # ValidateService fails
        r = runner.deploy(v3)
        assert r.returncode == 1, r.explain()
        assert r.diag and r.diag["script_name"] == "hooks/ValidateService" and r.diag["error_code"] == 4, r.explain()
        last = r.tail_lines[-1]
        assert last.startswith("[stdout]ERROR ValidateService: validation through nginx failed"), r.explain()
        assert last.endswith("traffic is back on green"), r.explain()
        assert len(r.diag["log"]) < 2048
        assert state()["live"] == "green" and set(_colours(client, app_name)) == {"green"}
        assert _served(url) == "v2"

        r = _ok(runner.deploy(v2))                                     # redeploy the previous revision
        assert "nothing to stop" in r.scripts_log.split("LifecycleEvent - BeforeInstall")[0]  # v3's ApplicationStop
        assert state()["live"] == "blue" and _served(url) == "v2"
        _ok(runner.deploy(v2))                                         # the same revision twice in a row
        assert state()["live"] == "green" and _served(url) == "v2"

        live_id = _colours(client, app_name)["green"]
        stuck = bundles("v4", appspec=TIMEOUT_APPSPEC, container={"env": {"HOST": "127.0.0.1", "UNHEALTHY": "1"}})
        r = runner.deploy(stuck)                                       # the agent times ApplicationStart out
        assert r.returncode == 1, r.explain()
        assert r.diag and r.diag["error_code"] == 3 and r.diag["script_name"] == "hooks/ApplicationStart", r.explain()
        assert _colours(client, app_name).get("green") == live_id      # live colour untouched
        wait_for(lambda: set(_colours(client, app_name)) == {"green"} and state()["in_progress"] is None,
                 timeout=60, what="the timed-out ApplicationStart to clean up after SIGTERM")
        assert state()["deployments"][-1]["outcome"] == "failed"

        _ok(runner.deploy(bundles("v5")))                              # the next deployment recovers
        assert state()["live"] == "blue" and _served(url) == "v5"
    res = load.result
    assert res.failed == 0, res.summary()
    assert res.versions_in_order == ["v1", "v2", "v3", "v5"], res.summary()   # v3 served until validation failed
    assert "v4" not in res.versions_seen
    assert [d["outcome"] for d in state()["deployments"]] == \
        ["succeeded", "succeeded", "failed", "succeeded", "succeeded", "failed", "succeeded"]


LEAK_APPSPEC = """\
version: 0.0
os: linux
hooks:
  AfterInstall:
    - location: leak.sh
      timeout: 3
"""


def test_background_process_holding_output_fails_the_event(runner, tmp_path):
    """A hook that leaves a child holding stdout fails at its timeout in both (agent error code 6)."""
    b = tmp_path / "leaky"
    b.mkdir()
    (b / "appspec.yml").write_text(LEAK_APPSPEC)
    pid_file = tmp_path / f"leak-{runner.kind}.pid"
    (b / "leak.sh").write_text(f"#!/bin/sh\necho leaking\nsleep 60 &\necho $! > {pid_file}\n")
    (b / "leak.sh").chmod(0o755)
    try:
        r = runner.deploy(b)
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), 9)
    assert r.returncode == 1, r.explain()
    assert r.diag and r.diag["error_code"] == 6 and r.diag["script_name"] == "leak.sh", r.explain()
    assert "failed to close STDOUT" in r.diag["message"]
    assert r.tail_lines[-1] == "[stdout]leaking", r.explain()
