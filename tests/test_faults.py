"""The fault matrix (docs/faults.md): every fault under continuous load, against real Docker + nginx.

Each test asserts: 0 failed requests to the live colour, the state file consistent with the nginx
include and the containers afterwards, the hook's exit code, and that the last output line names the
cause. The faults tests/test_lifecycle.py already covers (never healthy, exits at once, slow start,
nginx -t failure, ValidateService failure, lost/corrupt state, two deployments, requests in flight)
are not repeated here.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from testbed.bundle import bed_config, deploy, hook_env, make_bundle, run_hook
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port
from tests.helpers import HeldRequests, get, last_line, ok, start_hook, wait_for

THREADS = 3


def assert_consistent(bed, live, deployment):
    """State, nginx include and containers agree: ``live`` serves ``deployment``, nothing else runs (the
    previous release may be kept stopped, for a rollback)."""
    st = bed.state()
    assert (st["live"], st["live_deployment"], st["in_progress"]) == (live, deployment, None), st
    assert f"colour={live} deployment={deployment}" in bed.include()
    assert f":{bed.ports[0 if live == 'blue' else 1]};" in bed.include()
    conts = bed.containers()
    running = [c for c in conts if c.status != "exited"]
    assert [(c.labels["bluegreen.colour"], c.labels["bluegreen.deployment"], c.status) for c in running] == \
        [(live, deployment, "running")], [(c.name, c.status) for c in conts]
    assert all(c.labels["bluegreen.colour"] != live for c in conts if c.status == "exited"), [c.name for c in conts]
    assert get(bed.url + "/")[2].get("X-Bluegreen-Colour") == live


def assert_clean_load(load, versions=("v1",)):
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.total > 0 and r.versions_seen == set(versions), r.summary()


# ------------------------------------------------------------------------------------ the new version fails

def test_crash_looping_version_fails_fast(bed):
    """The new version starts, runs a second, exits 1; Docker restarts it (unless-stopped). The hook fails
    at the first exit or restart, long before the 120 s health deadline; the old colour keeps serving."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before = bed.snapshot()
    bad = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "1", "EXIT_CODE": "1"}},
                     health={"deadline": 120})
    with Load(bed.url + "/", threads=THREADS) as load:
        runs = deploy(bad, "d-crash")
    assert_clean_load(load)
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert last.seconds < 60, f"took {last.seconds:.1f}s: waited for the 120 s health deadline?\n{last.output}"
    assert "not healthy after" not in last.last_line
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


def test_a_container_that_goes_while_the_app_is_listed_is_skipped(docker_client, app_name, tmp_path):
    """The SDK lists, then inspects each container; one can go in between (CI saw an image build's step
    container, labelled with the app, go while another deployment's BeforeInstall listed the app: a 404
    named as a disk error). Listing skips such a container, for both backends, and a Docker API error that
    does reach a hook names Docker, not the disk."""
    from bluegreen_hooks import config
    from bluegreen_hooks.lifecycle.runner import os_error
    from bluegreen_hooks.runtime import docker as sdk
    from bluegreen_hooks.runtime.compose import ComposeBackend, project_name
    from testbed.images import ensure_base_image

    for name in ("docker-compose.blue.yml", "docker-compose.green.yml"):
        (tmp_path / name).write_text("services: {}\n")
    cfg = config.parse({"app": app_name, "colours": {"blue": free_port(), "green": free_port()},
                        "compose": {"files": {"blue": "docker-compose.blue.yml",
                                              "green": "docker-compose.green.yml"}}},
                       tmp_path / "bluegreen.toml", environ={})
    compose = ComposeBackend(cfg, docker_client, command=("docker-compose",))
    labels = {"bluegreen.app": app_name, "com.docker.compose.project": project_name(cfg, "blue")}
    image = ensure_base_image(docker_client)
    stop, churned = threading.Event(), []

    def churn():   # containers that exist for a moment, as a build's steps do
        while not stop.is_set():
            c = docker_client.containers.create(image, ["true"], labels=labels, network_mode="host")
            c.remove(force=True)
            churned.append(c.id)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(churned) >= 1, what="the first churned container")
        start, listed = len(churned), 0
        while len(churned) < start + 40:   # 40 containers come and go while the app is listed
            assert sdk.running(docker_client, cfg) == {"blue": None, "green": None}
            assert {c.labels["bluegreen.app"] for c in compose.containers("blue")} <= {app_name}
            listed += 1
    finally:
        stop.set()
        thread.join(30)
    assert listed >= 10, f"listed only {listed} times while 40 containers came and went"

    import docker.errors
    with pytest.raises(docker.errors.NotFound) as gone:
        docker_client.containers.get(churned[-1])
    line = str(os_error(gone.value))
    assert line.startswith("Docker API: 404 Client Error") and "No such container" in line, line
    assert "free space" not in line and "\n" not in line
    assert str(os_error(OSError(28, "No space left on device", "/var/lib/x"))).startswith(
        "/var/lib/x: No space left on device; free space")


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
        with contextlib.suppress(OSError):   # wakes the thread blocked in accept(); then the port is free
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for c in self.conns:
            c.close()


