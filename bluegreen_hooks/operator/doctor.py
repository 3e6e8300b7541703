"""``doctor``: check the host, one OK/WARN/FAIL line per check. Changes nothing.

Python, Docker, compose, the app's config, the nginx binary and its config test, nginx running, the
include writable, the state directory and file, each colour's port (free, or held by whom), disk space.
Each check is a function returning ``(level, detail)``; a check that raises is a FAIL with its reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

from bluegreen_hooks import runtime
from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.host import include_guard, nginx, procfs
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import COLOURS, Colour
from bluegreen_hooks.operator import doctor_host
from bluegreen_hooks.operator.text import first_line
from bluegreen_hooks.runtime.base import RunningMap
from bluegreen_hooks.runtime.sdk import connect

DISK_FAIL_BYTES = 1 << 30        # FAIL below 1 GiB free
DISK_WARN_BYTES = 5 << 30        # WARN below 5 GiB free


def _reason(exc: Exception) -> str:
    """How a check that raised is reported: our errors by their message, others with their type."""
    if isinstance(exc, HookError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


class Checks:
    """Collects doctor lines: level is "ok", "warn" or "fail"."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, name: str, level: str, detail: str) -> None:
        self.items.append({"name": name, "level": level, "detail": detail})

    def run(self, name: str, fn: Callable[[], tuple[str, str]]) -> None:
        try:
            level, detail = fn()
        except Exception as exc:
            level, detail = "fail", _reason(exc)
        self.add(name, level, detail)

    @property
    def failed(self) -> bool:
        return any(i["level"] == "fail" for i in self.items)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def _existing_parent(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


# ------------------------------------------------------------------------------------ the host, no config

def check_python() -> tuple[str, str]:
    v = sys.version_info
    return ("ok" if v >= (3, 9) else "fail",
            f"Python {v.major}.{v.minor}.{v.micro} at {sys.executable}" + ("" if v >= (3, 9) else "; needs 3.9+"))


def connect_docker(checks: Checks) -> Any | None:
    """Run the "docker" check; the client when Docker could be connected to (close it after use)."""
    try:
        client = connect(timeout=15)
    except Exception as exc:
        hint = "" if os.geteuid() == 0 else (f"; is {doctor_host.user_name()} in the Docker socket's group? "
                                             f"(bluegreen-hooks setup-host --user {doctor_host.user_name()})")
        checks.add("docker", "fail", _reason(exc) + hint)
        return None

    def version() -> tuple[str, str]:
        ver = client.version()
        return "ok", f"Docker {ver.get('Version', '?')} (API {ver.get('ApiVersion', '?')}) reachable"
    checks.run("docker", version)
    return client


def check_compose() -> tuple[str, str]:
    """The compose command the hooks would use, run with the environment they give it (compose_exec)."""
    from bluegreen_hooks.runtime.compose_exec import child_env

    for argv in (["docker", "compose", "version", "--short"], ["docker-compose", "version", "--short"]):
        env = child_env({}, argv[0])
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if p.returncode == 0:
            ours = env.get("SETUPTOOLS_USE_DISTUTILS") != os.environ.get("SETUPTOOLS_USE_DISTUTILS")
            fast = " (runs with SETUPTOOLS_USE_DISTUTILS=stdlib: no pkg_resources at start)" if ours else ""
            return "ok", f"{' '.join(argv[:-2])} {p.stdout.strip()}{fast}"
    return "warn", "neither `docker compose` nor `docker-compose` works (needed only for apps with a [compose] table)"


def require_compose(checks: Checks, cfg: Config) -> None:
    """An app with a [compose] table needs compose: its WARN becomes a FAIL."""
    for item in checks.items:
        if item["name"] == "compose" and item["level"] == "warn":
            item["level"] = "fail"
            item["detail"] += f"; {cfg.app} has a [compose] table"


def check_nginx_on_path() -> tuple[str, str]:
    found = shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin:/sbin"))
    return ("ok", found) if found else ("fail", "nginx not found on PATH; install nginx")


# ------------------------------------------------------------------------------------- the app's config

def check_nginx_binary(cfg: Config) -> tuple[str, str]:
    from bluegreen_hooks.operator.setup_host import without_sudo

    exe = (without_sudo(cfg.nginx.test) or cfg.nginx.test)[0]
    found = shutil.which(exe)
    if not found:
        return "fail", f"{exe} not found (nginx/test is {' '.join(cfg.nginx.test)}); install nginx"
    p = subprocess.run([found, "-v"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)\
        if os.path.basename(found).startswith("nginx") else None
    version = (p.stderr or p.stdout).strip() if p is not None else ""
    return "ok", f"{found}" + (f" ({version})" if version else "")


def check_nginx_config(cfg: Config) -> tuple[str, str]:
    nginx.test_config(cfg)
    return "ok", f"`{' '.join(cfg.nginx.test)}` passes"


def check_nginx_running(cfg: Config) -> tuple[str, str]:
    return "ok", f"master pid {nginx.check_running(cfg)} ({cfg.nginx.pid_file})"


def check_include_writable(cfg: Config) -> tuple[str, str]:
    inc = cfg.nginx.include
    if not inc.parent.is_dir():
        return "fail", f"folder {inc.parent} of nginx/include does not exist"
    if inc.exists() and not os.access(inc, os.W_OK):
        return "fail", f"{inc} is not writable by uid {os.getuid()} (setup-host makes the deploy user its owner)"
    if not os.access(inc.parent, os.W_OK | os.X_OK):
        if inc.exists():
            return "ok", f"{inc} writable (rewritten in place: {inc.parent} is not writable)"
        return "fail", f"{inc} does not exist and {inc.parent} is not writable (setup-host creates it)"
    include_guard.check(cfg)   # a file that is not an include of ours: FAIL naming nginx/include
    return "ok", f"{inc} writable" + ("" if inc.exists() else " (does not exist yet: created at the first deployment)")


def check_state_dir(cfg: Config) -> tuple[str, str]:
    d = cfg.state_dir
    if not d.exists():
        parent = _existing_parent(d)
        if os.access(parent, os.W_OK | os.X_OK):
            return "warn", f"{d} does not exist yet (created at the first deployment in {parent})"
        return "fail", f"{d} does not exist and {parent} is not writable"
    if not d.is_dir():
        return "fail", f"{d} is not a folder"
    st = d.stat()
    mode = st.st_mode & 0o7777
    if not os.access(d, os.W_OK | os.X_OK):
        return "fail", f"{d} (mode {mode:o}) is not writable by uid {os.getuid()}"
    Store(d, cfg.app).check()   # another owner, group/world-writable, symlinked files: FAIL (host/trust.py)
    return "ok", f"{d} mode {mode:o}, owner uid {st.st_uid}, writable"


def check_state_file(cfg: Config) -> tuple[str, str]:
    store = Store(cfg.state_dir, cfg.app, cfg.history)
    path = store.path
    read = store.read(quarantine=False)   # refuses an untrusted file; leaves a bad one in place
    if read.problem == "missing":
        return "ok", f"{path} does not exist yet (nothing deployed)"
    if read.problem is not None:
        return "fail", (f"{path} is not a valid state file for {cfg.app} ({read.why}); "
                        f"the next deployment rebuilds it")
    return "ok", f"{path}: live {read.state.live or 'none'}"


def check_worker_shutdown(cfg: Config) -> tuple[str, str]:
    """WARN when nginx's worker_shutdown_timeout is unset and a deployment had to close long-lived connections:
    old nginx workers then live as long as their streams (a stream to elsewhere keeps one for ever)."""
    from bluegreen_hooks.host import nginx_effective

    value = nginx_effective.main_directive(cfg, "worker_shutdown_timeout")
    if isinstance(value, list):
        return "ok", f"worker_shutdown_timeout {' '.join(value)}"
    seen = Store(cfg.state_dir, cfg.app, cfg.history).read(quarantine=False).state.long_lived
    if isinstance(value, str):
        return ("warn" if seen else "ok"), f"worker_shutdown_timeout unknown ({value})"
    if seen:
        return "warn", (f"worker_shutdown_timeout is unset and deployment {seen.get('deployment')} closed "
                        f"{seen.get('open')} long-lived connection(s): old nginx worker generations live as long "
                        f"as their streams; set e.g. `worker_shutdown_timeout 60s;` in nginx.conf (main context)")
    return "ok", "worker_shutdown_timeout unset (no long-lived connections seen by a deployment)"


def running_colours(cfg: Config, client: Any | None) -> RunningMap:
    """The app's running container per colour, or nothing when Docker cannot say."""
    if client is None:
        return {}
    try:
        return runtime.backend(cfg, client).running()
    except Exception:
        return {}


def check_port(cfg: Config, colour: Colour, running: RunningMap) -> tuple[str, str]:
    """The colour's port is free, or held by this app's container of that colour (and it listens)."""
    port = cfg.port(colour)
    inodes = procfs.listening_inodes(port)
    owners = procfs.holders(port) if inodes else []
    who = ", ".join(f"pid {p} ({c})" for p, c in owners) or "a process this user cannot see"
    mine = running.get(colour)
    if not inodes:
        if mine:
            return "fail", f"port {port} free, but container {mine.name} runs as {colour}: it does not listen"
        return "ok", f"port {port} free"
    if mine:
        return "ok", f"port {port} held by container {mine.name} (deployment {mine.deployment}; {who})"
    return "fail", (f"port {port} held by {who}, not a {cfg.app} container: starting {colour} would fail; "
                    f"stop it or change colours/{colour}")


def check_disk(cfg: Config, client: Any | None) -> tuple[str, str]:
    """Free space for the state dir and Docker's root dir: FAIL below 1 GiB, WARN below 5 GiB."""
    places = {"state dir": _existing_parent(cfg.state_dir)}
    if client is not None:
        try:
            root = client.info().get("DockerRootDir")
            if root and Path(root).exists():
                places["Docker root"] = Path(root)
        except Exception:
            pass
    level, parts = "ok", []
    for what, p in places.items():
        free = shutil.disk_usage(p).free
        parts.append(f"{what} {p}: {_gib(free)} free")
        if free < DISK_FAIL_BYTES:
            level = "fail"
        elif free < DISK_WARN_BYTES and level == "ok":
            level = "warn"
    return level, "; ".join(parts)


def check_app(checks: Checks, cfg: Config, client: Any | None) -> None:
    """The checks that need the app's config: nginx, include, state, ports, disk."""
    checks.run("nginx binary", partial(check_nginx_binary, cfg))
    checks.run("nginx config", partial(check_nginx_config, cfg))
    checks.run("nginx running", partial(check_nginx_running, cfg))
    checks.run("include writable", partial(check_include_writable, cfg))
    checks.run("nginx routing", partial(doctor_host.check_nginx_routing, cfg))
    checks.run("verification", partial(doctor_host.check_verification, cfg))
    checks.run("venv root", partial(doctor_host.check_venv_root, cfg))
    checks.run("sudo", partial(doctor_host.check_sudo, cfg))
    checks.run("state dir", partial(check_state_dir, cfg))
    checks.run("state file", partial(check_state_file, cfg))
    checks.run("worker shutdown", partial(check_worker_shutdown, cfg))
    running = running_colours(cfg, client)
    for colour in COLOURS:
        checks.run(f"port {colour}", partial(check_port, cfg, colour, running))
    checks.run("disk space", partial(check_disk, cfg, client))


# ------------------------------------------------------------------------------------------------- doctor

def doctor(cfg: Config | None, config_error: str | None = None) -> Checks:
    """Check the host for the app ``cfg`` describes; ``cfg`` is None when no config was found
    (``config_error`` says why), and then only Python, Docker, compose and the nginx binary are checked."""
    checks = Checks()
    checks.run("python", check_python)
    client = connect_docker(checks)
    try:
        checks.run("compose", check_compose)
        if cfg is None:
            checks.add("config", "fail", config_error or "no config found")
            checks.run("nginx binary", check_nginx_on_path)
            return checks
        checks.add("config", "ok", f"{cfg.path} (app {cfg.app})")
        if cfg.compose is not None:
            require_compose(checks, cfg)
        check_app(checks, cfg, client)
        return checks
    finally:
        if client is not None:
            client.close()


def print_checks(checks: Checks) -> None:
    """One line per check, then the verdict."""
    for i in checks.items:
        print(f"{i['level'].upper():<4} {i['name']:<17} {i['detail']}")
    print("FAILED: fix the FAIL lines above" if checks.failed else "all checks passed")
