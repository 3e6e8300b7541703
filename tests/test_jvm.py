"""The JVM stack: three embedded-Tomcat servers per colour (OpenJDK 17 + Tomcat 10 from Debian, testbed/jvm.py),
per-colour compose files like the seed's (web and api routed, worker with a Docker HEALTHCHECK), real Docker,
docker-compose, nginx, under load. JVMs start in seconds, not milliseconds, and three start at once on 2 shared
cores while the live colour serves: the health deadline is 240 s (the hooks' own timeout, 300 s, is above it).

Two Docker tests (marked ``jvm``), 2.5 min together on a quiet 2-core VM, 4.3 under a load average of 20 (the
base image, when missing, adds 1.5 min once: testbed.jvm); three quick ones check the test bed's pieces.
"""
from __future__ import annotations

import re
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from testbed import jvm
from testbed.bundle import deploy, make_bundle, merge
from testbed.load import Load
from tests.helpers import IN_CI, ComposeStack, get, ok

jvm_stack = pytest.mark.jvm


@pytest.fixture(scope="session")
def jvm_base(docker_client):
    """The JVM base image (built on first use, ~1.5 min) and the app's jar; skipped without the tools, except in CI."""
    try:
        return jvm.ensure(docker_client)
    except RuntimeError as exc:
        if IN_CI:
            pytest.fail(f"CI must build the JVM test bed: {exc}")
        pytest.skip(str(exc))


class JvmStack(ComposeStack):
    """A ComposeStack whose bundles carry the JVM app and its per-colour compose files."""

    base = ""

    def bundle(self, version: str, deadline: float = 240, **knobs) -> Path:
        cfg = merge(self.config(), jvm.compose_config(self.ports, deadline))
        dest = make_bundle(self.tmp / f"bundle-{version}-{uuid.uuid4().hex[:6]}", cfg, app_dir=jvm.APP_DIR)
        jvm.write_per_colour(dest, f"{self.image}:{version}", version, self.ports, self.base, **knobs)
        return dest


@pytest.fixture
def jstack(docker_client, nginx, app_name, tmp_path, compose_cmd, jvm_base):
    s = JvmStack(app_name, docker_client, nginx, tmp_path, compose_cmd)
    s.base = jvm_base
    yield s
    s.remove()


