"""deploy/retire = "background" (lifecycle/background.py) on real Docker and nginx, and under the real agent.

Every test keeps requests in flight on the old colour at the switch (the example app's /cgi-bin/hold: they
end when the test releases them, not after a fixed time a busy machine may spend on one hook): ValidateService
must end while they still run, they must all complete with the old version, and the old colour must be stopped
only after them, unless a deployment or a rollback takes over first.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest

from bluegreen_hooks.host import procfs
from testbed.bundle import deploy
from testbed.load import Load
from tests.helpers import HeldRequests, get, ok, wait_for

# the drain never times out before a test releases its requests (the example app's hold ends by itself at 120 s)
BACKGROUND = {"retire": "background", "drain_timeout": 150}


def _status(bed, colour):
    return sorted(c.status for c in bed.containers(colour))


def _first_two(bed):
    """v1 live on blue; v2 (background retire) through BeforeInstall, slow requests open on blue."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    b2 = bed.bundle("v2", deploy=BACKGROUND)
    ok(deploy(b2, "d-2", events=("BeforeInstall",)))
    return b2, HeldRequests(bed)


def test_validate_service_ends_while_requests_still_drain_and_the_old_colour_stops_after_them(bed):
    b2, slow = _first_two(bed)
    with Load(bed.url + "/", threads=2) as load:
        ok(deploy(b2, "d-2", events=("ApplicationStart",)))
        # ValidateService validates through nginx and hands over: it never imports the docker SDK
        runs = ok(deploy(b2, "d-2", events=("ValidateService",), extra_env={"PYTHONPROFILEIMPORTTIME": "1"}))
        imported = re.findall(r"^import time: .*\| +([\w.]+)$", runs[-1].output, re.M)
        assert "bluegreen_hooks.lifecycle.events" in imported and "docker" not in imported, runs[-1].output[-3000:]
        # the deployment is over while the old colour still answers its requests
        assert slow.running() > 0 and _status(bed, "blue") == ["running"]
        st = bed.state()
        assert st["retiring"]["colour"] == "blue" and st["deployments"][-1]["outcome"] == "succeeded", st
        assert "blue is retired in the background" in runs[-1].output, runs[-1].output
        assert slow.join() == [(200, "v1")] * 3
        wait_for(lambda: _status(bed, "blue") == ["exited"], what="blue stopped after its requests")
    assert load.result.failed == 0, load.result.summary()
    wait_for(lambda: "retiring" not in bed.state(), what="the retire record cleared")
    log = (bed.state_dir / f"{bed.app}.retire.log").read_text()
    assert "old nginx workers finished their requests" in log and "blue retired: green serves alone" in log, log
    assert "green is live: OOM score 500 -> 0" in log, log   # the retire process settled it, not ValidateService
    assert get(bed.url + "/")[1].strip() == "v2"
    wait_for(lambda: _retire_events(bed) == [("d-2", "succeeded", "blue")], timeout=10,   # an event of d-2
             what="the retire in the history")


def _retire_events(bed) -> list[tuple[str, str, str]]:
    return [(e["deployment"], e["outcome"], e["target"]) for e in bed.state()["events"] if e["event"] == "Retire"]


def test_the_next_deployment_cancels_a_draining_retire_and_still_drains_before_replacing(bed):
    b2, slow = _first_two(bed)
    ok(deploy(b2, "d-2", events=("ApplicationStart", "ValidateService")))
    pid = bed.state()["retiring"]["pid"]

    def release_once_cancelled():   # BeforeInstall ends the retire, then drains the held requests
        wait_for(lambda: not procfs.process_alive(pid, None), timeout=150, what="the retire cancelled")
        slow.release()

    releaser = threading.Thread(target=release_once_cancelled, daemon=True)
    with Load(bed.url + "/", threads=2) as load:
        releaser.start()
        runs = ok(deploy(bed.bundle("v3", deploy=BACKGROUND), "d-3", events=("BeforeInstall",)))
        assert "was draining: cancelled, blue keeps running" in runs[0].output, runs[0].output
        assert not procfs.process_alive(pid, None)
        assert slow.join() == [(200, "v1")] * 3   # BeforeInstall drained them before it removed blue
        ok(deploy(bed.bundle("v3", deploy=BACKGROUND), "d-3", events=("ApplicationStart", "ValidateService")))
    assert load.result.failed == 0, load.result.summary()
    assert get(bed.url + "/")[1].strip() == "v3"
    wait_for(lambda: "retiring" not in bed.state(), what="d-3's retire of green to finish")
    assert _status(bed, "green") == ["exited"]
    wait_for(lambda: _retire_events(bed) == [("d-2", "cancelled", "blue"), ("d-3", "succeeded", "green")],
             timeout=10, what="the two retires in the history")


def test_rollback_while_the_old_colour_drains_switches_back_to_it_at_once(bed):
    b2, slow = _first_two(bed)
    ok(deploy(b2, "d-2", events=("ApplicationStart", "ValidateService")))
    argv = [sys.executable, "-m", "bluegreen_hooks", "rollback", "--json", "--state-dir", str(bed.state_dir)]
    with Load(bed.url + "/", threads=2) as load:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["mode"] == "switch" and result["to"] == "blue", result   # never stopped: no restart
        assert "was draining: cancelled" in proc.stderr, proc.stderr
        assert slow.join() == [(200, "v1")] * 3
    assert load.result.failed == 0, load.result.summary()
    assert get(bed.url + "/")[1].strip() == "v1" and _status(bed, "blue") == ["running"]
    # the rollback hands green's drain and stop over in turn (deploy/retire = "background")
    wait_for(lambda: "retiring" not in bed.state() and _status(bed, "green") == ["exited"], what="green retired")


