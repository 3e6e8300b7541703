"""Benchmark: rollback time per backend with the old colour stopped, compose deploy time, disk use.

    .venv/bin/python bench/releases.py [--deploys 10]

Compose: a 3-service stack (per-colour files, `up --build` each deploy, keep_images 2) deployed
``--deploys`` times under load (3 threads on /, 2 on /api/), then `rollback` (old stack stopped) and a
second rollback forward. Docker backend: two deploys of the example app, then `rollback`. Printed: deploy
seconds (median/max), rollback seconds, failed requests, and the disk used by the app's images and
release records after the deploys.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed import dockerd, images
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.compose import add_site, remove_projects, write_per_colour
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port


def hooks(bundle: Path, deployment_id: str) -> float:
    """The four hooks of ``bundle``, as the agent runs them (testbed.bundle.deploy); seconds in all."""
    runs = deploy(bundle, deployment_id)
    if runs[-1].returncode:
        raise SystemExit(f"{runs[-1].event} of {deployment_id} failed:\n{runs[-1].output}")
    return sum(r.seconds for r in runs)


VERBOSE = False


def rollback(state_dir: Path) -> tuple[float, float]:
    """(seconds until the old release serves, seconds of the whole rollback) of one `rollback --json`."""
    proc = subprocess.run([sys.executable, "-m", "bluegreen_hooks", "rollback", "--json", "--state-dir",
                           str(state_dir)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"rollback failed: {proc.stderr}")
    if VERBOSE:
        print(proc.stderr, end="")
    out = json.loads(proc.stdout)
    return float(out["live_after"]), float(out["seconds"])


def disk(client, app: str, repo: str, state_dir: Path) -> tuple[int, int, float]:
    """(images, distinct layers' size in MB is approximated by image sizes, state dir KB)."""
    imgs = {i["Id"]: i for i in client.api.images()   # the list call: no inspect per image
            if any(t.startswith((f"bluegreen-{app}", repo)) for t in i.get("RepoTags") or [])}
    size = sum(i.get("Size", 0) for i in imgs.values())
    state = sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())
    return len(imgs), size, state / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=10)
    ap.add_argument("--verbose", action="store_true", help="print each rollback's progress lines")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    images.ensure_base_image(client)
    work = Path(tempfile.mkdtemp(prefix="bluegreen-bench-releases-"))
    server = Nginx(work / "nginx").start()
    app = f"benchr{uuid.uuid4().hex[:6]}"
    repo = f"bgc-{app}"
    ports = {s: (free_port(), free_port()) for s in ("web", "api", "worker")}
    site = add_site(server, app, work / "backend-url.inc")
    state_dir = work / "state"

    def bundle(i: int) -> Path:
        cfg = bed_config(app, server, site, ports["web"], state_dir)
        del cfg["container"]
        cfg["compose"] = {"files": {"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"},
                          "build": True, "routed": ["web", "api"], "stop_grace_period": 3,
                          "routes": {"api": {"blue": ports["api"][0], "green": ports["api"][1]}}}
        dest = make_bundle(work / f"b{i}", cfg)
        write_per_colour(dest, f"{repo}:v{i}", f"v{i}", ports)
        return dest

    try:
        secs = [hooks(bundle(1), "d-1")]   # the first deployment before the load (nothing serves before it)
        with Load(site.url + "/", threads=3) as web, Load(site.url + "/api/", threads=2) as api:
            secs += [hooks(bundle(i), f"d-{i}") for i in range(2, args.deploys + 1)]
            n, size, state_kb = disk(client, app, repo, state_dir)
            back = rollback(state_dir)
            forward = rollback(state_dir)
        d_secs = docker_rollback(client, server, work)
    finally:
        remove_projects(client, app, repo)
        server.stop()
        daemon.stop()
    print(f"compose (3 services, up --build each deploy): {args.deploys} deploys, "
          f"median {statistics.median(secs):.2f}s, max {max(secs):.2f}s")
    print(f"compose rollback (old stack stopped): old release serving after {back[0]:.2f}s, done (drained, other "
          f"stack stopped) after {back[1]:.2f}s; forward again: {forward[0]:.2f}s / {forward[1]:.2f}s")
    print(f"docker rollback (old container stopped): serving after {d_secs[0]:.2f}s, done after {d_secs[1]:.2f}s")
    print(f"after {args.deploys} deploys: {n} image(s) of the app, {size / 1e6:.1f} MB; state dir {state_kb:.0f} KB")
    for name, load in (("/", web), ("/api/", api)):
        print(f"load {name:<6} {load.result.summary()}")
    return 0 if web.result.failed == 0 and api.result.failed == 0 else 1


def docker_rollback(client, server, work: Path) -> tuple[float, float]:
    app = f"benchd{uuid.uuid4().hex[:6]}"
    site = server.add_site(app, work / f"{app}.inc")
    ports = (free_port(), free_port())
    state_dir = work / f"{app}-state"
    try:
        for i in (1, 2):
            hooks(make_bundle(work / f"{app}-b{i}", bed_config(app, server, site, ports, state_dir, f"v{i}")), f"d-{i}")
        return rollback(state_dir)
    finally:
        for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"bluegreen.app={app}"}):
            c.remove(force=True)
        server.remove_site(site)


if __name__ == "__main__":
    sys.exit(main())
