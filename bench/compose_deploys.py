"""Benchmark: consecutive deploys of a 3-service compose stack (2 routed) under load, on the real test bed.

    .venv/bin/python bench/compose_deploys.py [--deploys 6] [--build]

Each deploy runs the four hooks of a bundle with per-colour compose files (docker-compose 1.29.2 or
`docker compose`, host networking). Load: 3 threads on / (web) and 2 on /api/ (api) through nginx, a new
connection per request. Printed: median/max seconds per event and per deploy, the switch latency
(target healthy -> nginx verified serving it, from the state's timings), requests and failed requests
per route. With --build every deploy builds the image (`up --build`); without, the image is built once.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed import dockerd, images
from testbed.bundle import EVENTS, bed_config, make_bundle, run_hook
from testbed.compose import add_site, remove_projects, write_per_colour
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=6)
    ap.add_argument("--build", action="store_true", help="build the image at every deploy (up --build)")
    ap.add_argument("--verbose", action="store_true", help="print every hook's output")
    args = ap.parse_args()
    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    images.ensure_base_image(client)
    work = Path(tempfile.mkdtemp(prefix="bluegreen-bench-compose-"))
    server = Nginx(work / "nginx").start()
    app = f"benchc{uuid.uuid4().hex[:6]}"
    repo = f"bgc-{app}"
    ports = {s: (free_port(), free_port()) for s in ("web", "api", "worker")}
    site = add_site(server, app, work / "backend-url.inc")
    networks_before = {n.name for n in client.networks.list()}
    if not args.build:
        images.build_example(client, "shared", tag=f"{repo}:shared")

    def bundle(i: int) -> Path:
        cfg = bed_config(app, server, site, ports["web"], work / "state")
        del cfg["container"]
        cfg["compose"] = {"files": {"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"},
                          "build": args.build, "routed": ["web", "api"], "stop_grace_period": 3,
                          "routes": {"api": {"blue": ports["api"][0], "green": ports["api"][1]}}}
        dest = make_bundle(work / f"b{i}", cfg)
        write_per_colour(dest, f"{repo}:v{i}" if args.build else f"{repo}:shared", f"v{i}", ports)
        if not args.build:   # the image exists: no build section
            for colour in ("blue", "green"):
                f = dest / f"docker-compose.{colour}.yml"
                text = f.read_text()
                start = text.index("    build:")
                f.write_text(text[:start] + text[text.index("    image:"):])
        return dest

    per_event: dict[str, list[float]] = {e: [] for e in EVENTS}
    deploy_s: list[float] = []
    failures = 0

    def lifecycle(i: int, record: bool) -> None:
        nonlocal failures
        b, t0 = bundle(i), time.monotonic()
        for event in EVENTS:   # ApplicationStop from the previous bundle, as the agent runs it
            run = run_hook(work / f"b{i - 1}" if event == "ApplicationStop" and i else b, event, f"d-{i}",
                           timeout=3600, python=sys.executable)
            code, secs, out = run.returncode, run.seconds, run.output
            if record:
                per_event[event].append(secs)
            if args.verbose:
                print(out)
            if code != 0:
                print(out, file=sys.stderr)
                failures += 1
                return
        if record:
            deploy_s.append(time.monotonic() - t0)

    try:
        lifecycle(0, False)
        with Load(site.url + "/", threads=3) as web, Load(site.url + "/api/", threads=2) as api:
            for i in range(1, args.deploys + 1):
                lifecycle(i, True)
        store = json.loads((work / "state" / f"{app}.json").read_text())
        timings = [d["timings"] for d in store["deployments"][-args.deploys:] if d.get("timings")]
        networks_after = {n.name for n in client.networks.list()}
    finally:
        remove_projects(client, app, repo)
        server.stop()
        daemon.stop()
    sw = [t["healthy_to_serving_ms"] for t in timings]
    print(f"compose stack: 3 services (web, api routed; worker with HEALTHCHECK), {args.deploys} deploys, "
          f"{'up --build each time' if args.build else 'prebuilt image'}")
    print(f"deploy s (BeforeInstall..ValidateService): median {statistics.median(deploy_s):.2f}, "
          f"max {max(deploy_s):.2f}")
    print("median s per event: " + ", ".join(f"{e} {statistics.median(v):.2f}" for e, v in per_event.items() if v))
    if sw:
        print(f"switch (healthy -> verified serving through nginx): median {statistics.median(sw):.0f} ms, "
              f"max {max(sw):.0f} ms")
    for name, load in (("/", web), ("/api/", api)):
        r = load.result
        print(f"load {name:<6} {r.summary()}")
    print(f"hook failures: {failures}; docker networks created: {sorted(networks_after - networks_before) or 'none'}")
    return 0 if failures == 0 and web.result.failed == 0 and api.result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
