"""One revision across a fleet: CodeDeploy's deployment configs, a load balancer, automatic rollback.

Real everything: 4 hosts (testbed.fleet: a network namespace each, with its own dockerd, nginx and state
dir), a balancer nginx in front of them (testbed.balancer) whose deregister/register are the instances'
BlockTraffic/AllowTraffic, aws-local's emulator running the real CodeDeploy agent on every host, and
``build.py deploy`` (in process) creating and following the deployments. Load goes through the balancer.

The emulator needs its instances file when it starts, so this module has its own aws-local (other ports
and folder: testbed.aws_local), overriding conftest's ``aws_local``. The tests build on each other in
file order (one app; each starts from the versions the previous one left), as a fleet's life does.
Groups: fleet3 = host1..3, fleet4 = host1..4 (both behind the balancer), plain4 = host1..4 without it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from bluegreen_hooks.cli import main as build_main
from testbed import rollout
from testbed.aws_local import AwsLocal
from testbed.bundle import ROOT
from testbed.fleet import Fleet
from testbed.load import Load
from tests.aws.conftest import HOOK_VENV_ROOT, _unavailable

pytestmark = [pytest.mark.aws, pytest.mark.agent]

APP = f"fl{uuid.uuid4().hex[:6]}"          # the bluegreen app (one per session)
UNSET = ["AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
         "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"]


@pytest.fixture(scope="module")
def fleet():
    if os.geteuid() != 0 or not all(shutil.which(x) for x in ("dockerd", "nginx", "ip", "nsenter", "unshare")):
        _unavailable("a fleet needs root, dockerd, nginx, ip, nsenter and unshare")
    f = Fleet(Path(tempfile.mkdtemp(prefix="bghf-", dir="/tmp")), n=4)
    f.start(registered=3)                   # host4 joins the balancer when first deployed (AllowTraffic)
    yield f
    left = f.stop()
    assert left == [], f"the fleet left behind: {left}"


@pytest.fixture(scope="module")
def aws_local(fleet, tmp_path_factory):
    """The fleet's own aws-local (overrides conftest's session one for this module)."""
    env = {"BLUEGREEN_VENV_ROOT": HOOK_VENV_ROOT}
    instances = {"fleet3": fleet.instances(fleet.hosts[:3], env=env), "fleet4": fleet.instances(env=env),
                 "plain4": fleet.instances(env=env)}
    path = tmp_path_factory.mktemp("fleet-aws") / "instances.json"
    path.write_text(json.dumps(instances, indent=1))
    aws = AwsLocal(path)
    if aws.available():
        _unavailable(str(aws.available()))
    aws.up()
    try:
        yield {"dir": aws.dir, "env": aws.env, "unset": UNSET, "started": True, "aws": aws}
    finally:
        aws.down()


@pytest.fixture(scope="module")
def world(aws_local, fleet, tmp_path_factory):
    """The CodeDeploy application, its groups, a bucket, and a deploy() that runs ``build.py deploy``."""
    aws = aws_local["aws"]
    cd, s3 = aws.client("codedeploy"), aws.client("s3")
    app, bucket = f"bghf-{uuid.uuid4().hex[:8]}", f"bghf-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    cd.create_application(applicationName=app, computePlatform="Server")
    rollout.create_group(cd, app, "fleet3", rollback=True)
    rollout.create_group(cd, app, "fleet4", config="CodeDeployDefault.HalfAtATime", rollback=True)
    rollout.create_group(cd, app, "plain4", config="CodeDeployDefault.HalfAtATime", traffic_control=False)
    return World(cd, app, bucket, fleet, tmp_path_factory.mktemp("fleet-work"))


class World:
    def __init__(self, cd, app: str, bucket: str, fleet: Fleet, work: Path) -> None:
        self.cd, self.app, self.bucket, self.fleet, self.work = cd, app, bucket, fleet, work

    def deploy(self, capsys, group: str, version: str, *extra: str, appspec: Path | None = None,
               **overrides) -> tuple[int, str, str, float]:
        """``build.py deploy`` of the example app at ``version`` (appspec: the project's, or e.g. appspec-lb.yml)."""
        z = rollout.make_zip(self.work, self.fleet.config(APP, version, **overrides), f"{version}.zip", appspec)
        t0 = time.monotonic()
        rc = build_main(["deploy", str(z), "--bucket", self.bucket, "--application", self.app, "--group", group,
                         "--poll", "0.3", "--timeout", "600", *extra])
        seconds = time.monotonic() - t0
        out, err = capsys.readouterr()
        with capsys.disabled():                # the live report, shown with -s
            sys.stdout.write(out)
        return rc, out, err, seconds

    def deployment_ids(self, out: str) -> list[str]:
        """The ids of the deployments deploy created (its "deployment d-…: app -> group" lines)."""
        return [ln.split()[1].rstrip(":") for ln in out.splitlines() if ln.startswith("deployment d-") and " -> " in ln]

    def lb_dir(self) -> Path:
        return self.fleet.root / "lb"

    def sockets(self) -> dict[str, Path]:
        return {h.instance_id: h.sock for h in self.fleet.hosts}


def _load(world: World) -> Load:
    return Load(world.fleet.balancer.url, threads=3, header="X-Fleet-Host")


def _one_at_a_time(world: World, did: str, ids: list[str]) -> None:
    """Instance by instance in file order: API spans, and the balancer's deregister/register sequence."""
    sp = rollout.spans(world.cd, did)
    assert [s.instance for s in sp] == ids and all(s.status == "Succeeded" for s in sp), sp
    assert rollout.batches(sp) == [[i] for i in ids], sp
    assert all(sp[k + 1].start >= sp[k].end for k in range(len(sp) - 1)), sp
    changes = [(a, i) for _, _, a, i in rollout.lb_changes(world.lb_dir(), did)]
    assert changes == [(a, i) for i in ids for a in ("deregister", "register")], changes
    assert set(rollout.requests_while_out(world.lb_dir(), world.sockets(), did).values()) == {0}


def test_one_at_a_time_three_deployments_on_three_hosts(world, capsys):
    """fleet3 (OneAtATime, traffic control): v1 on empty hosts, then v2 and v3 under load through the balancer:
    0 failed requests, every host ends on v3, one instance at a time (event times, balancer log)."""
    ids = ["i-host1", "i-host2", "i-host3"]
    rc, out, _err, t1 = world.deploy(capsys, "fleet3", "v1", appspec=rollout.LB_APPSPEC)
    assert rc == 0 and world.fleet.versions() == {"host1": "v1", "host2": "v1", "host3": "v1",
                                                    "host4": "HTTP 500"}, out
    times = [t1]
    with _load(world) as load:
        for v in ("v2", "v3"):
            rc, out, _err, t = world.deploy(capsys, "fleet3", v, appspec=rollout.LB_APPSPEC)
            assert rc == 0, out
            times.append(t)
            [did] = world.deployment_ids(out)
            _one_at_a_time(world, did, ids)
            # the live report: every instance, event by event, and the overview counts
            assert all(f"  {i}: Succeeded" in out and f"  {i} ValidateService: Succeeded" in out for i in ids), out
            # the traffic hooks (appspec-lb.yml) ran on every host and did nothing, as they should
            assert all(f"  {i} {e}: Succeeded" in out for i in ids for e in (
                "BlockTraffic", "BeforeBlockTraffic", "AfterBlockTraffic", "BeforeAllowTraffic", "AfterAllowTraffic",
                "AllowTraffic")), out
            assert f"{did}: Succeeded (CodeDeployDefault.OneAtATime) - Pending 0, InProgress 0, Succeeded 3, " \
                   f"Failed 0, Skipped 0" in out, out
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v1", "v2", "v3"], r.summary()
    assert {s.header for s in r.samples} == {"host1", "host2", "host3"}
    assert world.fleet.versions() == {"host1": "v3", "host2": "v3", "host3": "v3", "host4": "HTTP 500"}
    figure(capsys, f"fleet3 OneAtATime with traffic control: deployments {', '.join(f'{t:.1f}s' for t in times)}; "
          f"{r.summary()}")


def test_validate_fails_on_the_first_host_and_codedeploy_rolls_back_everywhere(world, capsys):
    """A revision whose ValidateService fails (fleet3, OneAtATime, --auto-rollback): host1 fails and switches back
    to v3 by itself; host2 and host3 are Skipped (no hook ran there); CodeDeploy redeploys v3 on all three and
    deploy follows that rollback to its end. 0 failed requests through the balancer throughout."""
    with _load(world) as load:
        rc, out, err, t = world.deploy(capsys, "fleet3", "v4", "--auto-rollback", appspec=rollout.LB_APPSPEC,
                                       nginx={"validate_path": "/missing"})
    assert rc == 1, out + err
    failed, = world.deployment_ids(out)
    info = world.cd.get_deployment(deploymentId=failed)["deploymentInfo"]
    rb = info["rollbackInfo"]["rollbackDeploymentId"]
    assert info["errorInformation"]["code"] == "HEALTH_CONSTRAINTS"
    assert "  i-host1: Failed in ValidateService" in out and "  i-host3: Skipped" in out, out
    assert "instances: i-host1 Failed (ValidateService), i-host2 Skipped, i-host3 Skipped" in out, out
    assert f"{failed}: Failed (CodeDeployDefault.OneAtATime) - Pending 0, InProgress 0, Succeeded 0, Failed 1, " \
           f"Skipped 2" in out, out
    assert f"automatic rollback: CodeDeploy redeploys the last successful revision as {rb}" in out, out
    assert f"rollback {rb} Succeeded: every instance is back on the last good revision" in out, out
    last = err.splitlines()[-1]
    assert last.startswith(f"ERROR deployment {failed} Failed in ValidateService on i-host1: validation through "
                           f"nginx failed") and last.endswith(f"rolled back automatically by {rb} (Succeeded)"), err
    for h in world.fleet.hosts[1:3]:          # untouched by the failed deployment: no hook of it ran there
        assert failed not in {e["deployment"] for e in _state(h)["events"]}, h.name
    rbi = world.cd.get_deployment(deploymentId=rb)["deploymentInfo"]
    assert rbi["creator"] == "codeDeployRollback" and "/v3-" in rbi["revision"]["s3Location"]["key"], rbi
    _one_at_a_time(world, rb, ["i-host1", "i-host2", "i-host3"])
    r = load.result
    assert r.failed == 0, r.summary()
    assert "v4" not in r.versions_seen, r.summary()     # host1 was out of the balancer while it ran v4
    assert {h: world.fleet.versions()[h] for h in ("host1", "host2", "host3")} == dict.fromkeys(
        ("host1", "host2", "host3"), "v3")
    assert all(_state(h)["live_deployment"] == rb for h in world.fleet.hosts[:3])
    figure(capsys, f"failed on host1 + automatic rollback on 3 hosts: {t:.1f}s until the rollback ended; "
          f"{r.summary()}")


def test_half_at_a_time_on_four_hosts(world, capsys):
    """fleet4 (HalfAtATime): two batches of two; host4, new, joins the balancer at its AllowTraffic."""
    assert world.fleet.balancer.serving() == ["i-host1", "i-host2", "i-host3"]
    with _load(world) as load:
        rc, out, _err, t = world.deploy(capsys, "fleet4", "v5")
    assert rc == 0, out
    [did] = world.deployment_ids(out)
    sp = rollout.spans(world.cd, did)
    assert rollout.batches(sp) == [["i-host1", "i-host2"], ["i-host3", "i-host4"]], sp
    r = load.result
    assert r.failed == 0, r.summary()
    assert world.fleet.versions() == {f"host{i}": "v5" for i in range(1, 5)}
    assert world.fleet.balancer.serving() == ["i-host1", "i-host2", "i-host3", "i-host4"]
    assert "Succeeded 4, Failed 0, Skipped 0" in out
    assert set(rollout.requests_while_out(world.lb_dir(), world.sockets(), did).values()) == {0}
    figure(capsys, f"fleet4 HalfAtATime with traffic control: {t:.1f}s; batches {rollout.batches(sp)}; {r.summary()}")


def test_with_and_without_the_balancers_traffic_control(world, capsys):
    """HalfAtATime on 4 hosts, plain4 (no traffic control: hosts stay in the balancer while deployed) vs fleet4
    (BlockTraffic/AllowTraffic): both 0 failed; the difference is the deregister/register time."""
    times, results = {}, {}
    for group, version in (("plain4", "v6"), ("fleet4", "v7")):
        with _load(world) as load:
            rc, out, _err, t = world.deploy(capsys, group, version)
        assert rc == 0, out
        [did] = world.deployment_ids(out)
        times[group], results[group] = t, load.result
        assert load.result.failed == 0, load.result.summary()
        assert world.fleet.versions() == {f"host{i}": version for i in range(1, 5)}
        changes = rollout.lb_changes(world.lb_dir(), did)
        assert len(changes) == (8 if group == "fleet4" else 0), changes
    spent = sum(e - s for s, e, _a, _i in rollout.lb_changes(world.lb_dir(), did))
    figure(capsys, f"HalfAtATime on 4 hosts: without traffic control {times['plain4']:.1f}s "
          f"({results['plain4'].summary()}); with it {times['fleet4']:.1f}s ({results['fleet4'].summary()}); "
          f"difference {times['fleet4'] - times['plain4']:+.1f}s, {spent:.1f}s of it in deregister/register")


def test_status_says_which_instance_it_is(world):
    """status, run on host2 (its network, hostname and files), names host2 and its CodeDeploy instance id."""
    h = world.fleet.hosts[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    env.update(PYTHONPATH=str(ROOT), DOCKER_HOST=h.docker_host, BLUEGREEN_STATE_DIR=str(h.state_dir))
    proc = subprocess.run([*h.prefix(), sys.executable, "-m", "bluegreen_hooks", "status"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "instance     host2, instance i-host2 (CodeDeploy group fleet4, last event" in proc.stdout, proc.stdout
    assert "OK: state, nginx include and containers agree" in proc.stdout, proc.stdout


def figure(capsys, text: str) -> None:
    """A measured figure (docs/fleet.md): printed past pytest's capture."""
    with capsys.disabled():
        print(f"\nFIGURE {text}", flush=True)


def _state(host) -> dict:
    return json.loads((host.state_dir / f"{APP}.json").read_text())
