"""The fault matrix (docs/faults.md): every fault under continuous load, against real Docker + nginx.

Each test asserts: 0 failed requests to the live colour, the state file consistent with the nginx
include and the containers afterwards, the hook's exit code, and that the last output line names the
cause. The faults tests/test_lifecycle.py already covers (never healthy, exits at once, slow start,
nginx -t failure, ValidateService failure, lost/corrupt state, two deployments, requests in flight)
are not repeated here.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from testbed.bundle import bed_config, deploy, hook_env, make_bundle, run_hook
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port
from tests.helpers import get, wait_for

THREADS = 3


@pytest.fixture
def bed(docker_client, nginx, site, app_name, tmp_path):
    """One app's deployments on the test bed (the same shape as tests/test_lifecycle.py's ``bed``)."""

    class Bed:
        app = app_name
        ports = (free_port(), free_port())
        state_dir = tmp_path / "state"
        url = site.url

        def bundle(self, version="v1", name=None, **overrides):
            cfg = bed_config(app_name, self.nginx, self.site, self.ports, self.state_dir, version, **overrides)
            return make_bundle(tmp_path / (name or f"bundle-{version}-{uuid.uuid4().hex[:6]}"), cfg)

        def state(self):
            return json.loads((self.state_dir / f"{app_name}.json").read_text())

        def containers(self, colour=None):
            labels = [f"bluegreen.app={app_name}"] + ([f"bluegreen.colour={colour}"] if colour else [])
            return docker_client.containers.list(all=True, filters={"label": labels})

        def include(self):
            return self.site.include.read_text()

        def snapshot(self):
            """What must not change when a deployment is refused or fails."""
            st = self.state()
            return {"live": {k: st[k] for k in ("live", "live_deployment", "live_image", "previous")},
                    "include": self.site.include.read_bytes(),
                    "containers": sorted((c.id, c.status) for c in self.containers())}

    Bed.site, Bed.nginx, Bed.client = site, nginx, docker_client
    return Bed()


def ok(runs):
    assert runs and all(r.returncode == 0 for r in runs), "\n".join(f"--- {r.event} ({r.returncode})\n{r.output}" for r in runs)
    return runs


def assert_consistent(bed, live, deployment):
    """State, nginx include and containers agree: ``live`` serves ``deployment``, nothing else runs."""
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["in_progress"]) == (live, deployment, None), st
    assert f"colour={live} deployment={deployment}" in bed.include()
    assert f":{bed.ports[0 if live == 'blue' else 1]};" in bed.include()
    conts = bed.containers()
    assert [(c.labels["bluegreen.colour"], c.labels["bluegreen.deployment"], c.status) for c in conts] == \
        [(live, deployment, "running")], [c.name for c in conts]
    assert get(bed.url + "/")[2].get("X-Bluegreen-Colour") == live


def assert_clean_load(load, versions=("v1",)):
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.total > 0 and r.versions_seen == set(versions), r.summary()


def start_hook(bundle: Path, event: str, deployment_id: str) -> subprocess.Popen:
    """Start ``hooks/<event>`` as the agent does (own process group), without waiting for it."""
    env = hook_env(deployment_id)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return subprocess.Popen([str(bundle / "hooks" / event)], env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def last_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# ------------------------------------------------------------------------------------ the new version fails

def test_crash_looping_version_fails_fast(bed):
    """The new version starts, runs a second, exits 1; Docker restarts it (unless-stopped). The hook fails
    at the first exit or restart, long before the 60 s health deadline; the old colour keeps serving."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before = bed.snapshot()
    bad = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "1", "EXIT_CODE": "1"}},
                     health={"deadline": 60})
    with Load(bed.url + "/", threads=THREADS) as load:
        runs = deploy(bad, "d-crash")
    assert_clean_load(load)
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert last.seconds < 30, f"took {last.seconds:.1f}s: waited out the health deadline?\n{last.output}"
    assert last.last_line.startswith("ERROR ApplicationStart: green"), last.output
    assert ("crash-looping" in last.last_line or "exited with code 1" in last.last_line), last.last_line
    assert "blue keeps serving" in last.last_line and len(last.last_line) < 300
    assert "exiting with code 1" in last.output        # the container's log tail comes just before
    assert bed.snapshot() == before
    assert bed.state()["deployments"][-1]["outcome"] == "failed"
    assert_consistent(bed, "blue", "d-good")


