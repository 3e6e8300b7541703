"""deploy/watch_seconds (lifecycle/watch.py) on real Docker + nginx under load, with no [canary], in both include
forms: a version whose `/` hangs, one that drops connections, and one whose containers are killed 1 s after the
switch are switched back by the watch window; a healthy one still succeeds with 0 failed."""
from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid

import pytest

from bluegreen_hooks.cli import main
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.load import Load
from tests.helpers import get, ok, wait_for
from tests.test_canary import _start_hook, form_bed, logging_nginx  # noqa: F401
from tests.test_notify import Receiver

WATCH = {"watch_seconds": 15}
# a bad v2 (example/app: /health stays fine, so it gets healthy and the switch happens)
BAD = {"hang": {"HANG_ROOT": "1"}, "drop": {"DROP_ROOT": "1"}, "fail": {"FAIL_PERCENT": "20"}}
KINDS = {"hang": ("gave_up",), "drop": ("reset", "refused"), "fail": ("5xx",)}


@pytest.fixture(params=["set", "upstream"])
def form(request):
    return request.param


@pytest.fixture
def wbed(logging_nginx, docker_client, app_name, tmp_path, form):  # noqa: F811
    """A Bed on the logging nginx in the include form ``form``."""
    with form_bed(logging_nginx, docker_client, app_name, tmp_path, form, "w") as bed:
        yield bed


def bundle(bed, version, bad=None, **overrides):
    """A bundle with the watch on; ``bad``: one of BAD, what v2's `/` does instead of answering its version."""
    nginx = {"form": bed.form, **overrides.pop("nginx", {})}
    deploy_table = {"state_dir": str(bed.state_dir), "drain_timeout": 30, **WATCH, **overrides.pop("deploy", {})}
    if bad is not None:
        overrides["container"] = {"env": {"HOST": "127.0.0.1", **BAD[bad]}}
    return make_bundle(bed.tmp / f"bundle-{version}-{uuid.uuid4().hex[:6]}",
                       bed_config(bed.app, bed.nginx, bed.site, bed.ports, bed.state_dir, version, nginx=nginx,
                                  deploy=deploy_table, **overrides))


def after(load, t_end, n=200):
    """The load's samples after ``t_end`` (load time), once there are ``n`` of them."""
    wait_for(lambda: len([s for s in load.result.samples if s.t > t_end]) > n, what="load after the deployment")
    return [s for s in load.result.samples if s.t > t_end]


def switched_back(bed, runs, *kinds):
    last = runs[-1]
    # the watch window's judgement; or, in the upstream form, nginx left the failing new colour out and its
    # backup (blue) answered the switch's verification (ApplicationStart) or the validation's probe: both
    # end with the window's figures so far
    assert (last.event, last.returncode) in (("ValidateService", 1), ("ApplicationStart", 1)), last.output
    assert last.last_line.startswith(("ERROR ValidateService: the watch window failed (",
                                      "ERROR ValidateService: validation through nginx failed (",
                                      "ERROR ApplicationStart: nginx")), last.last_line
    assert "green " in last.last_line and "failed" in last.last_line, last.last_line
    assert last.last_line.endswith(("traffic is back on blue", "blue keeps serving")), last.last_line
    assert any(k in last.last_line for k in kinds), last.last_line      # the failure kind
    st = bed.state()
    assert (st["live"], st["in_progress"]) == ("blue", None)
    dep = st["deployments"][-1]
    assert dep["outcome"] == "failed" and dep["receipt"]["verdict"] == "switched back", dep
    assert any(dep["receipt"]["new"]["failures"].get(k) for k in kinds) or "refuses" in dep["receipt"]["reason"]
    wait_for(lambda: bed.running_colours() == ["blue"], what="green removed")
    assert "colour=blue" in bed.include() and "watch=" not in bed.include()
    return last


