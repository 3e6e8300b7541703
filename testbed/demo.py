"""The README's first command: a real local blue/green deployment of the example app, twice, under load.

Starts what it needs (a Docker daemon if none answers, a private nginx on a free loopback port), makes
two revision bundles (v1, v2), runs their CodeDeploy hooks exactly as the agent would while a load
generator hammers nginx, prints each hook's output, and ends with a summary line:
``2 deploys, 41,318 requests, 0 failed``. Everything it started is stopped and removed at the end.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from testbed import dockerd, images
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=2, help="how many deployments (alternating colours)")
    ap.add_argument("--start-delay", type=int, default=0, help="seconds each new version needs to start")
    ap.add_argument("--keep", action="store_true", help="leave nginx and the containers running at the end")
    args = ap.parse_args(argv)

    import os

    work = Path(tempfile.mkdtemp(prefix="bluegreen-demo-"))
    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    images.ensure_base_image(client)
    server = Nginx(work / "nginx").start()
    app = f"demo{uuid.uuid4().hex[:6]}"
    site = server.add_site(app, work / "nginx" / "conf.d" / "backend-url.inc")
    ports = (free_port(), free_port())
    print(f"demo: app {app}; nginx on {site.url}; blue on :{ports[0]}, green on :{ports[1]}; work dir {work}")
    failed_hooks = 0
    t0 = time.monotonic()
    try:
        with Load(site.url + "/", threads=4) as load:
            for i in range(1, args.deploys + 1):
                version = f"v{i}"
                env = {"HOST": "127.0.0.1", "START_DELAY": str(args.start_delay if i > 1 else 0)}
                cfg = bed_config(app, server, site, ports, work / "state", version, container={"env": env})
                bundle = make_bundle(work / f"bundle-{version}", cfg)
                print(f"\n=== deployment d-demo{i}: {version} ===", flush=True)
                for run in deploy(bundle, f"d-demo{i}"):
                    print(run.output, end="", flush=True)
                    failed_hooks += run.returncode != 0
                if failed_hooks:
                    break
                if i == 1:   # traffic counts from the moment the first version serves
                    load.result.samples.clear()
        r = load.result
        print(f"\nrequests through nginx: {r.summary()}")
        print(f"{args.deploys} deploys in {time.monotonic() - t0:.1f}s, {r.total:,} requests, {r.failed:,} failed")
        return 1 if failed_hooks or r.failed else 0
    finally:
        if not args.keep:
            for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"bluegreen.app={app}"}):
                c.remove(force=True)
            server.stop()
            client.close()
            daemon.stop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