# ----------------------------------------------------------------------------------- the platform is broken

def test_nginx_not_running_refuses_before_install_and_changes_nothing(docker_client, app_name, tmp_path):
    """nginx is down at BeforeInstall (a private nginx, stopped): refused with one line naming nginx and
    its pid file; the live colour (loaded directly on its port) keeps serving; nothing changes."""
    server = Nginx(tmp_path / "private-nginx").start()
    try:
        site = server.add_site("private", tmp_path / "conf.d" / "backend-url.inc")
        ports = (free_port(), free_port())
        state_dir = tmp_path / "state"

        def bundle(version):
            return make_bundle(tmp_path / f"bundle-{version}",
                               bed_config(app_name, server, site, ports, state_dir, version))

        ok(deploy(bundle("v1"), "d-good"))
        include = site.include.read_bytes()
        state_before = (state_dir / f"{app_name}.json").read_text()
        labels = {"label": [f"bluegreen.app={app_name}"]}
        conts = sorted(c.id for c in docker_client.containers.list(all=True, filters=labels))
        server.stop()
        assert server.master_pid() is None
        b2 = bundle("v2")
        with Load(f"http://127.0.0.1:{ports[0]}/", threads=THREADS) as load:   # nginx is down: the live colour itself
            runs = deploy(b2, "d-nonginx")
        assert_clean_load(load)
        last = runs[-1]
        assert (last.event, last.returncode) == ("BeforeInstall", 1), last.output
        assert last.last_line.startswith("ERROR BeforeInstall: nginx is not running"), last.output
        assert str(server.pid_file) in last.last_line and len(last.last_line) < 300
        assert site.include.read_bytes() == include
        assert sorted(c.id for c in docker_client.containers.list(all=True, filters=labels)) == conts
        st = json.loads((state_dir / f"{app_name}.json").read_text())
        before = json.loads(state_before)
        assert {k: st[k] for k in ("live", "live_deployment", "in_progress")} == \
            {k: before[k] for k in ("live", "live_deployment", "in_progress")} == \
            {"live": "blue", "live_deployment": "d-good", "in_progress": None}
        assert st["deployments"] == before["deployments"]      # refused before it claimed the app
        assert (st["events"][-1]["deployment"], st["events"][-1]["outcome"]) == ("d-nonginx", "failed")
        # nginx back: the same bundle deploys
        server.start()
        ok(deploy(b2, "d-nonginx-2"))
        assert get(site.url + "/")[1].strip() == "v2"
    finally:
        server.stop()