@pytest.mark.parametrize("kind", ["hang", "drop", "fail"])
def test_watch_switches_back_from_a_version_that_hangs_drops_or_fails(wbed, form, kind):
    """No [canary]: v2's `/` hangs (clients give up: 499), drops its connections (502 / reset; the upstream
    form's backup absorbs them) or answers 500 on 20 %: the watch window switches back to blue, the deployment
    fails with the figures in its last line (and in its notification), and afterwards blue serves with 0 failed."""
    r = Receiver()
    extra = {"notify": {"webhook": r.url}}
    try:
        ok(deploy(bundle(wbed, "v1", **extra), "d-one"))
        with Load(wbed.url + "/", threads=4, timeout=2) as load:
            runs = deploy(bundle(wbed, "v2", kind, **extra), "d-bad")
            t_end = time.monotonic() - load._t0
            later = after(load, t_end)
    finally:
        r.close()
    last = switched_back(wbed, runs, *KINDS[kind])
    doc = r.posts[-1]["body"]
    assert doc["kind"] == "deployment_failed" and doc["last_line"] == last.last_line, doc
    assert doc["receipt"]["verdict"] == "switched back", doc["receipt"]
    assert not [s for s in later if not s.ok], [s.cause for s in later if not s.ok]
    assert {s.header for s in later} == {"blue"}
    print(f"\n{kind} ({form}): {load.result.summary()}; last line: {last.last_line}")


def test_watch_switches_back_from_a_version_five_times_slower(wbed, form):
    """No [canary]: v1 answers / in 200 ms, v2 in 1 s (200 OK, no error at all). While green starts, nginx logs
    what clients get from blue (ApplicationStart's baseline form); at the switch blue's p95 before it is
    recorded, and at the window's end the watch compares green's p95 after its 3 s warm-up with it (the
    canary's rule: 2x and 100 ms): switched back,
    the figures in the last line and the receipt, 0 failed requests, blue serves afterwards. (Long sleeps:
    see test_canary's latency test.)"""
    ok(deploy(bundle(wbed, "v1", container={"env": {"HOST": "127.0.0.1", "SLOW_MS": "200"}}), "d-one"))
    # green listens 3 s after it starts: blue's requests logged meanwhile are its baseline (the switch never waits
    # for one; a colour healthy within a second on a quiet site gets its latency unjudged, and says so)
    slow = bundle(wbed, "v2", container={"env": {"HOST": "127.0.0.1", "SLOW_MS": "1000", "START_DELAY": "3"}})
    with Load(wbed.url + "/", threads=6) as load:
        runs = deploy(slow, "d-slow")
        t_end = time.monotonic() - load._t0
        later = after(load, t_end, n=60)
    r, last = load.result, runs[-1]
    assert r.failed == 0, (r.summary(), [(round(s.t, 2), s.cause, s.header) for s in r.samples if not s.ok][:10],
                           last.output)
    assert re.search(r"watch: latency baseline of blue: \d+ clients' requests in the \S+s before the switch, "
                     r"p95 0\.[2-9]", runs[-2].output), runs[-2].output          # ApplicationStart's line
    assert (last.event, last.returncode) == ("ValidateService", 1), last.output
    assert re.search(r"^ERROR ValidateService: the watch window failed \((green )?p95 \S+s vs old \S+s before "
                     r"the switch \(more than 2x and 100 ms above\)", last.last_line), last.output
    assert last.last_line.endswith("traffic is back on blue"), last.last_line
    st = wbed.state()
    assert (st["live"], st["in_progress"]) == ("blue", None)
    receipt = st["deployments"][-1]["receipt"]
    assert receipt["verdict"] == "switched back" and receipt["new"]["failed"] == 0, receipt
    assert receipt["baseline"]["colour"] == "blue" and receipt["baseline"]["samples"] >= 20, receipt
    assert receipt["new"]["p95"] > 2 * receipt["baseline"]["p95"], receipt
    assert {s.header for s in later} == {"blue"} and {s.version for s in later} == {"v1"}
    wait_for(lambda: wbed.running_colours() == ["blue"], what="green removed")
    assert "colour=blue" in wbed.include() and "watch=" not in wbed.include() and "baseline" not in wbed.include()
    print(f"\nslow ({form}): {r.summary()}; baseline {receipt['baseline']}; last line: {last.last_line}")


