"""Make revision bundles of the example app for tests, benchmarks and the demo, and run their hooks.

A bundle is what CodeDeploy unpacks on the host: appspec.yml, hooks/, bluegreen_hooks/, the app's
build context in app/, and a bluegreen.toml pointing at the test bed's ports, nginx and state dir.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluegreen_hooks.model import EVENTS

ROOT = Path(__file__).resolve().parent.parent


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def toml_dumps(data: Mapping[str, Any]) -> str:
    """A small TOML writer for config dicts: top-level scalars, then one [table] per dict value."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def bed_config(app: str, server, site, ports: tuple[int, int], state_dir: Path, version: str = "v1",
               **overrides: Any) -> dict:
    """A bluegreen.toml (as a dict) for the example app on the test bed: host network, test nginx.

    ``server`` is the test bed's Nginx, ``site`` its server block; ``overrides`` are merged per table,
    e.g. ``nginx={"validate_path": "/missing"}``.
    """
    cfg = {
        "app": app,
        "colours": {"blue": ports[0], "green": ports[1]},
        "container": {"build": "app", "build_args": {"APP_VERSION": version}, "build_network": "host",
                      "env": {"HOST": "127.0.0.1"}, "stop_grace_period": 5},
        "health": {"deadline": 60, "interval": 0.1, "max_interval": 0.25},
        "nginx": {"include": str(site.include), "test": server.test_argv, "reload": server.reload_argv,
                  "pid_file": str(server.pid_file), "public_url": site.url},
        "deploy": {"state_dir": str(state_dir), "drain_timeout": 30},
    }
    return merge(cfg, overrides)


def make_bundle(dest: Path, config: Mapping[str, Any], app_dir: Path | None = None) -> Path:
    """Lay out a bundle in ``dest`` (replaced if it exists) with ``config`` as its bluegreen.toml."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(ROOT / "appspec.yml", dest / "appspec.yml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "hooks", dest / "hooks", ignore=ignore)
    shutil.copytree(ROOT / "bluegreen_hooks", dest / "bluegreen_hooks", ignore=ignore)
    shutil.copytree(app_dir or ROOT / "example" / "app", dest / "app", ignore=ignore)
    (dest / "bluegreen.toml").write_text(toml_dumps(config))
    return dest


@dataclass
class HookRun:
    event: str
    returncode: int
    output: str
    seconds: float

    @property
    def last_line(self) -> str:
        lines = [ln for ln in self.output.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


def hook_env(deployment_id: str, app: str = "app", extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the CodeDeploy agent gives a hook (plus the caller's, as the agent does).

    Without PYTHONDONTWRITEBYTECODE (this machine's shells set it; the agent, a systemd service, does not):
    the first hook of a bundle writes its bytecode into the bundle and the later hooks load it, as on a host."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(DEPLOYMENT_ID=deployment_id, APPLICATION_NAME=app, DEPLOYMENT_GROUP_NAME="testbed",
               DEPLOYMENT_GROUP_ID="testbed-group")
    env.update(extra or {})
    return env


def run_hook(bundle: Path, event: str, deployment_id: str, extra_env: Mapping[str, str] | None = None,
             timeout: float = 300, python: str | None = None) -> HookRun:
    """Run ``hooks/<event>`` of ``bundle`` as the agent would (own process group, stdin closed, cwd /)."""
    env = hook_env(deployment_id, extra=extra_env)
    if python:   # run the hook with this interpreter first on PATH (e.g. the test venv)
        env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
    t0 = time.monotonic()
    proc = subprocess.run([str(bundle / "hooks" / event)], env=env, cwd="/", stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          start_new_session=True)
    return HookRun(event, proc.returncode, proc.stdout, time.monotonic() - t0)


def deploy(bundle: Path, deployment_id: str, events: tuple[str, ...] = EVENTS,
           extra_env: Mapping[str, str] | None = None, stop_from: Path | None = None) -> list[HookRun]:
    """Run the lifecycle events in order, stopping at the first failure (the agent's rule).

    ``stop_from``: the bundle ApplicationStop runs from, as the agent runs it from the last successful
    revision (its bytecode already written by that revision's hooks); default ``bundle``."""
    runs = []
    for event in events:
        run = run_hook(stop_from if event == "ApplicationStop" and stop_from else bundle, event, deployment_id,
                       extra_env, python=sys.executable)
        runs.append(run)
        if run.returncode != 0:
            break
    return runs
