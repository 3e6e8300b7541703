"""The zero-downtime lifecycle against real Docker + nginx, under continuous load."""
from __future__ import annotations

import threading

import pytest

from bluegreen_hooks.host import procfs
from testbed.bundle import deploy, run_hook
from testbed.load import Load
from tests.helpers import get, ok, wait_for


def test_three_deploys_alternate_colours_with_zero_failed_requests(bed):
    """No state -> blue; then green; then blue. 0 failed requests; old colour gone after ValidateService."""
    ok(deploy(bed.bundle("v1"), "d-first"))
    st = bed.state()
    assert (st["live"], st["live_deployment"]) == ("blue", "d-first")
    assert get(bed.url + "/")[1].strip() == "v1"
    with Load(bed.url + "/", threads=4) as load:
        ok(deploy(bed.bundle("v2"), "d-second"))
        assert bed.state()["live"] == "green"
        assert bed.running_colours() == ["green"]
        ok(deploy(bed.bundle("v3"), "d-third"))
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v1", "v2", "v3"], r.summary()
    st = bed.state()
    assert (st["live"], st["previous"]) == ("blue", "green")
    assert bed.running_colours() == ["blue"]
    assert [d["outcome"] for d in st["deployments"]] == ["succeeded"] * 3
    assert "colour=blue" in bed.include()


def _live(st):
    return {k: st[k] for k in ("live", "live_deployment", "live_image", "previous")}


def test_slow_starting_app_gets_no_traffic_before_it_is_ready(bed):
    """A new version that needs 13 s to start: traffic stays on the old colour until it is healthy; 0 failed."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    slow = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "13"}})
    with Load(bed.url + "/", threads=4) as load:
        runs = ok(deploy(slow, "d-slow"))
    assert load.result.failed == 0, load.result.summary()
    assert load.result.versions_in_order == ["v1", "v2"]
    start = next(r for r in runs if r.event == "ApplicationStart")
    assert start.seconds >= 13
    assert "waiting for green to get healthy" in start.output   # a progress line every few seconds
    assert bed.state()["live"] == "green"


@pytest.mark.parametrize("env, cause", [
    ({"UNHEALTHY": "1"}, "not healthy after"),
    ({"EXIT_CODE": "3"}, "before it got healthy"),
])
def test_broken_version_never_gets_traffic(bed, env, cause):
    """Never healthy / exits at once: old colour keeps serving, 0 failed, exit non-zero, state unchanged."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before = _live(bed.state())
    bad = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", **env}}, health={"deadline": 6})
    with Load(bed.url + "/", threads=4) as load:
        runs = deploy(bad, "d-bad")
    assert load.result.failed == 0, load.result.summary()
    assert load.result.versions_seen == {"v1"}
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert last.last_line.startswith("ERROR ApplicationStart: green") and cause in last.last_line, last.output
    assert "blue keeps serving" in last.last_line and len(last.last_line) < 300
    assert "example app v2" in last.output   # the failed container's log tail comes just before
    assert [c.labels["bluegreen.colour"] for c in bed.containers()] == ["blue"]
    st = bed.state()
    assert _live(st) == before and st["in_progress"] is None
    assert st["deployments"][-1]["outcome"] == "failed"
    assert "colour=blue" in bed.include()


