"""Helpers for tests: poll with a deadline (never a bare sleep), the process-wide state put back after each test,
HTTP GET, the ``Bed`` of one app and the ``ComposeStack`` of one compose app (their fixtures are in conftest.py),
``IN_CI``."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from testbed.bundle import bed_config, hook_env, make_bundle
from testbed.compose import ONE_FILE, add_site, remove_projects, remove_site, write_per_colour
from testbed.ports import free_port

# under CI a missing service fails the test instead of skipping it: CI must never pass by skipping
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def wait_for(cond, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    """Call ``cond()`` until it returns something truthy; return that value or fail after ``timeout``."""
    end = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < end:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    last = f" (last error: {last_exc})" if last_exc else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{last}")


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM)


@contextlib.contextmanager
def process_state_restored() -> Iterator[None]:
    """Put back, on the way out, the process-wide state a test run in-process may change (the autouse fixture
    ``reset_process_state`` wraps every test in it): the SIGTERM stop flag and the no-sleep switch of
    host/wait.py (``wait.on_sigterm`` sets the flag for good: every later wait would end at once with
    Interrupted), the compose command cache, the health checks shared per Docker client, signal handlers,
    the environment, the working directory and the umask."""
    from bluegreen_hooks.host import wait
    from bluegreen_hooks.runtime import compose_exec, healthcheck

    environ, cwd = dict(os.environ), os.getcwd()
    handlers = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        yield
    finally:
        wait._stop["requested"] = False
        wait.testing(False)
        for thread in compose_exec._detecting:   # a detection started here ends here, not in the next test
            thread.join(compose_exec.VERSION_TIMEOUT)
        compose_exec._detected.clear()
        compose_exec._detecting.clear()
        compose_exec._distutils.clear()
        healthcheck._shared.clear()
        for sig, handler in handlers.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
        os.chdir(cwd)
        os.umask(umask)


def get(url: str, timeout: float = 5) -> tuple[int, str, dict]:
    """GET ``url``; return (status, body, headers). HTTP errors are returned, not raised."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class HeldRequests:
    """``n`` requests through ``bed``'s nginx to the example app's /cgi-bin/hold, started now, on ``colour`` (the
    live one): they stay in flight until ``release()`` (or ``join()``; the app ends them itself after 120 s),
    however long the hooks in between take on a busy machine, where /cgi-bin/slow?N ends after N seconds."""

    def __init__(self, bed, n: int = 3, colour: str = "blue") -> None:
        import threading

        from bluegreen_hooks.host import procfs

        self.bed, self.colour, self.name, self.results = bed, colour, uuid.uuid4().hex[:12], []
        url = f"{bed.url}/cgi-bin/hold?{self.name}"
        self.threads = [threading.Thread(target=lambda: self.results.append(get(url, 180))) for _ in range(n)]
        for t in self.threads:
            t.start()
        port = bed.ports[0 if colour == "blue" else 1]
        wait_for(lambda: procfs.connections_to(port) >= n, what=f"the {n} held requests open on {colour}")

    def running(self) -> int:
        return sum(t.is_alive() for t in self.threads)

    def release(self) -> None:
        """Let the held requests answer: the file /cgi-bin/hold waits for, made in the colour's container."""
        for c in self.bed.containers(self.colour):
            if c.status == "running":
                c.exec_run(["touch", f"/tmp/release-{self.name}"])

    def join(self) -> list[tuple[int, str]]:
        """Release, wait for the requests; their (status, body) in the order they ended."""
        self.release()
        for t in self.threads:
            t.join(180)
        return [(status, body.strip()) for status, body, _ in self.results]


class Bed:
    """One app's deployments on the shared test bed: its ports, state dir, bundles and what runs.

    ``bed.bundle("v2", nginx={"validate_path": "/missing"})`` lays out a bundle of the example app at
    that version whose bluegreen.toml points at this test's nginx site, ports and state dir.
    """

    def __init__(self, app, client, server, site, tmp_path):
        self.app, self.client, self.nginx, self.site, self.tmp = app, client, server, site, tmp_path
        self.ports = (free_port(), free_port())
        self.state_dir = tmp_path / "state"
        self.url = site.url

    def bundle(self, version="v1", name=None, **overrides):
        cfg = bed_config(self.app, self.nginx, self.site, self.ports, self.state_dir, version, **overrides)
        return make_bundle(self.tmp / (name or f"bundle-{version}-{uuid.uuid4().hex[:6]}"), cfg)

    def state(self):
        return json.loads((self.state_dir / f"{self.app}.json").read_text())

    def containers(self, colour=None):
        labels = [f"bluegreen.app={self.app}"] + ([f"bluegreen.colour={colour}"] if colour else [])
        return self.client.containers.list(all=True, ignore_removed=True, filters={"label": labels})

    def running_colours(self):
        return sorted(c.labels["bluegreen.colour"] for c in self.containers() if c.status == "running")

    def include(self):
        return self.site.include.read_text()

    def cli(self, *argv):
        """An operator command (status, rollback, maintenance ...) on this app's state dir: its exit code."""
        from bluegreen_hooks.cli import main

        return main([*argv, "--state-dir", str(self.state_dir)])

    def snapshot(self):
        """What must not change when a deployment is refused or fails: the live facts, the include, the
        containers and their statuses."""
        st = self.state()
        return {"live": {k: st[k] for k in ("live", "live_deployment", "live_image", "previous")},
                "include": self.site.include.read_bytes(),
                "containers": sorted((c.id, c.status) for c in self.containers())}

    def agent(self):
        """``run(bundle)``: one deployment of ``bundle`` by the real CodeDeploy agent (``CODEDEPLOY_LOCAL``), in a
        root of this test's; skips without the agent (fails under CI)."""
        import pytest

        agent = os.environ.get("CODEDEPLOY_LOCAL")
        if not agent:
            if IN_CI:
                pytest.fail("CI must run the agent test: set CODEDEPLOY_LOCAL")
            pytest.skip("CODEDEPLOY_LOCAL is not set")
        root = self.tmp / "agent-root"
        root.mkdir(exist_ok=True)

        def run(bundle):
            env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                       CODEDEPLOY_LOCAL_ROOT=str(root),
                       CODEDEPLOY_LOCAL_DEPLOYMENT_ID=f"d-{uuid.uuid4().hex[:9].upper()}")
            argv = [agent, "-l", str(bundle), "-t", "directory", "-a", self.app, "-d", "testbed", "-g",
                    f"g-{self.app}", "-b", "OVERWRITE"]
            return subprocess.run(argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=300)

        run.root = root
        return run


