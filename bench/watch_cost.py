"""Benchmark: what the watch window (deploy/watch_seconds) costs a default deployment (no [canary]).

    git archive b298134 | tar -x -C /tmp/bgh-before      # the code before issue 24 (any checkout works)
    .venv/bin/python bench/watch_cost.py --before /tmp/bgh-before [--deploys 10] [--watch 5] [--threads 2]

Three variants of the same app, each on its own nginx site and ports, deployed in turn (one deployment of
each, round after round, so a change in the machine's load hits all three alike):

* ``before``: the bundle's package, hooks and appspec.yml from ``--before`` (the code before issue 24);
* ``off``: this checkout, ``watch_seconds`` unset (the default, 0: off);
* ``watch``: this checkout, ``watch_seconds = --watch``.

Each deployment runs the lifecycle as the agent does (ApplicationStop → ValidateService, ready app, the
default ``retire = "wait"``) while ``--threads`` threads send GETs through nginx (a new connection each). It
prints, per variant, the whole deployment's and each hook's seconds (median, p10-p90 or min-max below 10
runs), the difference of the medians to ``before``, the requests and failed requests, and the load average.
A failed deployment or a failed request makes it exit 1.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed import dockerd, images
from testbed.bundle import EVENTS, bed_config, make_bundle, run_hook
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port

VARIANTS = ("before", "off", "watch")




class Variant:
    def __init__(self, name: str, server: Nginx, work: Path, before: Path, watch: float) -> None:
        self.name, self.server, self.before, self.watch = name, server, before, watch
        self.app = f"wcost{name}{uuid.uuid4().hex[:4]}"
        self.dir = work / self.app
        self.site = server.add_site(self.app, self.dir / "backend-url.inc")
        self.ports = (free_port(), free_port())
        self.total: list[float] = []
        self.per_event: dict[str, list[float]] = {e: [] for e in EVENTS}
        self.failures: list[str] = []

    def bundle(self, i: int) -> Path:
        deploy = {"watch_seconds": self.watch} if self.name == "watch" else {}
        cfg = bed_config(self.app, self.server, self.site, self.ports, self.dir / "state", f"v{i}", deploy=deploy)
        b = make_bundle(self.dir / f"b{i}", cfg)
        if self.name == "before":   # the same app and config, the old code
            for part in ("bluegreen_hooks", "hooks"):
                shutil.rmtree(b / part)
                shutil.copytree(self.before / part, b / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            shutil.copy2(self.before / "appspec.yml", b / "appspec.yml")
        return b

    def deploy(self, i: int, measure: bool) -> None:
        b, d = self.bundle(i), f"d-{self.name}-{i}"
        t0 = time.monotonic()
        for event in EVENTS:
            run = run_hook(b, event, d, timeout=3600, python=sys.executable)
            code, secs, out = run.returncode, run.seconds, run.output
            if measure:
                self.per_event[event].append(secs)
            if code != 0:
                self.failures.append(f"{self.name} deployment {i}: {event} failed: {out.strip().splitlines()[-1:]}")
                print(out, file=sys.stderr)
                return
        if measure:
            self.total.append(time.monotonic() - t0)

    def remove(self, client) -> None:
        for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"bluegreen.app={self.app}"}):
            c.remove(force=True)
        self.server.remove_site(self.site)


def spread(xs: list[float]) -> str:
    if not xs:
        return "-"
    med = statistics.median(xs)
    if len(xs) >= 10:
        q = statistics.quantiles(xs, n=10)
        return f"{med:.2f} ({q[0]:.2f}-{q[-1]:.2f})"
    return f"{med:.2f} ({min(xs):.2f}-{max(xs):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="a checkout of the code before issue 24")
    ap.add_argument("--deploys", type=int, default=10, help="measured deployments per variant (default 10)")
    ap.add_argument("--watch", type=float, default=5.0, help="watch_seconds of the 'watch' variant (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="load threads per variant's site (default 2)")
    args = ap.parse_args()
    if not (args.before / "bluegreen_hooks").is_dir():
        ap.error(f"--before {args.before}: no bluegreen_hooks/ there")
    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    images.ensure_base_image(client)
    work = Path(tempfile.mkdtemp(prefix="bluegreen-watchcost-"))
    server = Nginx(work / "nginx").start()
    variants = [Variant(n, server, work, args.before, args.watch) for n in VARIANTS]
    load0 = os.getloadavg()
    try:
        for v in variants:      # the first deployment of each (nothing live yet) is not measured
            v.deploy(0, measure=False)
        loads = [Load(v.site.url + "/", threads=args.threads) for v in variants]
        for load in loads:
            load.__enter__()
        try:
            for i in range(1, args.deploys + 1):
                for v in variants:
                    v.deploy(i, measure=True)
        finally:
            for load in loads:
                load.__exit__(None, None, None)
        load1 = os.getloadavg()
        for v in variants:
            v.remove(client)
    finally:
        server.stop()
        daemon.stop()
    print(f"{args.deploys} deployments per variant, ready app, no [canary], {args.threads} load threads per site; "
          f"load average {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} at the start, "
          f"{load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f} at the end; seconds: median (p10-p90, or min-max)")
    print(f"{'variant':<8} {'deploy s':>19} {'vs before':>9} "
          + " ".join(f"{e:>19}" for e in EVENTS) + f" {'requests':>9} {'failed':>6}")
    base = statistics.median(variants[0].total) if variants[0].total else float("nan")
    for v, load in zip(variants, loads):
        med = statistics.median(v.total) if v.total else float("nan")
        label = v.name if v.name != "watch" else f"watch {args.watch:g}s"
        print(f"{label:<8} {spread(v.total):>19} {med - base:>+9.2f} "
              + " ".join(f"{spread(v.per_event[e]):>19}" for e in EVENTS)
              + f" {load.result.total:>9,} {load.result.failed:>6}")
    for v in variants:
        for f in v.failures:
            print(f)
    return 0 if not any(v.failures for v in variants) and not any(ld.result.failed for ld in loads) else 1


if __name__ == "__main__":
    sys.exit(main())