def test_a_start_that_fails_before_the_switch_puts_the_plain_include_back(wbed, form):
    """The baseline form is ApplicationStart's (it logs blue's latency while green starts): a green that never
    gets healthy (START_DELAY: its port refuses past health/deadline) fails the event, and the include is the
    plain one of blue again (no baseline log left growing), blue serving."""
    ok(deploy(bundle(wbed, "v1"), "d-one"))
    never = bundle(wbed, "v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "600"}},
                   health={"deadline": 3})
    runs = deploy(never, "d-never")
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert "watch: nginx logs what clients get from blue until the switch" in last.output, last.output
    assert "colour=blue" in wbed.include() and "baseline" not in wbed.include() and "access_log" not in wbed.include()
    assert not (wbed.state_dir / f"{wbed.app}.clients.log").exists()
    assert get(wbed.url + "/")[1].strip() == "v1"


def test_a_killed_start_leaves_the_baseline_form_which_the_next_beforeinstall_ends(wbed, form):
    """ApplicationStart SIGKILLed while green starts (the include in baseline form, its log growing): the next
    deployment's BeforeInstall puts the plain include of blue back and removes the log; blue served throughout."""
    ok(deploy(bundle(wbed, "v1"), "d-one"))
    b = bundle(wbed, "v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "600"}})
    log = wbed.state_dir / f"{wbed.app}.clients.log"
    with Load(wbed.url + "/", threads=2) as load:
        ok(deploy(b, "d-killed", events=("ApplicationStop", "BeforeInstall")))
        proc = _start_hook(b, "ApplicationStart", "d-killed")
        try:
            for line in proc.stdout:   # ends at the latest when the hook ends (health/deadline)
                if "watch: nginx logs what clients get from blue" in line:
                    break
            wait_for(lambda: log.exists() and log.stat().st_size > 0, what="blue's requests in the baseline log")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        assert "baseline=on" in wbed.include() and "colour=blue" in wbed.include()
        runs = ok(deploy(bundle(wbed, "v3"), "d-next", events=("ApplicationStop", "BeforeInstall")))
    assert "an interrupted ApplicationStart left the watch's baseline form: plain include of blue again" \
        in runs[-1].output, runs[-1].output
    assert "baseline" not in wbed.include() and "colour=blue" in wbed.include() and "access_log" not in wbed.include()
    assert not log.exists()
    assert load.result.failed == 0 and load.result.versions_seen == {"v1"}, load.result.summary()


def test_kill_9_of_the_new_colour_one_second_after_the_switch(wbed, form, docker_client):
    """GET load; v2's containers get SIGKILL 1 s after nginx switched to it: the watch switches back, and the
    absorbing switch (both forms: the old colour is the backup server) leaves at most 0.1 % of the GETs failed."""
    ok(deploy(bundle(wbed, "v1"), "d-one"))
    import threading

    killed = []

    def killer():
        wait_for(lambda: "colour=green" in wbed.include(), timeout=120, interval=0.01, what="the switch to green")
        t_switch = time.monotonic()
        time.sleep(1.0)    # the scenario: 1 s after the switch, not a wait for a condition
        killed.append([c.name for c in wbed.containers("green") if c.status == "running"])
        for c in wbed.containers("green"):
            c.kill()
        killed.append(time.monotonic() - t_switch)

    with Load(wbed.url + "/", threads=4, timeout=5) as load:
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        runs = deploy(bundle(wbed, "v2"), "d-kill")
        t.join(10)
        t_end = time.monotonic() - load._t0
        later = after(load, t_end)
    assert len(killed) == 2 and killed[0], f"the kill did not happen: {killed}; {runs[-1].output}"
    last = switched_back(wbed, runs, "refused", "refuses connections", "reset")
    r = load.result
    failed = r.total - r.ok
    share = 100 * failed / r.total
    print(f"\nkill -9 ({form}): {failed} failed of {r.total} GETs ({share:.3f} %), {r.failures}; "
          f"last line: {last.last_line}")
    assert share <= 0.1, r.summary()
    assert not [s for s in later if not s.ok]


def test_a_healthy_version_with_the_watch_on_succeeds_with_zero_failed(wbed, form, capsys, tmp_path):
    """The watch adds its window to ValidateService, nothing else: 0 failed, the receipt says ok, the old colour
    is stopped after the window, and the include is the plain form again. The receipt is shown by status,
    history --deployments, their --json, the metrics file and the notification."""
    r = Receiver()
    extra = {"notify": {"webhook": r.url}, "deploy": {"metrics_dir": str(tmp_path / "prom")}}
    try:
        ok(deploy(bundle(wbed, "v1", **extra), "d-one"))
        with Load(wbed.url + "/", threads=4) as load:
            runs = ok(deploy(bundle(wbed, "v2", **extra), "d-two"))
    finally:
        r.close()
    doc = r.posts[-1]["body"]
    assert doc["kind"] == "deployment_succeeded" and doc["receipt"]["verdict"] == "ok", doc
    assert doc["receipt"]["new"]["colour"] == "green" and doc["receipt"]["new"]["requests"] > 50, doc["receipt"]
    prom = (tmp_path / "prom" / f"{wbed.app}.prom").read_text()
    assert f'bluegreen_last_window_ok{{app="{wbed.app}"}} 1.0' in prom, prom
    assert f'bluegreen_last_window_requests{{app="{wbed.app}",colour="green",role="new"}}' in prom, prom
    capsys.readouterr()
    main(["status", "--state-dir", str(wbed.state_dir), "--json"])
    status = json.loads(capsys.readouterr().out)
    assert status["receipt"]["deployment"] == "d-two" and status["receipt"]["verdict"] == "ok", status["receipt"]
    main(["status", "--state-dir", str(wbed.state_dir)])
    text = capsys.readouterr().out
    assert "receipt      d-two:  watch ok after " in text and "green " in text, text
    main(["history", "--deployments", "--state-dir", str(wbed.state_dir)])
    hist = capsys.readouterr().out
    assert "watch ok after" in hist and " 0 failed" in hist, hist
    main(["history", "--deployments", "--json", "--state-dir", str(wbed.state_dir)])
    assert json.loads(capsys.readouterr().out)["deployments"][-1]["receipt"]["verdict"] == "ok"
    r = load.result
    assert r.failed == 0, r.summary()
    validate = runs[-1]
    st = wbed.state()
    dep = st["deployments"][-1]
    assert dep["receipt"]["seconds"] >= WATCH["watch_seconds"], dep["receipt"]   # watched from the switch on
    assert dep["outcome"] == "succeeded" and dep["receipt"]["verdict"] == "ok", dep
    assert dep["receipt"]["new"]["requests"] > 50 and dep["receipt"]["new"]["failed"] == 0, dep["receipt"]
    assert "watch=" not in wbed.include() and "colour=green" in wbed.include()
    wait_for(lambda: wbed.running_colours() == ["green"], what="blue stopped after the window")
    print(f"\nhealthy ({form}): {r.summary()}; ValidateService {validate.seconds:.1f}s; receipt {dep['receipt']}")


def test_sigterm_during_the_window_leaves_the_plain_include_of_the_new_colour(wbed, form):
    """The hook's timeout (SIGTERM) while ValidateService watches: the include is the plain form of the colour the
    state names live (no backup, no window log), the event fails, and nginx keeps answering from it."""
    ok(deploy(bundle(wbed, "v1"), "d-one"))
    b = bundle(wbed, "v2", deploy={"watch_seconds": 120})
    ok(deploy(b, "d-two", events=("ApplicationStop", "BeforeInstall", "ApplicationStart")))
    assert "watch=blue" in wbed.include()
    proc = _start_hook(b, "ValidateService", "d-two")
    try:
        seen = []
        for line in proc.stdout:    # ends when the hook ends (at the latest after its 120 s window)
            seen.append(line)
            if "watch window: 120s of live traffic" in line:
                break
        assert "watch window: 120s" in "".join(seen), "".join(seen)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        out = "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out
    assert "watch=" not in wbed.include() and "colour=green" in wbed.include() and "backup" not in wbed.include()
    assert wbed.state()["live"] == "green"
    assert get(wbed.url + "/")[1].strip() == "v2"


def test_watch_with_the_background_retire(wbed, form):
    """retire = "background" with the watch on: ValidateService ends after the window, the detached retire then
    stops the old colour after draining the nginx workers of the switch and of the window."""
    if form == "upstream":
        pytest.skip("the handing over is the same in both forms")
    ok(deploy(bundle(wbed, "v1", deploy={"retire": "background"}), "d-one"))
    with Load(wbed.url + "/", threads=2) as load:
        ok(deploy(bundle(wbed, "v2", deploy={"retire": "background"}), "d-two"))
        wait_for(lambda: wbed.state().get("retiring") is None, timeout=90, what="the background retire")
    assert load.result.failed == 0, load.result.summary()
    assert wbed.state()["deployments"][-1]["receipt"]["verdict"] == "ok"
    wait_for(lambda: wbed.running_colours() == ["green"], what="blue stopped in the background")


def test_after_a_canary_the_watch_window_follows_the_promote(wbed, form):
    """With a [canary] the watch starts when the canary has promoted (ValidateService switches into the watch form):
    a healthy v2 is promoted, watched and succeeds with 0 failed."""
    if form == "upstream":
        pytest.skip("the same path in both forms; the set form is the default")
    canary = {"steps": [50], "step_seconds": 2, "min_requests": 20, "max_wait": 20, "max_error_rate": 0.05}
    ok(deploy(bundle(wbed, "v1", canary=canary), "d-one"))
    with Load(wbed.url + "/", threads=4) as load:
        runs = ok(deploy(bundle(wbed, "v2", canary=canary), "d-two"))
    assert load.result.failed == 0, load.result.summary()
    assert "canary promoted" in runs[-2].output and "watch window: 15s" in runs[-1].output, runs[-1].output
    dep = wbed.state()["deployments"][-1]
    assert dep["canary"]["phase"] == "promoted" and dep["receipt"]["verdict"] == "ok", dep


def test_a_quiet_version_whose_root_hangs_is_caught_by_the_watch_probes(wbed, form):
    """No client load at all, no [canary]: v2's `/` hangs (/health is fine, so it gets healthy and the switch
    happens). Only the watch's own probes of nginx/validate_path `/` through the public URL see it: each gives up
    after probe_timeout (nginx logs 499), the window switches back, and blue serves afterwards."""
    ok(deploy(bundle(wbed, "v1", nginx={"validate_path": "/"}), "d-one"))
    runs = deploy(bundle(wbed, "v2", "hang", nginx={"validate_path": "/"}), "d-quiet")
    last = switched_back(wbed, runs, "gave_up")
    assert last.last_line.startswith("ERROR ValidateService: the watch window failed ("), last.last_line
    out = runs[-1].output
    assert "probes of / every 0.5s (timeout 5s)" in out and "fewer than 15 requests" in out, out
    dep = wbed.state()["deployments"][-1]
    assert dep["receipt"]["new"]["failures"]["gave_up"] >= 1, dep["receipt"]
    assert [get(wbed.url + "/")[1].strip() for _ in range(5)] == ["v1"] * 5
    print(f"\nquiet hang ({form}): {last.last_line}")


def test_a_quiet_healthy_version_passes_the_watch_on_its_probes(wbed, form):
    """No client load: the watch's probes alone (nginx/validate_path, every 0.5 s) meet min_requests (15 for a
    15 s window), none fails, and the deployment succeeds with green live."""
    ok(deploy(bundle(wbed, "v1"), "d-one"))
    runs = ok(deploy(bundle(wbed, "v2"), "d-two"))
    out = runs[-1].output
    assert "probes of /health every 0.5s" in out, out
    dep = wbed.state()["deployments"][-1]
    new = dep["receipt"]["new"]
    assert dep["outcome"] == "succeeded" and dep["receipt"]["verdict"] == "ok", dep
    assert new["requests"] >= 15 and new["failed"] == 0, new
    assert new["probes"] >= 15 and ", 0 failed: ok" in out, out
    wait_for(lambda: wbed.running_colours() == ["green"], what="blue stopped after the window")
    print(f"\nquiet healthy ({form}): receipt new {new}")
