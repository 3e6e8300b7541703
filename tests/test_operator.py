"""Operator commands (status, history, rollback, doctor) against real Docker + nginx, through cli.main()."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.cli import main
from bluegreen_hooks.decide import holder_status
from bluegreen_hooks.host import nginx as nginx_mod
from bluegreen_hooks.host import procfs
from bluegreen_hooks.host.store import Store, me
from bluegreen_hooks.model import InProgress, State, record_event
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port
from tests.helpers import get, ok, wait_for

EVENTS_TO_START = ("ApplicationStop", "BeforeInstall", "ApplicationStart")


def status_json(bed, capsys):
    capsys.readouterr()
    code = bed.cli("status", "--json")
    return code, json.loads(capsys.readouterr().out)


def include_agrees_with_state(bed):
    st = bed.state()
    m = f"colour={st['live']} deployment={st['live_deployment']}"
    return m in bed.include()


# --------------------------------------------------------------------------------------------- pure parts

def test_find_config_names_the_apps_when_several_share_a_state_dir(tmp_path, capsys):
    """Several apps in one state dir and no --app: one ERROR line listing them, exit 2."""
    for app in ("shop", "blog"):
        (tmp_path / f"{app}.json").write_text("{}")
    assert main(["status", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ERROR several apps in {tmp_path}: blog, shop; choose one with --app NAME"
    assert main(["history", "--state-dir", str(tmp_path), "--app", "wiki"]) == 2
    assert "no app 'wiki'" in capsys.readouterr().err


def test_status_with_no_app_deployed_says_so_in_one_line(tmp_path, capsys):
    """An empty state dir: exit 2 and one ERROR line that says what to pass instead."""
    assert main(["status", "--state-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR no app has been deployed") and "--config PATH" in err[0]


def test_every_command_has_help_with_exit_codes(capsys):
    """--help of each operator command documents its exit codes."""
    for cmd in ("status", "history", "rollback", "doctor"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "exit codes: 0" in capsys.readouterr().out


def test_building_the_parsers_imports_no_docker():
    """The parsers are built at every start of the CLI: importing them must not import docker or the commands."""
    code = "import sys, bluegreen_hooks.operator.commands; print(sorted(m for m in sys.modules if m == 'docker' " \
           "or m.startswith('bluegreen_hooks.operator.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['bluegreen_hooks.operator.commands']"


def test_history_rejects_a_non_positive_count(tmp_path, capsys):
    (tmp_path / "shop.json").write_text("{}")
    assert main(["history", "-n", "0", "--state-dir", str(tmp_path)]) == 2
    assert "ERROR -n: should be a positive number" in capsys.readouterr().err


def test_history_is_bounded_and_read_from_the_state_file(tmp_path, capsys):
    """The audit log keeps 5 x deploy/history events; history -n shows the newest N, oldest first."""
    store = Store(tmp_path, "shop", history=2)
    data = State("shop", live="blue")
    for i in range(25):
        record_event(data, me(), f"d-{i}", "BeforeInstall", "succeeded", 0.5, "green", time.time())
    store.write(data)
    (tmp_path / "shop.toml").write_text('app = "shop"\n[container]\nimage = "busybox:1"\n')
    assert main(["history", "--json", "-n", "100", "--state-dir", str(tmp_path)]) == 0
    h = json.loads(capsys.readouterr().out)
    assert [e["deployment"] for e in h["events"]] == [f"d-{i}" for i in range(15, 25)]
    assert main(["history", "-n", "3", "--state-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[2] for ln in lines] == ["d-22", "d-23", "d-24"]
    assert "BeforeInstall" in lines[0] and "live/target blue/green" in lines[0]


# ----------------------------------------------------------------------------------------------- status

def test_status_before_any_deploy(bed, capsys):
    """Nothing deployed: --config shows 'live none' and exit 0; the state dir alone has no app (exit 2)."""
    b = bed.bundle("v1")
    assert bed.cli("status") == 2
    capsys.readouterr()
    assert bed.cli("status", "--config", str(b / "bluegreen.toml")) == 0
    out = capsys.readouterr().out
    assert "live         none (nothing deployed yet)" in out
    assert "OK: state, nginx include and containers agree" in out
    assert bed.cli("status", "--json", "--config", str(b / "bluegreen.toml")) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["live"]["colour"] is None and s["nginx"]["include_colour"] is None and s["warnings"] == []
    assert [s["colours"][c]["containers"] for c in ("blue", "green")] == [[], []]


def test_status_after_one_and_two_deploys(bed, capsys):
    """After 1 deploy blue is live and healthy; after 2 green is live, blue is the previous release."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    code, s = status_json(bed, capsys)
    assert code == 0, s["warnings"]
    assert s["app"] == bed.app and s["ok"] is True
    assert (s["live"]["colour"], s["live"]["deployment"]) == ("blue", "d-one")
    assert s["live"]["image"] == f"bluegreen-{bed.app}:d-one"
    assert s["previous"]["colour"] is None
    assert s["nginx"]["include_colour"] == "blue" and s["nginx"]["include_deployment"] == "d-one"
    assert (s["nginx"]["public"]["status"], s["nginx"]["public"]["colour"]) == (200, "blue")
    blue = s["colours"]["blue"]
    assert blue["running"] and blue["healthy"] and blue["http"] == "HTTP 200"
    assert [c["deployment"] for c in blue["containers"]] == ["d-one"]
    assert s["colours"]["green"]["containers"] == []
    image_id = bed.client.images.get(f"bluegreen-{bed.app}:d-one").id
    assert s["releases"]["d-one"]["colour"] == "blue"
    assert s["releases"]["d-one"]["images"]["app"] == {"tag": f"bluegreen-{bed.app}:d-one", "id": image_id}

    ok(deploy(bed.bundle("v2"), "d-two"))
    assert bed.cli("status") == 0
    out = capsys.readouterr().out
    assert "live         green since " in out and "deployment d-two, image bluegreen-" in out
    assert "previous     blue, deployment d-one" in out
    assert f"green        :{bed.ports[1]} (live)  {bed.app}-green running, HTTP 200  (deployment d-two" in out
    assert f"blue         :{bed.ports[0]}  {bed.app}-blue exited" in out   # kept stopped, for a rollback
    assert "release      d-two (live): green" in out and "release      d-one (previous): blue" in out
    assert "WARNING" not in out and "OK: state, nginx include and containers agree; green is healthy" in out