def test_port_holder_is_found_from_proc():
    """ports.py names the process listening on a port (pid and command line) from /proc; a free port
    passes check_free; a held one is refused naming the port, the config key and the holder."""
    from bluegreen_hooks.errors import ContainerStartError
    from bluegreen_hooks.host import ports

    port = free_port()
    assert not ports.answers("127.0.0.1", port) and ports.holders(port) == []
    ports.check_free("127.0.0.1", [("colours/green", port)], "green")
    squatter = Squatter(port, "404")
    try:
        (pid, cmd), = ports.holders(port)
        assert pid == os.getpid() and "python" in cmd and len(cmd) <= 60
        with pytest.raises(ContainerStartError) as err:
            ports.check_free("127.0.0.1", [("colours/blue", free_port()), ("colours/green", port)], "green")
        assert str(err.value).startswith(f"green port 127.0.0.1:{port} is already in use by pid {os.getpid()} (")
        assert "change colours/green" in str(err.value)
    finally:
        squatter.close()
    assert not ports.answers("127.0.0.1", port)


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


# ------------------------------------------------------------------------------- config values as attacks

def _bad_configs(bed):
    """(what is set, config overrides or env, the key the one-line refusal must name)."""
    inc = str(bed.site.include)
    return [
        ({"colours": {"green": "8082; evil"}}, {}, "colours/green"),
        ({"colours": {"green": 0}}, {}, "colours/green"),
        ({"colours": {"blue": 65536}}, {}, "colours/blue"),
        ({"colours": {"green": bed.ports[0]}}, {}, "colours/green"),           # both colours on one port
        ({"colours": {"host": "127.0.0.1;}"}}, {}, "colours/host"),
        ({"colours": {"host": "127.0.0.1\nreturn 200"}}, {}, "colours/host"),
        ({"nginx": {"variable": "service_url;\nreturn 200 owned"}}, {}, "nginx/variable"),
        ({"nginx": {"variable": "$service_url"}}, {}, "nginx/variable"),
        ({"nginx": {"colour_variable": "c}"}}, {}, "nginx/colour_variable"),
        ({"nginx": {"form": "upstream", "upstream": "up{ server 10.0.0.1"}}, {}, "nginx/upstream"),
        ({"nginx": {"include": inc + ";\ninclude /etc/passwd"}}, {}, "nginx/include"),
        ({"nginx": {"include": "conf.d/backend-url.inc"}}, {}, "nginx/include"),
        ({"nginx": {"include": "/tmp/$x.inc"}}, {}, "nginx/include"),
        ({"nginx": {"pid_file": "/run/nginx.pid; x"}}, {}, "nginx/pid_file"),
        ({"nginx": {"public_url": "http://127.0.0.1:99999/"}}, {}, "nginx/public_url"),
        ({"nginx": {"public_url": "http://127.0.0.1/;}"}}, {}, "nginx/public_url"),
        ({"nginx": {"validate_path": "/$host"}}, {}, "nginx/validate_path"),
        ({"nginx": {"colour_header": "X-C\r\nSet-Cookie: a=b"}}, {}, "nginx/colour_header"),
        ({"nginx": {"test": "nginx -t; rm -rf /"}}, {}, "nginx/test"),            # a string, not an argv list
        ({"health": {"path": "/health;\n}"}}, {}, "health/path"),
        ({"health": {"path": "/health }"}}, {}, "health/path"),
        ({"deploy": {"state_dir": "relative/state"}}, {}, "deploy/state_dir"),
        ({"app": "shop;}"}, {}, "app"),
        ({"app": "$shop"}, {}, "app"),
        ({"container": {"build": "../.."}}, {}, "container/build"),              # a path escaping the bundle
        ({"container": {"dockerfile": "../../Dockerfile"}}, {}, "container/dockerfile"),
        ({"container": {"env": {"A;B": "x"}}}, {}, "container/env/A;B"),
        ({"container": {"port_env": "PORT;x"}}, {}, "container/port_env"),
        ({"container": {"build_network": "host;x"}}, {}, "container/build_network"),
        ({"container": {"image": "busybox;rm -rf /", "build": None}}, {}, "container/image"),
        ({}, {"BLUEGREEN_STATE_DIR": "/tmp/a;b"}, "BLUEGREEN_STATE_DIR"),
        ({}, {"DEPLOYMENT_ID": "d-1;}\nset $service_url http://10.0.0.1"}, "DEPLOYMENT_ID"),
    ]