class InFlight:
    """``n`` clients that each keep one /slow?2 request in flight (a request Tomcat is serving at the switch)."""

    def __init__(self, url: str, n: int = 2) -> None:
        self.url, self.answers, self.failed = url + "/slow?2", [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body, _ = get(self.url, timeout=30)
                (self.answers if status == 200 else self.failed).append(f"{status} {body.strip()}")
            except Exception as exc:   # counted: a failed request
                self.failed.append(repr(exc))

    def __enter__(self) -> InFlight:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(40)


@jvm_stack
def test_three_jvm_deployments_under_load_with_zero_failed_requests(jstack):
    """v1, then v2, v3, v4 under load (/ and /api/ back to back, 2 requests of 2 s always in flight): each goes to
    the other colour once its three JVMs answer /actuator/health; 0 failed requests, versions in order."""
    ok(deploy(jstack.bundle("v1"), "d-j1"))
    assert jstack.services("blue") == ["api", "web", "worker"]
    assert get(jstack.url + "/")[1].strip() == "v1" and get(jstack.url + "/api/")[1].strip() == "api-v1"
    status, body, _ = get(f"http://127.0.0.1:{jstack.ports['web'][0]}/actuator/health")
    assert (status, body) == (200, '{"status":"UP"}')
    with Load(jstack.url + "/", threads=3) as web, Load(jstack.url + "/api/", threads=1) as api, \
            InFlight(jstack.url) as slow:
        for i in (2, 3, 4):
            ok(deploy(jstack.bundle(f"v{i}"), f"d-j{i}"))
    for load, versions in ((web, ["v1", "v2", "v3", "v4"]), (api, ["api-v1", "api-v2", "api-v3", "api-v4"])):
        r = load.result
        assert r.failed == 0, r.summary()
        assert r.versions_in_order == versions, r.summary()
    assert slow.failed == [] and len(slow.answers) >= 3, (slow.failed, slow.answers)
    st = jstack.state()
    assert (st["live"], st["live_deployment"]) == ("green", "d-j4")
    assert [d["outcome"] for d in st["deployments"]] == ["succeeded"] * 4
    assert jstack.services("green") == ["api", "web", "worker"] and jstack.services("blue") == []
    assert jstack.networks() == jstack.networks_before


@jvm_stack
def test_jvm_versions_that_fail_health_or_are_oom_killed_leave_the_live_colour_serving(jstack):
    """Under load: v2 starts but /actuator/health answers 503 (deadline 30 s): no switch; v3's web JVM holds
    200 MiB in a 128 MiB container, the kernel OOM-kills it at start: the deployment fails at once, no switch;
    both new stacks removed, blue untouched, 0 failed requests. Then v4 deploys as usual."""
    ok(deploy(jstack.bundle("v1"), "d-f1"))
    before = (jstack.include(), sorted((c.id, c.status) for c in jstack.project("blue")))
    with Load(jstack.url + "/", threads=3) as load, InFlight(jstack.url) as slow:
        runs = deploy(jstack.bundle("v2", deadline=30, unhealthy=True), "d-f2")
        unhealthy = runs[-1]
        assert_kept(jstack, before)
        runs = deploy(jstack.bundle("v3", alloc_mb=200, mem_limit="128m"), "d-f3")
        oom = runs[-1]
        assert_kept(jstack, before)
        ok(deploy(jstack.bundle("v4"), "d-f4"))
    assert unhealthy.event == "ApplicationStart" and unhealthy.returncode != 0, unhealthy.output
    assert unhealthy.last_line.startswith("ERROR ApplicationStart: green not healthy after"), unhealthy.output
    assert f"HTTP 503 from 127.0.0.1:{jstack.ports['web'][1]}/actuator/health" in unhealthy.last_line
    assert "blue keeps serving" in unhealthy.last_line, unhealthy.output
    assert oom.event == "ApplicationStart" and oom.returncode != 0, oom.output
    assert (f"green ({jstack.app}-green_web_1): container exited with code 137 before it got healthy"
            in oom.last_line), oom.output
    assert "blue keeps serving" in oom.last_line, oom.output
    r = load.result
    assert r.failed == 0 and r.versions_in_order == ["v1", "v4"], r.summary()
    assert slow.failed == [] and len(slow.answers) >= 3, (slow.failed, slow.answers)
    st = jstack.state()
    assert [d["outcome"] for d in st["deployments"]] == ["succeeded", "failed", "failed", "succeeded"]
    assert (st["live"], st["live_deployment"]) == ("green", "d-f4")


def assert_kept(jstack, before) -> None:
    """The failed deployment removed the new stack and left the live one as it was."""
    assert jstack.project("green") == []
    assert (jstack.include(), sorted((c.id, c.status) for c in jstack.project("blue"))) == before
    assert jstack.state()["live"] == "blue" and get(jstack.url + "/")[1].strip() == "v1"


def test_the_base_image_is_found_in_apt_sources_and_keyed_by_its_recipe(tmp_path, monkeypatch):
    """The mirror comes from apt's one-line or deb822 sources (the bookworm entry, not security or another
    repository); the tag's key changes with the mirror and the package list; no source: one clear error."""
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert jvm.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert jvm.debian_mirror(tmp_path) == "http://other.example/debian"   # sources.list is read first
    assert jvm.base_key("http://a/debian") != jvm.base_key("http://b/debian")
    key = jvm.base_key("http://a/debian")
    monkeypatch.setattr(jvm, "PACKAGES", (*jvm.PACKAGES, "curl"))
    assert jvm.base_key("http://a/debian") != key
    (tmp_path / "sources.list").write_text("deb http://x.example/ubuntu jammy main\n")
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    with pytest.raises(RuntimeError, match="no apt source for Debian bookworm"):
        jvm.debian_mirror(tmp_path)


def test_the_image_classpath_is_the_one_the_jar_is_compiled_against():
    """The Dockerfile's CLASSPATH names exactly testbed.jvm's Tomcat jars (after the app's jar)."""
    dockerfile = (jvm.APP_DIR / "Dockerfile").read_text()
    m = re.search(r"CLASSPATH=(\S+)", dockerfile)
    assert m and m.group(1) == "/app/app.jar:" + jvm.CLASSPATH


def test_the_jvm_compose_files_are_valid_and_differ_only_in_ports(tmp_path, compose_cmd):
    """docker-compose accepts both colours' files with every knob set; blue and green differ only in ports."""
    ports = {"web": (18081, 18082), "api": (18091, 18092), "worker": (18101, 18102)}
    jvm.write_per_colour(tmp_path, "bgc-x:v2", "v2", ports, "bluegreen-base:jvm-x", start_delay=20, unhealthy=True,
                         alloc_mb=200, mem_limit="128m")
    (tmp_path / "app").mkdir()
    texts = {}
    for colour in ("blue", "green"):
        f = tmp_path / f"docker-compose.{colour}.yml"
        proc = subprocess.run([*compose_cmd, "-f", str(f), "config"], capture_output=True, text=True, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "BLUEGREEN_DEPLOYMENT": "d"})
        assert proc.returncode == 0, proc.stderr
        texts[colour] = f.read_text()
    blue = texts["blue"]
    for b, g in ports.values():
        blue = blue.replace(str(b), str(g))
    assert blue == texts["green"]
    assert 'START_DELAY: "20"' in texts["blue"] and 'UNHEALTHY: "1"' in texts["blue"]
    assert "mem_limit: 128m" in texts["blue"] and 'ALLOC_MB: "200"' in texts["blue"]