def test_status_shows_the_retire_while_it_runs(bed):
    b2, slow = _first_two(bed)
    ok(deploy(b2, "d-2", events=("ApplicationStart", "ValidateService")))
    argv = [sys.executable, "-m", "bluegreen_hooks", "status", "--json", "--state-dir", str(bed.state_dir)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    retiring = json.loads(proc.stdout)["retiring"]
    assert (retiring["colour"], retiring["phase"], retiring["running"]) == ("blue", "draining", True), retiring
    slow.join()
    wait_for(lambda: "retiring" not in bed.state(), what="the retire to finish")


@pytest.mark.agent
def test_the_real_agent_finishes_the_deployment_without_waiting_for_the_retire(bed):
    """The detached retire holds none of the agent's pipes: the agent reports success while requests drain."""
    run = bed.agent()
    settings = BACKGROUND
    assert run(bed.bundle("v1", deploy=settings)).returncode == 0
    slow = HeldRequests(bed, n=2)   # held until the agent has finished the whole deployment
    with Load(bed.url + "/", threads=2) as load:
        done = run(bed.bundle("v2", deploy=settings))
        assert done.returncode == 0, done.stdout
        assert slow.running() > 0, "the agent waited for the drain"
        assert slow.join() == [(200, "v1")] * 2
        wait_for(lambda: _status(bed, "blue") == ["exited"], what="blue stopped after its requests")
    assert load.result.failed == 0 and bed.state()["live"] == "green", load.result.summary()
    logs = "".join(p.read_text() for p in run.root.rglob("scripts.log"))
    assert "blue is retired in the background" in logs, logs[-3000:]


def test_a_retire_killed_outright_is_shown_as_gone_and_the_next_deployment_goes_on(bed):
    """kill -9 of the retire while it drains: nothing clears its record, so status says it no longer runs;
    the next BeforeInstall forgets it and replaces blue after draining, as it always does."""
    import signal

    b2, slow = _first_two(bed)
    ok(deploy(b2, "d-2", events=("ApplicationStart", "ValidateService")))
    pid = bed.state()["retiring"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not procfs.process_alive(pid, None), what="the retire gone")
    argv = [sys.executable, "-m", "bluegreen_hooks", "status", "--json", "--state-dir", str(bed.state_dir)]
    retiring = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout)["retiring"]
    assert (retiring["colour"], retiring["running"]) == ("blue", False), retiring
    assert _status(bed, "blue") == ["running"]   # killed before it stopped anything
    slow.release()
    with Load(bed.url + "/", threads=2) as load:
        ok(deploy(bed.bundle("v3"), "d-3"))
        assert slow.join() == [(200, "v1")] * 3
    assert load.result.failed == 0, load.result.summary()
    assert get(bed.url + "/")[1].strip() == "v3" and "retiring" not in bed.state()


def test_rollback_with_retire_background_hands_the_stop_over_too(bed):
    """deploy/retire = "background" also applies to rollback: it returns once the old release serves, and the
    colour rolled back from is stopped afterwards by the detached retire, after its in-flight requests."""
    ok(deploy(bed.bundle("v1", deploy=BACKGROUND), "d-1"))
    ok(deploy(bed.bundle("v2", deploy=BACKGROUND), "d-2"))
    wait_for(lambda: "retiring" not in bed.state() and _status(bed, "blue") == ["exited"], what="d-2's retire")
    slow = HeldRequests(bed, n=2, colour="green")   # green is live now: the colour rolled back from
    argv = [sys.executable, "-m", "bluegreen_hooks", "rollback", "--json", "--state-dir", str(bed.state_dir)]
    with Load(bed.url + "/", threads=2) as load:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert (result["to"], result["retiring"], result["stopped_other"]) == ("blue", True, False), result
        assert slow.running() == 2 and _status(bed, "green") == ["running"]
        assert slow.join() == [(200, "v2")] * 2
        wait_for(lambda: _status(bed, "green") == ["exited"], what="green stopped after its requests")
    assert load.result.failed == 0, load.result.summary()
    wait_for(lambda: "retiring" not in bed.state(), what="the retire record cleared")
    assert get(bed.url + "/")[1].strip() == "v1"


def test_a_retire_that_fails_is_recorded_as_a_failed_event_with_its_cause(tmp_path, monkeypatch):
    """No Docker for the detached process: it says why in its log (exit 1) and the history holds a failed
    "Retire" of its deployment with that cause."""
    import time

    from bluegreen_hooks.host.store import Store
    from bluegreen_hooks.lifecycle import background
    from bluegreen_hooks.model import Retiring
    from testbed.bundle import toml_dumps

    copy = tmp_path / "shop.toml"
    copy.write_text(toml_dumps({"app": "shop", "colours": {"blue": 18081, "green": 18082},
                                "container": {"image": "shop:1"}, "deploy": {"state_dir": str(tmp_path)}}))
    store = Store(tmp_path, "shop")
    with store.update() as st:
        st.live = "green"
        st.retiring = Retiring(colour="blue", live="green", deployment="d-7", since=time.time())
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert background.main([str(copy), "d-7"]) == 1
    [event] = [e for e in store.read().state.events if e["event"] == "Retire"]
    assert (event["deployment"], event["outcome"], event["target"]) == ("d-7", "failed", "blue")
    assert "Docker daemon unreachable" in event["cause"]