def test_config_values_that_try_to_inject_nginx_directives_are_refused(bed):
    """Through the real BeforeInstall hook, each bad value is refused with exit 2 and one line naming its
    key; the include bytes, nginx's workers, the containers and the state file stay exactly as they were."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before = bed.snapshot()
    state_bytes = (bed.state_dir / f"{bed.app}.json").read_bytes()
    workers = bed.nginx.worker_pids()
    wrong = []
    cases = _bad_configs(bed)
    with Load(bed.url + "/", threads=THREADS) as load:
        for i, (overrides, env, key) in enumerate(cases):
            cfg = bed_config(bed.app, bed.nginx, bed.site, bed.ports, bed.state_dir, "v2")
            for table, values in overrides.items():
                if isinstance(values, dict):
                    cfg[table] = {k: v for k, v in {**cfg.get(table, {}), **values}.items() if v is not None}
                else:
                    cfg[table] = values
            b = make_bundle(bed.site.include.parent.parent / f"bad-{i}", cfg)
            env = {"DEPLOYMENT_ID": f"d-bad-{i}", **env}
            run = run_hook(b, "BeforeInstall", env["DEPLOYMENT_ID"], extra_env=env, python=sys.executable)
            line = run.last_line
            prefix = "ERROR BeforeInstall: " + ("" if key.isupper() else "bluegreen.toml: ") + f"{key}: "
            if run.returncode != 2 or not line.startswith(prefix) or len(line) >= 300 or \
                    len([ln for ln in run.output.splitlines() if ln.strip()]) != 1:
                wrong.append(f"{key} {overrides or env}: exit {run.returncode}\n{run.output}")
    assert not wrong, "\n".join(wrong)
    assert_clean_load(load)
    assert bed.snapshot() == before
    assert (bed.state_dir / f"{bed.app}.json").read_bytes() == state_bytes
    assert bed.nginx.worker_pids() == workers          # never reloaded
    assert_consistent(bed, "blue", "d-good")


# -------------------------------------------------------------------------------------------- security

RECORDER = """\
import json, os, sys
sep = sys.argv.index("--")
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(sys.argv[2:sep]) + "\\n")
os.execv(sys.argv[sep + 1], sys.argv[sep + 1:])
"""


def test_real_deployment_keeps_state_private_and_config_values_out_of_any_shell(bed, tmp_path):
    """A real deployment (as root, under load): the state dir it creates is 0700 and every file in it
    0600; the nginx test/reload commands run as exact argv lists (shell syntax in an argument stays
    text); a container env value reaches Docker verbatim; the include holds only validated values."""
    marker = tmp_path / "pwned"
    payload = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", f"| touch {marker}", "$HOME \\ '\""]
    recorder, calls = tmp_path / "recorder.py", tmp_path / "calls.jsonl"
    recorder.write_text(RECORDER)
    wrap = [sys.executable, str(recorder), str(calls), *payload, "--"]
    env_value = f"$(touch {marker}) `touch {marker}`; touch {marker} && echo ${{PATH}}\n}}"
    assert not bed.state_dir.exists()
    ok(deploy(bed.bundle("v1"), "d-first"))          # creates the state dir, as root
    b = bed.bundle("v2", nginx={"test": wrap + bed.nginx.test_argv, "reload": wrap + bed.nginx.reload_argv},
                   container={"env": {"HOST": "127.0.0.1", "PAYLOAD": env_value}})
    with Load(bed.url + "/", threads=THREADS) as load:
        ok(deploy(b, "d-sec"))
    assert load.result.failed == 0 and load.result.versions_in_order == ["v1", "v2"], load.result.summary()
    assert_consistent(bed, "green", "d-sec")
    # state: 0700 dir, 0600 files (owned by root when run as root)
    assert bed.state_dir.stat().st_mode & 0o777 == 0o700
    files = sorted(p.name for p in bed.state_dir.iterdir())
    assert {f"{bed.app}.json", f"{bed.app}.lock", f"{bed.app}.toml"} <= set(files), files
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in bed.state_dir.iterdir()} == \
        {f: "0o700" if (bed.state_dir / f).is_dir() else "0o600" for f in files}   # release records: folders
    records = [r for r in bed.state_dir.glob("*.releases/**/*")]
    assert records and {oct(r.stat().st_mode & 0o777) for r in records} <= {"0o700", "0o600"}, records
    if os.geteuid() == 0:
        assert {p.stat().st_uid for p in [bed.state_dir, *bed.state_dir.iterdir()]} == {0}
    # nginx commands: run as argv, each payload argument arrived as the exact text, nothing ran it
    recorded = [json.loads(ln) for ln in calls.read_text().splitlines()]
    # BeforeInstall's test, the switch's test, the reload
    assert len(recorded) >= 3 and all(r == payload for r in recorded), recorded
    assert not marker.exists()
    # the container got the env value verbatim (Docker SDK: a dict, no shell)
    (cont,) = bed.containers("green")
    assert f"PAYLOAD={env_value}" in cont.attrs["Config"]["Env"]
    # the include holds nothing but validated values: our marker, comments, and `set $name value;` lines
    text = bed.include()
    assert text.splitlines()[0] == f"# bluegreen-hooks: app={bed.app} colour=green deployment=d-sec"
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert body == [f"set $service_url http://127.0.0.1:{bed.ports[1]};", "set $bluegreen_colour green;"], text


def test_nginx_commands_are_argv_never_a_shell(tmp_path):
    """nginx/test and nginx/reload are trusted config run exactly as argv: a string with spaces is one
    program name (not split by a shell), shell syntax in an argument is text; `sh -c` runs only when the
    operator writes it (the commands are trusted; no OTHER key can reach them — see the tests above)."""
    from bluegreen_hooks.errors import NginxError
    from bluegreen_hooks.host import nginx

    marker, out = tmp_path / "ran", tmp_path / "argv.json"
    with pytest.raises(NginxError, match="command not found"):
        nginx.run([f"touch {marker}"], "nginx config test")
    args = [f"; touch {marker}", f"$(touch {marker})", f"`touch {marker}`", "*", "~"]
    nginx.run([sys.executable, "-c", "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))",
               str(out), *args], "nginx config test")
    assert json.loads(out.read_text()) == args and not marker.exists()
    nginx.run(["sh", "-c", f"touch {marker}"], "nginx config test")    # a shell only when the operator asks
    assert marker.exists()


def _shell_uses(path: Path) -> list[str]:
    """Calls in a Python file that could hand a string to a shell."""
    import ast

    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f"{getattr(f.value, 'id', '?')}.{f.attr}" if isinstance(f, ast.Attribute) else getattr(f, "id", "?")
        where = f"{path.name}:{node.lineno} {name}"
        if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                    "asyncio.create_subprocess_shell", "eval", "exec"):
            found.append(where)
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(f"{where} shell=")
        if name.startswith("subprocess.") and node.args and \
                isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
            found.append(f"{where} with a string command")
    return found


SHELL_TRUE = "shell" + "=True"   # spelled in two parts so that a grep for it finds only real uses


def test_no_shell_anywhere_in_the_package_and_hooks(tmp_path):
    """No shell use (the shell keyword, os.system, os.popen, subprocess with a string command) in
    bluegreen_hooks/ or hooks/ (the checker itself is checked on a bad sample first)."""
    root = Path(__file__).resolve().parent.parent
    sample = tmp_path / "shell_sample.py"
    sample.write_text(f"import os, subprocess\nos.{'system'}('x')\nsubprocess.run('ls -l', {SHELL_TRUE})\n"
                      "subprocess.check_output(f'nginx {1}')\nsubprocess.run(['ls'], shell=False)\n")
    assert len(_shell_uses(sample)) == 4, _shell_uses(sample)
    files = sorted((root / "bluegreen_hooks").glob("*.py"))
    hooks = sorted(p for p in (root / "hooks").iterdir() if p.is_file())
    python_hooks = [p for p in hooks if p.read_text().startswith("#!/usr/bin/env python")]
    assert len(files) > 5 and python_hooks, (files, hooks)
    assert [u for p in files + python_hooks for u in _shell_uses(p)] == []
    for p in [*files, *hooks]:
        assert SHELL_TRUE not in p.read_text(), p
    # the shell hooks only exec the Python launcher, passing their arguments through quoted; ApplicationStop only
    # echoes its report, expanding nothing but the agent's own variables (no command, no other expansion)
    report = re.compile(r'echo "\[ApplicationStop \+0\.00s\] (?:[^"`$\\]|\$\{(?:DEPLOYMENT_ID|APPLICATION_NAME|'
                        r'DEPLOYMENT_GROUP_NAME):--\})*"')
    for p in hooks:
        if p.name == "ApplicationStop":
            lines = [ln for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            assert lines and all(report.fullmatch(ln) for ln in lines), lines
            assert not report.fullmatch('echo "[ApplicationStop +0.00s] $(id)"')   # the check itself
        elif p not in python_hooks:
            lines = [ln for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            assert lines == [f'exec python3 "$(dirname "$0")/launch" {p.name} "$@"'], (p, lines)


SLOW_TEST = """\
import os, sys, time
include, flag = sys.argv[1], sys.argv[2]
if "colour=green" in open(include).read():   # the switch's config test: hang there (until killed)
    open(flag, "w").close()
    time.sleep(120)