def test_status_warns_when_the_include_diverges(bed, capsys):
    """An include edited by hand to the colour that does not run: warnings, exit 1; nothing is changed."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    cfg = config_mod.load(bed.state_dir / f"{bed.app}.toml", check_files=False)
    diverged = nginx_mod.render_include(cfg, "green", "d-hand-edit")
    bed.site.include.write_text(diverged)
    code, s = status_json(bed, capsys)
    assert code == 1
    assert any("state says live=blue, but the nginx include" in w and "points at green" in w for w in s["warnings"])
    assert any("nginx sends traffic to green, but no green container runs" in w for w in s["warnings"])
    assert s["ok"] is False and s["nginx"]["include_colour"] == "green"
    assert bed.cli("status") == 1
    assert "WARNING: state says live=blue" in capsys.readouterr().out
    assert bed.include() == diverged and bed.state()["live"] == "blue"   # status changes nothing

    state_file = bed.state_dir / f"{bed.app}.json"
    state_file.write_text("{not json")
    code, s = status_json(bed, capsys)
    assert code == 1 and s["state_problem"] == "corrupt"
    assert any(w.startswith(f"state file {state_file} is corrupt") for w in s["warnings"])
    assert state_file.read_text() == "{not json"   # left for the next deployment to rebuild


# ---------------------------------------------------------------------------------------------- history

def test_history_lists_one_record_per_event_run(bed, capsys):
    """Each lifecycle event run is one record (deployment, event, outcome, colours, duration, user, host)."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2"), "d-two"))
    capsys.readouterr()
    assert bed.cli("history", "--json") == 0
    h = json.loads(capsys.readouterr().out)
    recorded = [(e["deployment"], e["event"], e["outcome"]) for e in h["events"]]
    # ApplicationStop runs before a state exists on the first deployment and is only audited on the second
    assert recorded[-3:] == [("d-two", "BeforeInstall", "succeeded"), ("d-two", "ApplicationStart", "succeeded"),
                             ("d-two", "ValidateService", "succeeded")]
    e = h["events"][-2]
    assert set(e) >= {"at", "deployment", "event", "outcome", "seconds", "live", "target", "host", "user", "cause"}
    assert (e["live"], e["target"]) == ("green", "green") and e["seconds"] > 0
    assert [(d["id"], d["outcome"]) for d in h["deployments"]] == [("d-one", "succeeded"), ("d-two", "succeeded")]
    two_id = bed.client.images.get(f"bluegreen-{bed.app}:d-two").id
    assert h["deployments"][-1]["images"]["app"]["id"] == two_id   # from the release record
    assert bed.cli("history", "-n", "2") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "d-two" in lines[1] and "ValidateService" in lines[1] and "succeeded" in lines[1]
    assert bed.cli("history", "--deployments") == 0
    out = capsys.readouterr().out
    assert "d-one" in out and "blue -> green" in out
    assert f"(app={two_id.split(':')[1][:12]})" in out


