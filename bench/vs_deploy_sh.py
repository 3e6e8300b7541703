"""Benchmark: the classic deploy.sh against bluegreen-hooks' compose path, same app, same load, one run each.

    .venv/bin/python bench/vs_deploy_sh.py [--deploys 3] [--load busy|in-flight]

The app is the seed-style 3-service compose stack (per-colour files, `up --build` at every deploy; web and
api routed, worker with a Docker HEALTHCHECK) and is ready at once. Load while it deploys: 3 clients that
keep a 5 s request (/cgi-bin/slow?5) in flight and, with --load busy (the default), 3 threads on / (a new
connection per request, as fast as they go: on 2 cores they take about half the CPU).

* deploy.sh (bench/deploy_sh/deploy.sh) runs unchanged, in a private mount namespace where the bench's
  include folder is bind-mounted over /etc/nginx/conf.d, with a `systemctl` on PATH that reloads the
  bench's nginx (`systemctl reload nginx` -> `nginx -c <bench conf> -s reload`).
* bluegreen-hooks runs the four hooks of a bundle with the same compose files (compose build = true;
  ApplicationStop from the previous bundle, as the agent runs it),
  once with deploy/retire = "wait" (ValidateService drains, then stops the old stack) and once with
  "background" (a detached process does that after the deployment: lifecycle/background.py). With
  "background" each deployment starts once the last one's retire has ended, as deployments minutes apart
  would: back to back, the next BeforeInstall would wait for the last switch's 5 s requests instead.

Printed: one line per tool (deploy seconds median/max, requests, failed, failed 5 s requests) and a
Markdown table for the README. Needs root (mount namespace).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed import dockerd, images
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.compose import add_site, remove_projects, write_per_colour
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port

HERE = Path(__file__).resolve().parent
CONF_D = Path("/etc/nginx/conf.d")   # where deploy.sh copies its include


class SlowClients:
    """``n`` clients that each keep one 5 s request in flight until stopped; counts the failed ones."""

    def __init__(self, url: str, n: int = 3) -> None:
        self.url, self.done, self.failed = url + "/cgi-bin/slow?5", 0, 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self) -> None:
        from tests.helpers import get

        while not self.stop.is_set():
            try:
                ok = get(self.url, timeout=30)[0] == 200
            except Exception:   # counted as a failure
                ok = False
            self.done += 1
            self.failed += not ok

    def __enter__(self) -> SlowClients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(40)


def deploy_sh(bundle: Path, conf_d: Path, shim: Path) -> float:
    """One run of deploy.sh, unchanged; the include it copies lands in ``conf_d``."""
    script = (f"mount --bind {shlex.quote(str(conf_d))} {CONF_D} && "
              f"exec {shlex.quote(str(bundle / 'deploy.sh'))}")
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.monotonic()
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        raise SystemExit(f"deploy.sh failed:\n{proc.stdout}")
    return time.monotonic() - t0


def hooks(bundle: Path, deployment_id: str, per_event: dict[str, list[float]], previous: Path | None) -> float:
    """The four hooks of ``bundle``, as the agent runs them (testbed.bundle.deploy; ApplicationStop from the
    ``previous`` bundle); seconds in all. Each event's seconds are appended to ``per_event``."""
    runs = deploy(bundle, deployment_id, stop_from=previous)
    if runs[-1].returncode:
        raise SystemExit(f"{runs[-1].event} of {deployment_id} failed:\n{runs[-1].output}")
    for r in runs:
        per_event.setdefault(r.event, []).append(r.seconds)
    return sum(r.seconds for r in runs)