os.execv(sys.argv[3], sys.argv[3:])
"""


def test_sigterm_during_the_nginx_switch_restores_the_include(bed, tmp_path):
    """SIGTERM arrives while the switch runs `nginx -t` on the new include: the previous include is put
    back byte for byte (nginx was never reloaded), green is removed, in_progress cleared; the next
    deployment succeeds."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    before = bed.snapshot()
    script, flag = tmp_path / "slow_test.py", tmp_path / "testing-green"
    script.write_text(SLOW_TEST)
    b2 = bed.bundle("v2", nginx={"test": [sys.executable, str(script), str(bed.site.include), str(flag),
                                          *bed.nginx.test_argv]})
    with Load(bed.url + "/", threads=THREADS) as load:
        ok(deploy(b2, "d-term", events=("BeforeInstall",)))
        proc = start_hook(b2, "ApplicationStart", "d-term")
        try:
            wait_for(flag.exists, timeout=60, what="the switch's nginx config test to start")
            assert "colour=green" in bed.include()
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 1 and last_line(out).startswith("ERROR ApplicationStart: stopped by SIGTERM"), out
        assert bed.snapshot() == before
        assert_consistent(bed, "blue", "d-good")
        ok(deploy(bed.bundle("v3"), "d-next"))
    assert load.result.failed == 0 and load.result.versions_in_order == ["v1", "v3"], load.result.summary()
    assert_consistent(bed, "green", "d-next")