# --------------------------------------------------------------------------------------------- rollback

def test_rollback_refuses_without_a_previous_release_and_during_a_deployment(bed, capsys):
    """One release only: refused in one line (exit 1). A deployment between events holds the lock (exit 3)."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    capsys.readouterr()
    assert bed.cli("rollback") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ERROR nothing to roll back to: {bed.app} has no previous release recorded "
                   f"(live: blue, deployment d-one)"]
    ok(deploy(bed.bundle("v2"), "d-two", events=EVENTS_TO_START))   # green live, ValidateService not yet run
    assert bed.cli("rollback") == 3
    refused = capsys.readouterr().err
    assert "deployment d-two is in progress" in refused
    assert f"release it with `bluegreen-hooks unlock --app {bed.app}`, then retry the rollback" in refused
    st = bed.state()
    assert (st["live"], st["in_progress"]["id"]) == ("green", "d-two")
    assert "colour=green" in bed.include()


def test_rollback_refuses_to_go_back_to_a_release_that_failed_validation(bed, capsys):
    """ValidateService of d-three failed and switched back to green: the 'previous' release is d-three, which
    failed, so rollback refuses (exit 1) and green keeps serving."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2"), "d-two"))
    cfg = bed_config(bed.app, bed.nginx, bed.site, bed.ports, bed.state_dir, "v3")
    cfg["nginx"]["validate_path"] = "/missing"
    runs = deploy(make_bundle(bed.state_dir.parent / "bundle-bad", cfg), "d-three")
    assert runs[-1].event == "ValidateService" and runs[-1].returncode != 0, runs[-1].output
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["previous_deployment"]) == ("green", "d-two", "d-three")
    capsys.readouterr()
    assert bed.cli("rollback") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR the previous release d-three on blue failed its deployment")
    assert err[0].endswith("refusing to roll back to it: green (d-two) stays live")
    assert bed.state()["live"] == "green" and include_agrees_with_state(bed)


def test_failed_rollback_leaves_the_live_colour_serving(bed, capsys):
    """The restarted blue cannot bind its port (a foreign listener holds it): rollback fails with one line, removes
    blue, green keeps serving, the failure is in history and the lock is released. A pruned image is refused."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2"), "d-two"))
    capsys.readouterr()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # blue's old connections are in TIME_WAIT
        squatter.bind(("127.0.0.1", bed.ports[0]))
        squatter.listen()
        with Load(bed.url + "/", threads=2) as load:
            assert bed.cli("rollback") == 1
    assert load.result.failed == 0 and load.result.versions_seen == {"v2"}, load.result.summary()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR rollback failed: blue") and err[0].endswith("green keeps serving")
    assert [c.status for c in bed.containers("blue")] == ["exited"]   # the stopped release is kept
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["in_progress"]) == ("green", "d-two", None)
    assert include_agrees_with_state(bed)
    assert (st["events"][-1]["event"], st["events"][-1]["outcome"]) == ("Rollback", "failed")
    assert st["deployments"][-1]["outcome"] == "failed" and st["deployments"][-1]["id"].startswith("rollback-")

    for c in bed.containers("blue"):
        c.remove(force=True)
    bed.client.images.remove(f"bluegreen-{bed.app}:d-one")
    assert bed.cli("rollback") == 1
    assert capsys.readouterr().err.strip() == (
        f"ERROR image bluegreen-{bed.app}:d-one of the previous release (d-one) is gone (pruned or removed); "
        "deploy that revision again instead")


def test_rollback_under_load_switches_to_the_old_colour_still_running(bed, capsys):
    """v2 switched but abandoned before ValidateService (blue v1 still runs): rollback switches back at once,
    0 failed requests, include and state agree, green stopped after the drain."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2", deploy={"stale_after": 1}), "d-two", events=EVENTS_TO_START))
    assert bed.running_colours() == ["blue", "green"]
    store_path = bed.state_dir / f"{bed.app}.json"
    # the abandoned deployment becomes stale 1 s after its last event finished
    wait_for(lambda: _holder_verdict(store_path)
             == "stale",
             timeout=10, what="d-two to become stale")
    capsys.readouterr()
    with Load(bed.url + "/", threads=4) as load:
        assert bed.cli("rollback", "--json") == 0
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v2", "v1"], r.summary()
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert (result["mode"], result["from"], result["to"], result["deployment"]) == ("switch", "green", "blue", "d-one")
    assert "took over from stale deployment d-two" in captured.err
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["previous"]) == ("blue", "d-one", "green")
    assert include_agrees_with_state(bed), bed.include()
    assert bed.running_colours() == ["blue"]
    assert get(bed.url + "/")[1].strip() == "v1"
    assert st["in_progress"] is None
    assert [(d["id"], d["outcome"]) for d in st["deployments"]][-2:] == [("d-two", "abandoned"),
                                                                          (result["id"], "succeeded")]
    assert (st["events"][-1]["event"], st["events"][-1]["outcome"]) == ("Rollback", "succeeded")
    code, s = status_json(bed, capsys)
    assert code == 0 and s["warnings"] == []