def measure(run, url: str, deploys: int, busy: bool, between=lambda: None) -> dict:
    """The first deployment before any load (nothing serves before it), then ``deploys`` under load;
    ``between`` runs before each of those (not timed)."""
    run(0)
    with Load(url + "/", threads=3 if busy else 0, min_requests=int(busy)) as load, SlowClients(url) as slow:
        secs = []
        for i in range(1, deploys + 1):
            between()
            secs.append(run(i))
    r = load.result
    return {"median": statistics.median(secs), "max": max(secs), "requests": len(r.samples) + slow.done,
            "failed": r.failed + slow.failed, "slow": slow.done, "slow_failed": slow.failed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=3)
    ap.add_argument("--load", choices=("busy", "in-flight"), default="busy",
                    help="busy: 3 threads on / besides the 5 s requests in flight; in-flight: only those")
    args = ap.parse_args()
    busy = args.load == "busy"
    if not CONF_D.is_dir():
        raise SystemExit(f"{CONF_D} does not exist: install nginx (apt-get install nginx-light)")
    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    images.ensure_base_image(client)
    work = Path(tempfile.mkdtemp(prefix="bluegreen-bench-vs-"))
    server = Nginx(work / "nginx").start()
    ports = {s: (free_port(), free_port()) for s in ("web", "api", "worker")}
    results: dict[str, dict] = {}
    events: dict[str, dict[str, list[float]]] = {}   # retire -> event -> seconds of the deploys under load
    repo = f"bgc-vs{uuid.uuid4().hex[:6]}"
    try:
        # deploy.sh: projects app-blue / app-green, its include in conf_d (= /etc/nginx/conf.d for the script)
        conf_d = work / "conf.d"
        conf_d.mkdir()
        site = add_site(server, "deploysh", conf_d / "service-url.inc")
        shim = work / "shim"
        shim.mkdir()
        (shim / "systemctl").write_text(f"#!/bin/sh\n[ \"$*\" = 'reload nginx' ] || exit 1\n"
                                        f"exec {shlex.join(server.reload_argv)}\n")
        (shim / "systemctl").chmod(0o755)
        remove_projects(client, "app")

        def classic(i: int) -> float:
            b = work / f"sh{i}"
            shutil.copytree(HERE.parent / "example" / "app", b / "app")
            shutil.copy2(HERE / "deploy_sh" / "deploy.sh", b / "deploy.sh")
            write_per_colour(b, f"{repo}-sh:v{i}", f"v{i}", ports)
            for n, colour in enumerate(("blue", "green")):
                (b / f"service-url-{colour}.inc").write_text(
                    f"set $service_url http://127.0.0.1:{ports['web'][n]};\n"
                    f"set $api_url http://127.0.0.1:{ports['api'][n]};\n")
            return deploy_sh(b, conf_d, shim)

        results["deploy.sh"] = measure(classic, site.url, args.deploys, busy)
        remove_projects(client, "app", f"{repo}-sh")
        server.remove_site(site)

        # bluegreen-hooks: the same stack and ports, through its four hooks; deploy/retire "wait" (the
        # default: ValidateService drains the 5 s requests, then stops the old stack) and "background"
        for retire in ("wait", "background"):
            app = f"vs{uuid.uuid4().hex[:6]}"
            site = add_site(server, app, work / f"backend-url-{retire}.inc")

            def bluegreen(i: int, app: str = app, site=site, retire: str = retire) -> float:
                cfg = bed_config(app, server, site, ports["web"], work / f"state-{retire}")
                del cfg["container"]
                cfg["deploy"]["retire"] = retire
                cfg["compose"] = {"files": {"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"},
                                  "build": True, "routed": ["web", "api"], "stop_grace_period": 3,
                                  "routes": {"api": {"blue": ports["api"][0], "green": ports["api"][1]}}}
                b = make_bundle(work / f"bg-{retire}{i}", cfg)
                write_per_colour(b, f"{repo}-bg:v{i}", f"v{i}", ports)
                return hooks(b, f"d-{i}", events.setdefault(retire, {}) if i else {},
                             work / f"bg-{retire}{i - 1}" if i else None)

            spaced = (lambda s=work / f"state-{retire}", a=app: wait_retired(s, a)) if retire == "background" \
                else (lambda: None)
            results[f"bluegreen-hooks (retire {retire})"] = measure(bluegreen, site.url, args.deploys, busy, spaced)
            wait_retired(work / f"state-{retire}", app)
            remove_projects(client, app, f"{repo}-bg")
            server.remove_site(site)
    finally:
        remove_projects(client, "app")
        server.stop()
        daemon.stop()
    print(f"3-service compose stack, up --build each deploy, {args.deploys} deploys each under load "
          f"({'3 threads on /, ' if busy else ''}3 clients with a 5 s request in flight)")
    print("| tool | deploy s (median / max) | requests | failed | 5 s requests failed |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['median']:.2f} / {r['max']:.2f} | {r['requests']:,} | {r['failed']:,} | "
              f"{r['slow_failed']} of {r['slow']} |")
    for retire, per_event in events.items():
        print(f"bluegreen-hooks (retire {retire}), median s per event: "
              + ", ".join(f"{e} {statistics.median(v):.2f}" for e, v in per_event.items()))
    sh = results["deploy.sh"]["median"]
    for name, r in results.items():
        if name != "deploy.sh":
            print(f"{name} is {sh / r['median']:.1f}x faster per deployment (median)")
    return 0 if all(r["failed"] == 0 for n, r in results.items() if n != "deploy.sh") else 1


def wait_retired(state_dir: Path, app: str) -> None:
    """The last background retire (if any) finished: its stack must not be removed under it."""
    import json

    from tests.helpers import wait_for

    wait_for(lambda: "retiring" not in json.loads((state_dir / f"{app}.json").read_text()), timeout=60,
             what="the last background retire")


if __name__ == "__main__":
    sys.exit(main())