def test_sigkill_during_the_nginx_switch_then_next_deployment(bed, tmp_path):
    """SIGKILL while the switch runs `nginx -t` on the new include: nothing can put the old include back,
    so the file on disk names green while nginx still serves blue. The next deployment must go by what
    nginx serves, not by the file: blue keeps serving (0 failed) until the new version is switched in."""
    ok(deploy(bed.bundle("v1"), "d-good"))
    script, flag = tmp_path / "slow_test.py", tmp_path / "testing-green"
    script.write_text(SLOW_TEST)
    b2 = bed.bundle("v2", nginx={"test": [sys.executable, str(script), str(bed.site.include), str(flag),
                                          *bed.nginx.test_argv]})
    with Load(bed.url + "/", threads=THREADS) as load:
        ok(deploy(b2, "d-killed", events=("BeforeInstall",)))
        proc = start_hook(b2, "ApplicationStart", "d-killed")
        try:
            wait_for(flag.exists, timeout=60, what="the switch's nginx config test to start")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert "colour=green" in bed.include()                       # the interrupted switch's file...
        assert get(bed.url + "/")[2].get("X-Bluegreen-Colour") == "blue"   # ...but nginx serves blue
        runs = ok(deploy(bed.bundle("v3"), "d-next"))
    r = load.result
    assert r.failed == 0 and r.versions_in_order == ["v1", "v3"], r.summary()
    before = next(x for x in runs if x.event == "BeforeInstall").output
    assert "took over from stale deployment d-killed" in before, before
    assert "nginx serves blue but" in before and "include rewritten for blue" in before, before
    assert "target colour: green" in before
    assert_consistent(bed, "green", "d-next")