class ComposeStack:
    """An app deployed as compose stacks: ports, a two-route nginx site, bundle factories; ``remove()`` cleans up.

    ``stack.example`` (set by a test) is the example app's image for the one-file bundles.
    """

    def __init__(self, app, client, server, tmp_path, compose_cmd):
        self.app, self.client, self.nginx, self.tmp, self.compose_cmd = app, client, server, tmp_path, compose_cmd
        self.site = add_site(server, app, tmp_path / "conf.d" / "backend-url.inc")
        self.networks_before = self.networks()
        self.url = self.site.url
        self.ports = {"web": (free_port(), free_port()), "api": (free_port(), free_port()),
                      "worker": (free_port(), free_port())}
        self.state_dir = tmp_path / "state"
        self.image = f"bgc-{app}"
        self.example = None
        self.command: list[str] | None = None   # compose/command of every bundle (None: detected)
        self.version = "v1" if tuple(compose_cmd) == ("docker-compose",) else "v2"

    def config(self, **compose_table):
        if self.command:
            compose_table.setdefault("command", self.command)
        cfg = bed_config(self.app, self.nginx, self.site, self.ports["web"], self.state_dir)
        del cfg["container"]
        cfg["compose"] = {"routed": ["web", "api"],
                          "routes": {"api": {"blue": self.ports["api"][0], "green": self.ports["api"][1]}},
                          "stop_grace_period": 3, **compose_table}
        return cfg

    def per_colour_bundle(self, version, unhealthy=False, **compose_table):
        dest = make_bundle(self.tmp / f"bundle-{version}-{uuid.uuid4().hex[:6]}",
                           self.config(files={"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"},
                                       build=True, **compose_table))
        write_per_colour(dest, f"{self.image}:{version}", version, self.ports, unhealthy)
        return dest

    def one_file_bundle(self, version, ready="/tmp/ready", health=None, exit_code="", api_unhealthy=0,
                        start_delay=0, **compose_table):
        cfg = self.config(file="docker-compose.yml", env={"IMAGE": self.example, "VERSION": version,
                                                           "READY_FILE": ready, "WEB_EXIT_CODE": exit_code,
                                                           "API_UNHEALTHY": api_unhealthy,
                                                           "WEB_START_DELAY": start_delay},
                          **compose_table)
        if health:
            cfg["health"].update(health)
        dest = make_bundle(self.tmp / f"bundle-{version}-{uuid.uuid4().hex[:6]}", cfg)
        (dest / "docker-compose.yml").write_text(ONE_FILE)
        return dest

    def state(self):
        return json.loads((self.state_dir / f"{self.app}.json").read_text())

    def project(self, colour):
        label = f"com.docker.compose.project={self.app}-{colour}"
        return self.client.containers.list(all=True, ignore_removed=True, filters={"label": label})

    def services(self, colour):
        return sorted(c.labels["com.docker.compose.service"] for c in self.project(colour) if c.status == "running")

    def include(self):
        return self.site.include.read_text()

    def networks(self):
        return {n.name for n in self.client.networks.list()}

    def remove(self):
        remove_site(self.nginx, self.site)
        remove_projects(self.client, self.app, self.image)


def networks_created(client, at_start):
    """The networks (id -> name) that exist now and did not at the start (``docker_networks_at_start``)."""
    return {n.id: n.name for n in client.networks.list() if n.id not in at_start}


def ok(runs):
    """Assert that every hook run succeeded (printing all their output if not); return the runs."""
    assert runs and all(r.returncode == 0 for r in runs), \
        "\n".join(f"--- {r.event} ({r.returncode})\n{r.output}" for r in runs)
    return runs


def start_hook(bundle: Path, event: str, deployment_id: str) -> subprocess.Popen:
    """Start ``hooks/<event>`` as the agent does (own process group), without waiting for it."""
    env = hook_env(deployment_id)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return subprocess.Popen([str(bundle / "hooks" / event)], env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def last_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
