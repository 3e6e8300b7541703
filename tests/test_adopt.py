"""Adopting a deploy.sh host as it is, through the REAL CodeDeploy agent, with a real non-root deploy user.

The host is built like the classic single-host blue/green setup: an nginx server block with
``include <conf.d>/*.inc;`` and ``location / { proxy_pass $service_url; }`` (no colour header), the legacy
``backend-url.inc`` pointing at blue, per-colour compose files, the blue stack started by a deploy.sh
equivalent. The appspec has ``files:``, ``permissions:`` and ``runas:`` a user this test creates (in the
Docker socket's group via setup-host). nginx runs as root from the test's prefix; the user reaches it only
through the sudoers drop-in setup-host writes. Three deployments under load: 0 failed requests, nginx's
files unchanged.
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

from bluegreen_hooks.delivery.wheels import requirements_txt, runtime_wheels, wheel_cache
from testbed.bundle import ROOT, make_bundle
from testbed.compose import remove_projects, write_per_colour
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port
from tests.helpers import IN_CI, get, wait_for

pytestmark = pytest.mark.agent

SITE = """\
server {{
    listen 127.0.0.1:{port};
    include {conf_d}/*.inc;
    location / {{
        proxy_pass $service_url;
    }}
}}
"""
STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EVENTS = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")


def appspec(base: Path, user: str) -> str:
    hooks = "".join(f"  {e}:\n    - location: hooks/{e}\n      timeout: 600\n      runas: {user}\n" for e in EVENTS)
    return (f"version: 0.0\nos: linux\nfiles:\n  - source: app\n    destination: {base}/srv/app\n"
            f"permissions:\n  - object: {base}/srv\n    owner: {user}\n    group: {user}\n    mode: 750\n"
            f"    type:\n      - directory\n  - object: {base}/srv/app\n    pattern: \"*.sh\"\n    owner: {user}\n"
            f"    mode: 740\n    type:\n      - file\nhooks:\n{hooks}")


class Host:
    """The adopted host: its nginx, include folder, deploy user, ports and bundle factory."""

    def __init__(self, base: Path, client) -> None:
        self.base, self.client = base, client
        self.app = f"a{uuid.uuid4().hex[:7]}"
        self.user = f"bgh{uuid.uuid4().hex[:6]}"
        self.ports = {s: (free_port(), free_port()) for s in ("web", "api", "worker")}
        self.conf_d = base / "etc-nginx" / "conf.d"
        self.include = self.conf_d / "backend-url.inc"
        self.nginx = Nginx(base / "nginx")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BLUEGREEN_", "VIRTUAL"))},
                    "PATH": STD_PATH, "BLUEGREEN_VENV_ROOT": str(base / "venvs")}
        self.image = f"bgc-{self.app}"

    def config(self) -> dict:
        n = self.nginx
        return {"app": self.app, "colours": {"blue": self.ports["web"][0], "green": self.ports["web"][1]},
                "health": {"deadline": 120, "interval": 0.1, "max_interval": 0.25},
                "nginx": {"include": str(self.include), "public_url": self.site.url, "pid_file": str(n.pid_file),
                          "test": ["sudo", "-n", *n.test_argv], "reload": ["sudo", "-n", *n.reload_argv]},
                "deploy": {"state_dir": str(self.base / "state"), "drain_timeout": 30},
                "compose": {"files": {"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"},
                            "build": True, "routed": ["web"], "stop_grace_period": 3}}

    def bundle(self, version: str) -> Path:
        dest = make_bundle(self.base / f"bundle-{version}", self.config())
        write_per_colour(dest, f"{self.image}:{version}", version, self.ports)
        (dest / "appspec.yml").write_text(appspec(self.base, self.user))
        wheels = dest / "wheels"
        wheels.mkdir()
        found = []
        for path, marker in runtime_wheels(wheel_cache()):
            shutil.copy2(path, wheels / path.name)
            found.append((path.name, path.read_bytes(), marker))
        (wheels / "requirements.txt").write_text(requirements_txt(found))
        return dest

    def as_user(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = " ".join(argv)
        env = {**self.env, "PYTHONPATH": str(ROOT)}
        return subprocess.run(["su", self.user, "-c", cmd], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd="/")

    def bluegreen(self, *args: str) -> subprocess.CompletedProcess:
        env = {**self.env, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "bluegreen_hooks", *args], env=env, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)

    def agent(self, bundle: Path, did: str) -> tuple[subprocess.CompletedProcess, float]:
        root = self.base / "agent"
        env = {**self.env, "CODEDEPLOY_LOCAL_ROOT": str(root), "CODEDEPLOY_LOCAL_DEPLOYMENT_ID": did}
        argv = [os.environ["CODEDEPLOY_LOCAL"], "-l", str(bundle), "-t", "directory", "-a", self.app,
                "-d", "adopt", "-g", f"grp-{self.app}", "-b", "OVERWRITE"]
        t0 = time.monotonic()
        proc = subprocess.run(argv, env=env, cwd=self.base, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=900)
        return proc, time.monotonic() - t0

    def scripts_log(self, did: str) -> str:
        p = self.base / "agent" / "deployment-root" / f"grp-{self.app}" / did / "logs" / "scripts.log"
        return p.read_text() if p.exists() else ""


@pytest.fixture
def host(docker_client, compose_cmd):
    if not os.environ.get("CODEDEPLOY_LOCAL"):
        if IN_CI:
            pytest.fail("CI must run this under the real agent: set CODEDEPLOY_LOCAL")
        pytest.skip("CODEDEPLOY_LOCAL is not set")
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("sudo") or not shutil.which("visudo"):
        pytest.skip("needs root, useradd, sudo and visudo (scripts/setup installs sudo)")
    base = Path(tempfile.mkdtemp(prefix="bgh-adopt-", dir="/tmp"))
    base.chmod(0o755)   # the deploy user must reach the bundle, the include folder and the nginx pid file
    h = Host(base, docker_client)
    subprocess.run(["useradd", "-m", "-d", str(base / "home"), "-s", "/bin/sh", h.user], check=True)
    try:
        h.nginx.start()
        h.conf_d.mkdir(parents=True)
        h.site = h.nginx.add_site("shop", h.include, f"set $service_url http://127.0.0.1:{h.ports['web'][0]};\n",
                                  template=SITE.replace("{conf_d}", str(h.conf_d)))
        yield h
    finally:
        errors = []
        for step in (h.nginx.stop, lambda: remove_projects(docker_client, h.app, h.image),
                     lambda: Path(f"/etc/sudoers.d/bluegreen-hooks-{h.user}").unlink(missing_ok=True),
                     lambda: subprocess.run(["userdel", h.user], capture_output=True, check=True),
                     lambda: shutil.rmtree(base)):
            try:
                step()
            except Exception as exc:   # every cleanup step runs; the first problem is reported
                errors.append(exc)
        assert not errors, f"cleanup: {errors}"


def deploy_sh(h: Host) -> None:
    """What deploy.sh did: the blue stack up (as root), the legacy include already naming blue."""
    release = h.base / "release-v1"
    shutil.copytree(ROOT / "example" / "app", release / "app")
    write_per_colour(release, f"{h.image}:v1", "v1", h.ports)
    subprocess.run(["docker-compose", "-p", f"{h.app}-blue", "-f", "docker-compose.blue.yml", "up", "-d", "--build"],
                   cwd=release, check=True, capture_output=True, env={**os.environ, "BLUEGREEN_DEPLOYMENT": ""})
    wait_for(lambda: get(h.site.url + "/")[1].strip() == "v1", timeout=120, what="the deploy.sh stack to serve v1")


def test_a_deploy_sh_host_adopted_as_it_is_through_the_real_agent(host):
    h = host
    deploy_sh(h)
    nginx_files = {p: p.read_text() for p in (h.nginx.conf, h.site.conf)}
    v2 = h.bundle("v2")
    cfg_path = v2 / "bluegreen.toml"
    tool = h.base / "tool"   # a bluegreen-hooks the deploy user can run (the test venv lives under /root)
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(tool)], check=True, capture_output=True)
    subprocess.run([str(tool / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(wheel_cache()),
                    "docker", "tenacity", "crossplane"], check=True, capture_output=True)
    doctor = (f"{tool}/bin/python", "-m", "bluegreen_hooks", "doctor", "--config", str(cfg_path))

    before = h.as_user(*doctor)                                   # doctor names what is missing
    assert before.returncode == 1, before.stdout + before.stderr
    fails = {ln.split()[1] for ln in before.stdout.splitlines() if ln.startswith("FAIL")}
    assert {"docker", "state", "include", "venv", "sudo"} <= fails, before.stdout
    assert "setup-host --user " + h.user in before.stdout

    first = h.bluegreen("setup-host", "--user", h.user, "--config", str(cfg_path))
    assert first.returncode == 0, first.stdout + first.stderr
    print(first.stdout)
    again = h.bluegreen("setup-host", "--user", h.user, "--config", str(cfg_path))   # idempotent
    assert again.returncode == 0 and again.stdout.count("(unchanged)") == 5, again.stdout + again.stderr
    sudoers = Path(f"/etc/sudoers.d/bluegreen-hooks-{h.user}")
    assert sudoers.stat().st_mode & 0o777 == 0o440 and " -t -q" in sudoers.read_text()

    after = h.as_user(*doctor)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "all checks passed" in after.stdout
    verification = next(ln for ln in after.stdout.splitlines() if " verification " in ln)
    assert "verified by worker generation + HTTP status" in verification and "add_header X-Bluegreen-Colour" \
        in verification, verification
    print(verification)

    seconds = []
    with Load(h.site.url + "/", threads=2) as load:
        for n, version in enumerate(("v2", "v3", "v4")):
            did = f"d-ADOPT{n}{uuid.uuid4().hex[:3].upper()}"
            proc, took = h.agent(v2 if version == "v2" else h.bundle(version), did)
            log = h.scripts_log(did)
            assert proc.returncode == 0, proc.stdout + "\n--- scripts.log\n" + log
            assert "verified by worker generation + HTTP 200" in log, log
            seconds.append(took)
    res = load.result
    assert res.failed == 0, res.summary()
    assert res.versions_in_order == ["v1", "v2", "v3", "v4"], res.summary()
    print(f"adopted host: deployments through the agent took {', '.join(f'{s:.1f}s' for s in seconds)} "
          f"(first includes building the venv from wheels/); load {res.summary()}")

    st = json.loads((h.base / "state" / f"{h.app}.json").read_text())
    assert st["live"] == "green" and [d["outcome"] for d in st["deployments"]] == ["succeeded"] * 3
    assert {e["user"] for e in st["events"]} == {h.user}
    assert {p: p.read_text() for p in nginx_files} == nginx_files          # no nginx edit
    assert h.include.stat().st_uid != 0 and "set $service_url http://127.0.0.1:" in h.include.read_text()
    installed = h.base / "srv" / "app" / "entrypoint.sh"
    assert installed.stat().st_mode & 0o777 == 0o740 and installed.owner() == h.user   # permissions: applied
    app_dir = h.base / "srv" / "app"   # below the object only, as the agent does
    assert app_dir.stat().st_mode & 0o777 == 0o750 and app_dir.owner() == h.user

    # the operator commands run as the deploy user who owns the state dir (root refuses a state dir another user
    # owns: host/trust.py)
    def as_deployer(*args: str) -> subprocess.CompletedProcess:
        return h.as_user(f"{tool}/bin/python", "-m", "bluegreen_hooks", *args)

    full = as_deployer("status", "--state-dir", str(h.base / "state"))   # each compose service on its own line
    lines = [ln for ln in full.stdout.splitlines() if ln.startswith("green ")]
    web = next(ln for ln in lines if "_web_" in ln or "-web-" in ln)
    api = next(ln for ln in lines if "_api_" in ln or "-api-" in ln)
    assert f":{h.ports['web'][1]} (live)" in web and "HTTP 200" in web, full.stdout
    assert "(not routed)" in api and "HTTP" not in api, full.stdout
    assert len(lines) == 3 and all(f"(deployment {st['live_deployment']}," in ln for ln in lines), full.stdout
    (h.base / "state" / f"{h.app}.toml").unlink()                       # status from the state file alone
    status = as_deployer("status", "--state-dir", str(h.base / "state"))
    assert "live         green" in status.stdout and "from the state file only" in status.stdout, status.stdout
    history = as_deployer("history", "--state-dir", str(h.base / "state"), "--deployments")
    assert history.returncode == 0 and history.stdout.count("succeeded") == 3, history.stdout + history.stderr