def test_rollback_restarts_the_previous_image_when_the_old_colour_is_gone(bed, capsys):
    """After two full deploys blue is gone: rollback starts bluegreen-<app>:d-one as blue, health-checks it and
    switches under load (0 failed). With --keep-other green stays up, so a second rollback switches at once."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2"), "d-two"))
    assert bed.running_colours() == ["green"]
    capsys.readouterr()
    with Load(bed.url + "/", threads=4) as load:
        assert bed.cli("rollback", "--keep-other") == 0
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v2", "v1"], r.summary()
    out = capsys.readouterr().out
    assert "blue is not running: starting it from bluegreen-" in out and "blue is healthy" in out
    assert "green keeps running (--keep-other)" in out
    blue = bed.containers("blue")
    assert [c.labels["bluegreen.image"] for c in blue] == [f"bluegreen-{bed.app}:d-one"]
    assert [c.labels["bluegreen.deployment"] for c in blue] == ["d-one"]
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["previous"], st["previous_deployment"]) == \
        ("blue", "d-one", "green", "d-two")
    assert include_agrees_with_state(bed)
    code, s = status_json(bed, capsys)
    assert code == 0 and s["notes"] == ["green also runs (not live)"]

    with Load(bed.url + "/", threads=4) as load:
        assert bed.cli("rollback") == 0
    assert load.result.failed == 0, load.result.summary()
    assert load.result.versions_in_order == ["v1", "v2"], load.result.summary()
    out = capsys.readouterr().out
    assert "green still runs" in out and "switching nginx to it at once" in out
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["previous"]) == ("green", "d-two", "blue")
    assert include_agrees_with_state(bed)
    assert bed.running_colours() == ["green"]
    assert [e["event"] for e in st["events"][-2:]] == ["Rollback", "Rollback"]
    assert bed.cli("history", "-n", "1") == 0
    assert "Rollback" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- doctor

def test_doctor_passes_on_a_healthy_bed(bed, capsys):
    """After a deployment every check passes; the live port is held by the app's container."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    capsys.readouterr()
    assert bed.cli("doctor") == 0
    out = capsys.readouterr().out
    for name in ("python", "docker", "config", "nginx binary", "nginx config", "nginx running",
                 "include writable", "state dir", "state file", "port green", "disk space"):
        assert any(ln.startswith("OK") and f" {name} " in ln for ln in out.splitlines()), (name, out)
    assert f"held by container {bed.app}-blue (deployment d-one" in out
    assert f"port {bed.ports[1]} free" in out
    assert out.strip().endswith("all checks passed")
    assert bed.cli("doctor", "--json") == 0
    d = json.loads(capsys.readouterr().out)
    assert d["ok"] is True and not [c for c in d["checks"] if c["level"] == "fail"]


