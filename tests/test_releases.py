"""Releases you can go back to (issue 14.1-14.3, 12.1, 12.5, 12.11), on the real test bed under load.

A successful deployment stops the old colour (it is not removed) and records each release in
``<state_dir>/<app>.releases/<deployment>/`` (its settings, its per-release images); ``rollback`` starts
that release again, or re-creates it from the record, never from the current config.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bluegreen_hooks.cli import main
from bluegreen_hooks.host import ports
from testbed.bundle import deploy
from testbed.load import Load
from tests.helpers import get, ok, wait_for

EVENTS_TO_START = ("ApplicationStop", "BeforeInstall", "ApplicationStart")


def _cli(state_dir, capsys, *argv):
    capsys.readouterr()
    code = main([*argv, "--state-dir", str(state_dir)])
    return code, capsys.readouterr()


def _env(cont) -> dict:
    return dict(e.split("=", 1) for e in cont.attrs["Config"]["Env"])


def _app_images(client, app):
    """Our per-release tags of ``app`` (compose: bluegreen-<app>/<service>:<deployment>)."""
    return sorted(t for img in client.api.images(filters={"reference": f"bluegreen-{app}/*"})
                  for t in img.get("RepoTags") or [] if t.startswith(f"bluegreen-{app}/"))


# ---------------------------------------------------------------------------------------------- compose

def test_compose_rollback_brings_back_the_stopped_release_with_its_own_images_and_env(stack, capsys):
    """3 services, two deployments (each `up --build`): blue is stopped, not removed; rollback starts it again
    under load (0 failed) with the images recorded for d-r1; a second rollback goes forward again; with the
    stack removed by hand, rollback re-creates it from the recorded config (up --no-build)."""
    ok(deploy(stack.per_colour_bundle("v1"), "d-r1"))
    ok(deploy(stack.per_colour_bundle("v2"), "d-r2"))
    assert stack.services("blue") == [] and {c.status for c in stack.project("blue")} == {"exited"}
    rel = json.loads((stack.state_dir / f"{stack.app}.releases" / "d-r1" / "release.json").read_text())
    assert sorted(rel["images"]) == ["api", "web", "worker"]
    assert oct(os.stat(stack.state_dir / f"{stack.app}.releases" / "d-r1").st_mode & 0o777) == "0o700"
    assert f"bluegreen-{stack.app}/web:d-r1" in _app_images(stack.client, stack.app)

    with Load(stack.url + "/", threads=3) as web, Load(stack.url + "/api/", threads=2) as api:
        code, out = _cli(stack.state_dir, capsys, "rollback", "--json")
    assert code == 0, out.err
    first = json.loads(out.out)
    print(f"compose rollback (stopped stack started again): {first['seconds']:.2f}s")
    for load, versions in ((web, ["v2", "v1"]), (api, ["api-v2", "api-v1"])):
        assert load.result.failed == 0 and load.result.versions_in_order == versions, load.result.summary()
    assert stack.services("blue") == ["api", "web", "worker"] and stack.services("green") == []
    for c in stack.project("blue"):
        svc = c.labels["com.docker.compose.service"]
        assert c.attrs["Image"] == rel["images"][svc]["id"], svc
    web_c = next(c for c in stack.project("blue") if c.labels["com.docker.compose.service"] == "web")
    assert _env(web_c)["APP_VERSION"] == "v1"

    with Load(stack.url + "/", threads=3) as load:
        code, out = _cli(stack.state_dir, capsys, "rollback")
    assert code == 0, out.err
    assert load.result.failed == 0 and load.result.versions_in_order == ["v1", "v2"], load.result.summary()
    assert stack.state()["live_deployment"] == "d-r2"

    for c in stack.project("blue"):      # the stopped release gone: re-created from its record
        c.remove(force=True)
    with Load(stack.url + "/", threads=3) as load:
        code, out = _cli(stack.state_dir, capsys, "rollback", "--json")
    assert code == 0, out.err
    print(f"compose rollback (re-created from the record): {json.loads(out.out)['seconds']:.2f}s")
    assert "re-creating" in out.err or "re-creating" in out.out
    assert load.result.failed == 0 and load.result.versions_in_order == ["v2", "v1"], load.result.summary()
    assert {c.attrs["Image"] for c in stack.project("blue")} == {i["tagged"] for i in rel["images"].values()}
    assert get(stack.url + "/api/")[1].strip() == "api-v1"


def test_compose_keep_images_prunes_old_releases_but_never_the_live_or_previous(stack, capsys):
    """keep_images = 1: after five deployments only the live and previous releases' images and records
    remain (the builds of v1..v3 are gone); rollback still works."""
    for i in range(1, 6):
        b = stack.per_colour_bundle(f"v{i}")
        toml = b / "bluegreen.toml"
        toml.write_text(toml.read_text().replace("drain_timeout = 30", "drain_timeout = 30\nkeep_images = 1"))
        ok(deploy(b, f"d-k{i}"))
    tags = _app_images(stack.client, stack.app)
    assert {t.split(":")[1] for t in tags} == {"d-k4", "d-k5"}, tags
    assert sorted(os.listdir(stack.state_dir / f"{stack.app}.releases")) == ["d-k4", "d-k5"]
    built = sorted(t for img in stack.client.images.list(name=stack.image) for t in img.tags
                   if t.startswith(f"{stack.image}:"))
    assert built == [f"{stack.image}:v4", f"{stack.image}:v5"], built
    with Load(stack.url + "/", threads=3) as load:
        code, out = _cli(stack.state_dir, capsys, "rollback")
    assert code == 0, out.err
    assert load.result.failed == 0 and load.result.versions_in_order == ["v5", "v4"], load.result.summary()


# ----------------------------------------------------------------------------------------- one container

@pytest.fixture
def bed_cli(bed):
    bed.cli = lambda *a: main([*a, "--state-dir", str(bed.state_dir)])
    return bed


def test_docker_rollback_uses_the_release_settings_not_the_current_config(bed_cli, capsys):
    """d-one ran with FLAVOUR=one, d-two with FLAVOUR=two: rollback starts the stopped d-one container (its own
    env); with that container removed, it is re-created from the recorded arguments (FLAVOUR=one again)."""
    bed = bed_cli
    ok(deploy(bed.bundle("v1", container={"env": {"HOST": "127.0.0.1", "FLAVOUR": "one"}}), "d-one"))
    ok(deploy(bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "FLAVOUR": "two"}}), "d-two"))
    assert bed.running_colours() == ["green"] and [c.status for c in bed.containers("blue")] == ["exited"]
    with Load(bed.url + "/", threads=4) as load:
        code, out = _cli(bed.state_dir, capsys, "rollback", "--json")
    assert code == 0, out.err
    print(f"docker rollback (stopped container started again): {json.loads(out.out)['seconds']:.2f}s")
    assert load.result.failed == 0 and load.result.versions_in_order == ["v2", "v1"], load.result.summary()
    assert _env(bed.containers("blue")[0])["FLAVOUR"] == "one"

    ok_code, _ = _cli(bed.state_dir, capsys, "rollback")          # forward to d-two again
    assert ok_code == 0 and bed.running_colours() == ["green"]
    for c in bed.containers("blue"):
        c.remove(force=True)
    with Load(bed.url + "/", threads=4) as load:
        code, out = _cli(bed.state_dir, capsys, "rollback", "--json")
    assert code == 0, out.err
    print(f"docker rollback (re-created from the record): {json.loads(out.out)['seconds']:.2f}s")
    assert load.result.failed == 0 and load.result.versions_in_order == ["v2", "v1"], load.result.summary()
    blue = bed.containers("blue")[0]
    assert _env(blue)["FLAVOUR"] == "one" and blue.labels["bluegreen.deployment"] == "d-one"


def test_rollback_refuses_a_squatter_on_the_old_colours_port(bed_cli, capsys):
    """12.1: blue (d-one) stopped and `python3 -m http.server` on blue's port: rollback is refused with one
    line naming the port and the holder; nginx untouched, 0 failed requests."""
    bed = bed_cli
    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2"), "d-two"))
    before = bed.include()
    squatter = subprocess.Popen([sys.executable, "-m", "http.server", str(bed.ports[0]), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=bed.tmp)
    try:
        wait_for(lambda: ports.answers("127.0.0.1", bed.ports[0]), timeout=10, what="the squatter to listen")
        with Load(bed.url + "/", threads=2) as load:
            code, out = _cli(bed.state_dir, capsys, "rollback")
    finally:
        squatter.kill()
        squatter.wait()
    assert code == 1
    err = out.err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{bed.ports[0]}" in err[0] and "http.server" in err[0], err
    assert f"pid {squatter.pid}" in err[0] and err[0].endswith("green keeps serving")
    assert bed.include() == before and bed.state()["live"] == "green"
    assert load.result.failed == 0 and load.result.versions_seen == {"v2"}, load.result.summary()


def test_a_port_is_owned_by_its_container_not_by_a_squatter(docker_client, run_container, example_images, port):
    """The check every switch makes (lifecycle/steps.check_ports_owned): the example app's container on the
    host network holds its port; `python3 -m http.server` on another port is named as a foreign holder."""
    cont = run_container(example_images("v1"), environment={"HOST": "127.0.0.1", "PORT": str(port)})
    wait_for(lambda: ports.answers("127.0.0.1", port), timeout=20, what="the app to listen")
    cont.reload()
    assert ports.foreign_holder(port, [cont.attrs]) is None
    other = ports_free = None
    from testbed.ports import free_port
    ports_free = free_port()
    other = subprocess.Popen([sys.executable, "-m", "http.server", str(ports_free), "--bind", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ports.answers("127.0.0.1", ports_free), timeout=10, what="http.server to listen")
        holder = ports.foreign_holder(ports_free, [cont.attrs])
        assert holder is not None and holder.startswith(f"pid {other.pid} (") and "http.server" in holder
        with pytest.raises(Exception, match=r"held by pid \d+ .*refusing to send traffic"):
            ports.check_held_by("127.0.0.1", [("colours/green", ports_free)], [cont.attrs], "green")
    finally:
        other.kill()
        other.wait()


# ------------------------------------------------------------------------------------- 12.5: two at once

def test_two_rollbacks_at_once_one_wins_the_other_exits_3(bed_cli):
    """Two `bluegreen-hooks rollback` processes started together under load: exactly one succeeds, the other
    is refused by the claim (exit 3); 0 failed requests."""
    bed = bed_cli
    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2"), "d-two"))
    argv = [sys.executable, "-m", "bluegreen_hooks", "rollback", "--state-dir", str(bed.state_dir)]
    with Load(bed.url + "/", threads=4) as load:
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 3], results
    loser = next(err for code, err in results if code == 3).strip().splitlines()
    assert len(loser) == 1 and "rollback-" in loser[0], loser
    assert load.result.failed == 0, load.result.summary()
    assert bed.state()["live"] == "blue" and bed.running_colours() == ["blue"]


def test_switch_at_once_rollback_health_checks_a_frozen_old_colour_first(bed_cli, capsys):
    """12.5: blue still runs d-one (d-two abandoned before ValidateService) but is frozen (docker pause):
    rollback refuses without switching; nginx and the state are untouched, 0 failed."""
    bed = bed_cli
    fast = {"health": {"deadline": 5, "interval": 0.1, "max_interval": 0.25}}
    ok(deploy(bed.bundle("v1", **fast), "d-one"))
    ok(deploy(bed.bundle("v2", deploy={"stale_after": 1}, **fast), "d-two", events=EVENTS_TO_START))
    assert bed.running_colours() == ["blue", "green"]
    blue = bed.containers("blue")[0]
    before = bed.include()
    blue.pause()
    try:
        wait_for(lambda: _stale(bed), timeout=10, what="d-two to become stale")
        with Load(bed.url + "/", threads=2) as load:
            code, out = _cli(bed.state_dir, capsys, "rollback")
    finally:
        blue.unpause()
    assert code == 1
    err = out.err.strip().splitlines()
    assert len(err) == 1 and "paused" in err[0] and err[0].endswith("green keeps serving"), err
    assert bed.include() == before and bed.state()["live"] == "green"
    assert load.result.failed == 0 and load.result.versions_seen == {"v2"}, load.result.summary()


def _stale(bed) -> bool:
    import time

    from bluegreen_hooks.decide import holder_status
    from bluegreen_hooks.host import procfs
    from bluegreen_hooks.host.store import me
    from bluegreen_hooks.model import InProgress

    ip = InProgress.from_json(bed.state()["in_progress"])
    return holder_status(ip, time.time(), 1, me().host, procfs.process_alive)[0] == "stale"