@pytest.mark.parametrize("event", ["BeforeInstall", "ApplicationStart"])
def test_docker_unreachable_is_one_line_naming_docker(bed, event):
    """DOCKER_HOST points at no daemon: the event fails with one line naming Docker and the fix; the live
    colour keeps serving and nothing changes (the failed deployment is closed, not left in progress)."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before = bed.snapshot()
    b2 = bed.bundle("v2")
    if event == "ApplicationStart":
        ok(deploy(b2, "d-nodocker", events=("BeforeInstall",)))
    with Load(bed.url + "/", threads=THREADS) as load:
        run = run_hook(b2, event, "d-nodocker", extra_env={"DOCKER_HOST": "unix:///nonexistent.sock"},
                       python=sys.executable)
    assert_clean_load(load)
    assert run.returncode == 1, run.output
    assert run.last_line.startswith(f"ERROR {event}: Docker daemon unreachable"), run.output
    assert "DOCKER_HOST" in run.last_line and len(run.last_line) < 300
    assert "Traceback" not in run.output
    assert bed.snapshot() == before
    st = bed.state()
    assert (st["events"][-1]["deployment"], st["events"][-1]["outcome"]) == ("d-nodocker", "failed")
    if event == "ApplicationStart":   # BeforeInstall had claimed the app: the failure closes the deployment
        assert (st["deployments"][-1]["id"], st["deployments"][-1]["outcome"]) == ("d-nodocker", "failed")
    else:                             # refused before claiming anything
        assert st["deployments"][-1]["id"] == "d-good"
    assert_consistent(bed, "blue", "d-good")


# ------------------------------------------------------------------------------------- the hook is killed

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_hook_killed_mid_application_start_then_next_deployment_succeeds(bed, sig):
    """ApplicationStart is killed while it waits for a slow app. SIGTERM (the agent's timeout): the hook
    removes its target and clears in_progress. SIGKILL: nothing can clean up; the next deployment takes
    over the dead holder and removes the leftover. Either way the live colour serves throughout."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    slow = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "60"}})
    with Load(bed.url + "/", threads=THREADS) as load:
        ok(deploy(slow, "d-killed", events=("BeforeInstall",)))
        proc = start_hook(slow, "ApplicationStart", "d-killed")
        try:
            wait_for(lambda: (bed.state().get("in_progress") or {}).get("event") == "ApplicationStart"
                     and any(c.status == "running" for c in bed.containers("green")),
                     timeout=60, what="ApplicationStart to start green and wait for its health")
            os.killpg(proc.pid, sig)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert "colour=blue deployment=d-good" in bed.include()
        st = bed.state()
        assert (st["live"], st["live_deployment"]) == ("blue", "d-good")
        if sig == signal.SIGTERM:
            assert proc.returncode == 1, out
            assert last_line(out).startswith("ERROR ApplicationStart: stopped by SIGTERM"), out
            assert "blue keeps serving" in last_line(out)
            assert st["in_progress"] is None and st["deployments"][-1]["outcome"] == "failed"
            assert [c.labels["bluegreen.colour"] for c in bed.containers()] == ["blue"]
        else:
            assert proc.returncode == -signal.SIGKILL
            assert st["in_progress"]["id"] == "d-killed"        # nobody could clear it...
            assert {c.labels["bluegreen.colour"] for c in bed.containers()} == {"blue", "green"}  # ...nor remove green
        runs = ok(deploy(bed.bundle("v3"), "d-next"))
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v1", "v3"], r.summary()
    before = next(x for x in runs if x.event == "BeforeInstall").output
    if sig == signal.SIGKILL:
        assert "took over from stale deployment d-killed" in before and "died without finishing" in before, before
        assert any(d["id"] == "d-killed" and d["outcome"] == "abandoned" for d in bed.state()["deployments"])
    assert "target colour: green" in before
    assert_consistent(bed, "green", "d-next")


# ------------------------------------------------------------------------------- the target port is taken

class Squatter:
    """A foreign process's listener on 127.0.0.1:``port``: ``silent`` (accepts, never answers), or
    answers every request with HTTP ``answer`` (404, or 200 — a stray server that would pass a health check)."""

    def __init__(self, port: int, answer: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.answer = answer
        self.stopped = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.answer == "silent":
                self.conns.append(conn)
                continue
            try:
                conn.settimeout(2)
                conn.recv(65536)
                body = b"squatter\n"
                conn.sendall(b"HTTP/1.0 %s X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (self.answer.encode(), len(body), body))
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the thread blocked in accept(); then the port is free
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("when, answer", [("BeforeInstall", "silent"), ("BeforeInstall", "404"),
                                          ("ApplicationStart", "200")])
def test_target_port_taken_by_a_foreign_process_is_refused(bed, when, answer):
    """Something that is not our container listens on the target colour's port (before BeforeInstall, or
    appearing between BeforeInstall and ApplicationStart): refused with one line naming the port and
    the holder's pid; nginx is never pointed at it, even when it answers 200 on /health."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before = bed.snapshot()
    b2 = bed.bundle("v2")
    squatter = None
    try:
        if when == "BeforeInstall":
            squatter = Squatter(bed.ports[1], answer)
        with Load(bed.url + "/", threads=THREADS) as load:
            runs = deploy(b2, "d-squat", events=("BeforeInstall",))
            if when == "ApplicationStart":
                ok(runs)
                squatter = Squatter(bed.ports[1], answer)
                runs = deploy(b2, "d-squat", events=("ApplicationStart", "ValidateService"))
        assert_clean_load(load)
        last = runs[-1]
        assert (last.event, last.returncode) == (when, 1), last.output
        assert last.last_line.startswith(f"ERROR {when}: green port 127.0.0.1:{bed.ports[1]} is already in use"), \
            last.output
        assert f"pid {os.getpid()}" in last.last_line and "colours/green" in last.last_line, last.last_line
        assert len(last.last_line) < 300
        assert bed.snapshot() == before
        assert bed.state()["deployments"][-1]["outcome"] == "failed"
        assert_consistent(bed, "blue", "d-good")
    finally:
        if squatter:
            squatter.close()
    # the port is free again: the same bundle deploys
    ok(deploy(b2, "d-squat-2"))
    assert_consistent(bed, "green", "d-squat-2")