def test_failed_nginx_config_test_restores_the_include_and_does_not_reload(bed):
    """The new include fails `nginx -t` (an upstream block inside a server): include restored, no reload."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before_text = bed.include()
    workers = bed.nginx.worker_pids()
    bad = bed.bundle("v2", nginx={"form": "upstream"})
    refused = deploy(bad, "d-refused", events=("BeforeInstall",))[-1]   # nginx -T shows it cannot work
    assert refused.returncode == 1 and "nginx config refused, nothing changed" in refused.last_line, refused.output
    # the switch's own nginx -t guard: BeforeInstall from a bundle that passes it, then the bad bundle's start
    ok(deploy(bed.bundle("v2"), "d-badconf", events=("BeforeInstall",)))
    with Load(bed.url + "/", threads=2) as load:
        runs = deploy(bad, "d-badconf", events=("ApplicationStart",))
    assert load.result.failed == 0 and load.result.versions_seen == {"v1"}, load.result.summary()
    last = runs[-1]
    assert last.event == "ApplicationStart" and last.returncode == 1
    assert "nginx config test failed" in last.last_line and "not reloaded" in last.last_line, last.output
    assert bed.include() == before_text
    assert bed.nginx.worker_pids() == workers      # same workers: nginx was never reloaded
    assert [c.labels["bluegreen.colour"] for c in bed.containers()] == ["blue"]


def test_validate_service_failure_switches_back_to_the_old_colour(bed):
    """ValidateService fails through nginx: traffic goes back to the old colour (still running); 0 failed."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    bad = bed.bundle("v2", nginx={"validate_path": "/missing"})
    with Load(bed.url + "/", threads=4) as load:
        runs = deploy(bad, "d-invalid")
    assert load.result.failed == 0, load.result.summary()
    last = runs[-1]
    assert (last.event, last.returncode) == ("ValidateService", 1), last.output
    assert last.last_line.startswith("ERROR ValidateService: validation through nginx failed")
    assert "traffic is back on blue" in last.last_line
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["in_progress"]) == ("blue", "d-good", None)
    assert "colour=blue" in bed.include() and get(bed.url + "/")[1].strip() == "v1"
    assert [c.labels["bluegreen.colour"] for c in bed.containers()] == ["blue"]


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_lost_state_is_reconciled_from_nginx_and_containers(bed, damage):
    """State file deleted or garbage between deploys: the next deploy finds green live and targets blue."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    ok(deploy(bed.bundle("v2"), "d-2"))
    path = bed.state_dir / f"{bed.app}.json"
    if damage == "delete":
        path.unlink()
    else:
        path.write_text("{not json")
    with Load(bed.url + "/", threads=2) as load:
        runs = ok(deploy(bed.bundle("v3"), "d-3"))
    assert load.result.failed == 0, load.result.summary()
    before = next(r for r in runs if r.event == "BeforeInstall").output
    assert "reconciled" in before and "target colour: blue" in before
    st = bed.state()
    assert (st["live"], st["previous"]) == ("blue", "green")
    if damage == "garbage":
        kept = list(path.parent.glob(path.name + ".corrupt-*"))     # quarantined with a timestamp
        assert [k.read_text() for k in kept] == ["{not json"]


def test_application_start_rerun_is_idempotent(bed):
    """Running ApplicationStart (and the whole lifecycle) again for the same deployment changes nothing."""
    b = bed.bundle("v1")
    ok(deploy(b, "d-1"))
    b2 = bed.bundle("v2")
    ok(deploy(b2, "d-2", events=("BeforeInstall", "ApplicationStart")))
    ids = sorted(c.id for c in bed.containers())
    rerun = run_hook(b2, "ApplicationStart", "d-2", python=__import__("sys").executable)
    assert rerun.returncode == 0 and "nothing to do" in rerun.output, rerun.output
    assert sorted(c.id for c in bed.containers()) == ids
    ok(deploy(b2, "d-2", events=("ValidateService",)))
    again = ok(deploy(b2, "d-2"))
    assert all("nothing to do" in r.output for r in again if r.event != "ApplicationStop")
    st = bed.state()
    assert (st["live"], st["live_deployment"]) == ("green", "d-2")
    assert bed.running_colours() == ["green"]


def test_second_deployment_is_refused_while_one_is_in_progress(bed, tmp_path):
    """While d-slow waits for its app, another deployment's BeforeInstall is refused, naming d-slow."""
    import subprocess
    import sys

    from testbed.bundle import hook_env

    ok(deploy(bed.bundle("v1"), "d-1"))
    slow = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "20"}})
    ok(deploy(slow, "d-slow", events=("BeforeInstall",)))
    env = hook_env("d-slow")
    env["PATH"] = str(__import__("pathlib").Path(sys.executable).parent) + ":" + env["PATH"]
    proc = subprocess.Popen([str(slow / "hooks" / "ApplicationStart")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: (bed.state().get("in_progress") or {}).get("event") == "ApplicationStart",
                 what="d-slow's ApplicationStart to claim the app")
        other = run_hook(bed.bundle("v3"), "BeforeInstall", "d-other", python=sys.executable)
        assert other.returncode == 3, other.output
        assert "deployment d-slow is in progress" in other.last_line and "ApplicationStart running" in other.last_line
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "SIGTERM" in out.splitlines()[-1], out
    st = bed.state()
    assert (st["live"], st["in_progress"]) == ("blue", None)
    # SIGTERM may come while v2's image builds: the daemon ends that build (and removes its intermediate
    # container, labelled with the app only) on its own, right after
    wait_for(lambda: [c.labels.get("bluegreen.colour", "a build step") for c in bed.containers()] == ["blue"],
             timeout=60, what="only blue's container left")


def test_requests_in_flight_at_the_switch_complete(bed):
    """5 s requests started before the switch finish with the old version: the old colour is drained first."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    results = []

    def slow_request():
        results.append(get(bed.url + "/cgi-bin/slow?5", timeout=30))

    b2 = bed.bundle("v2")
    ok(deploy(b2, "d-2", events=("BeforeInstall",)))
    threads = [threading.Thread(target=slow_request) for _ in range(5)]
    for t in threads:
        t.start()
    wait_for(lambda: procfs.connections_to(bed.ports[0]) >= 5, what="the 5 slow requests open on blue")
    runs = ok(deploy(b2, "d-2", events=("ApplicationStart", "ValidateService")))
    for t in threads:
        t.join(30)
    assert [(s, body.strip()) for s, body, _ in results] == [(200, "v1")] * 5
    validate = runs[-1].output
    assert "old nginx workers finished their requests" in validate, validate


@pytest.mark.parametrize("check, succeeds", [
    ("wget -q -O /dev/null http://127.0.0.1:$PORT/health", True),
    ("false", False),
])
def test_docker_healthcheck_is_honoured(bed, check, succeeds):
    """An image with a HEALTHCHECK switches only once Docker says healthy; never, if it stays unhealthy."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    b = bed.bundle("v2", health={"deadline": 8})
    dockerfile = b / "app" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + f"HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD {check}\n")
    with Load(bed.url + "/", threads=2) as load:
        runs = deploy(b, "d-2")
    assert load.result.failed == 0, load.result.summary()
    start = next(r for r in runs if r.event == "ApplicationStart")
    if succeeds:
        assert all(r.returncode == 0 for r in runs), start.output
        assert bed.state()["live"] == "green" and get(bed.url + "/")[1].strip() == "v2"
    else:
        assert start.returncode == 1
        assert "Docker HEALTHCHECK of" in start.last_line and "says unhealthy" in start.last_line, start.output
        assert bed.state()["live"] == "blue" and get(bed.url + "/")[1].strip() == "v1"