def test_validate_service_stopped_while_draining_then_next_deployment_still_drains(bed):
    """ValidateService gets SIGTERM while requests to the old colour are in flight (held until the next
    deployment claims the app): the next deployment's BeforeInstall waits for those nginx workers before
    removing the old colour."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    b2 = bed.bundle("v2")
    ok(deploy(b2, "d-2", events=("BeforeInstall",)))
    slow = HeldRequests(bed, n=3)
    ok(deploy(b2, "d-2", events=("ApplicationStart",)))          # green live; the held requests stay on blue
    env = hook_env("d-2")
    env["PATH"] = str(Path(sys.executable).parent) + ":" + env["PATH"]
    proc = subprocess.Popen([str(b2 / "hooks" / "ValidateService")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    wait_for(lambda: (bed.state().get("in_progress") or {}).get("event") == "ValidateService",
             what="ValidateService to claim the deployment")
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "SIGTERM" in out.splitlines()[-1], out
    assert bed.running_colours() == ["blue", "green"]             # stopped before it removed blue

    def release_once_claimed():   # the requests end while d-3's BeforeInstall runs (it drains them)
        wait_for(lambda: (bed.state().get("in_progress") or {}).get("id") == "d-3", timeout=120,
                 what="d-3's BeforeInstall to claim the app")
        slow.release()

    releaser = threading.Thread(target=release_once_claimed, daemon=True)
    releaser.start()
    runs = ok(deploy(bed.bundle("v3"), "d-3", events=("BeforeInstall",)))
    assert slow.join() == [(200, "v1")] * 3
    assert "nginx workers from before the last switch finished their requests to blue" in runs[0].output