def test_doctor_fails_when_nginx_is_stopped_or_a_port_is_taken(docker_client, app_name, tmp_path, capsys):
    """A private nginx: all pass while it runs; stopped -> FAIL nginx running, exit 1. A foreign listener on
    a colour port is a FAIL naming its pid."""
    server = Nginx(tmp_path / "nginx").start()
    try:
        site = server.add_site("doctor", tmp_path / "conf.d" / "backend-url.inc")
        ports = (free_port(), free_port())
        cfg = bed_config(app_name, server, site, ports, tmp_path / "state")
        bundle = make_bundle(tmp_path / "bundle", cfg)
        argv = ["doctor", "--config", str(bundle / "bluegreen.toml")]
        assert main(argv) == 0, capsys.readouterr().out
        out = capsys.readouterr().out
        assert "does not exist yet" in out   # state dir: a WARN, not a failure
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", ports[1]))
            squatter.listen()
            assert main(argv) == 1
            out = capsys.readouterr().out
            line = next(ln for ln in out.splitlines() if " port green " in ln)
            assert line.startswith("FAIL") and f"pid {os.getpid()}" in line and "not a" in line
        server.stop()
        assert main(argv) == 1
        out = capsys.readouterr().out
        line = next(ln for ln in out.splitlines() if " nginx running " in ln)
        assert line.startswith("FAIL") and "nginx is not running" in line
        assert out.strip().endswith("FAILED: fix the FAIL lines above")
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- compose

@pytest.mark.skipif(not shutil.which("docker-compose") and not shutil.which("docker"), reason="no compose command")
def test_status_and_rollback_of_a_compose_app(stack, capsys):
    """A compose app (3 services per colour) abandoned between ApplicationStart and ValidateService: status warns
    about the stale deployment; rollback switches back to the blue project under load (0 failed) and stops the
    green one; a second rollback starts green's recorded release again (forward to d-c2)."""
    ok(deploy(stack.per_colour_bundle("v1"), "d-c1"))
    b2 = stack.per_colour_bundle("v2")
    toml = b2 / "bluegreen.toml"
    toml.write_text(toml.read_text().replace("drain_timeout = 30", "drain_timeout = 30\nstale_after = 1"))
    ok(deploy(b2, "d-c2", events=EVENTS_TO_START))
    assert stack.services("blue") == stack.services("green") == ["api", "web", "worker"]
    cli = lambda *a: main([*a, "--state-dir", str(stack.state_dir)])  # noqa: E731
    store_path = stack.state_dir / f"{stack.app}.json"
    wait_for(lambda: _holder_verdict(store_path)
             == "stale", timeout=10, what="d-c2 to become stale")
    capsys.readouterr()
    assert cli("status", "--json") == 1
    s = json.loads(capsys.readouterr().out)
    assert (s["live"]["colour"], s["in_progress"]["id"], s["in_progress"]["status"]) == ("green", "d-c2", "stale")
    assert [w for w in s["warnings"] if not w.startswith("deployment d-c2 looks stale")] == []
    assert sorted(c["name"] for c in s["colours"]["green"]["containers"]) == \
        sorted(f"{stack.app}-green_{svc}_1" for svc in ("api", "web", "worker"))
    assert s["colours"]["green"]["healthy"] and s["notes"] == ["blue also runs (not live)"]

    with Load(stack.url + "/", threads=3) as load:
        assert cli("rollback") == 0
    assert load.result.failed == 0 and load.result.versions_in_order == ["v2", "v1"], load.result.summary()
    assert "switching nginx to it at once" in capsys.readouterr().out
    st = stack.state()
    assert (st["live"], st["live_deployment"], st["previous"]) == ("blue", "d-c1", "green")
    assert "colour=blue deployment=d-c1" in stack.include()
    assert stack.services("green") == [] and stack.services("blue") == ["api", "web", "worker"]
    assert cli("status") == 0
    capsys.readouterr()
    with Load(stack.url + "/", threads=3) as load:
        assert cli("rollback") == 0
    assert load.result.failed == 0 and load.result.versions_in_order == ["v1", "v2"], load.result.summary()
    assert stack.state()["live_deployment"] == "d-c2" and stack.services("green") == ["api", "web", "worker"]
    # leave no container on the stack's image for the fixture's image removal (and name any that lingers)
    for colour in ("blue", "green"):
        for c in stack.project(colour):
            c.remove(force=True)
    wait_for(lambda: not stack.client.containers.list(all=True, filters={"ancestor": f"{stack.image}:v1"}), timeout=30,
             what="no container left on " + stack.image + ": " + ", ".join(
                 c.name for c in stack.client.containers.list(all=True, filters={"ancestor": f"{stack.image}:v1"})))


def _holder_verdict(store_path):
    """busy/stale of the deployment in progress, as the next deployment would judge it (stale_after 1 s)."""
    ip = InProgress.from_json(json.loads(store_path.read_text())["in_progress"])
    return holder_status(ip, time.time(), 1, me().host, procfs.process_alive)[0]
