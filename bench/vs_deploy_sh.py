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

    .venv/bin/python bench/vs_deploy_sh.py --app jvm [--deploys 3] [--start-delay 20]

--app jvm: the same comparison on the JVM stack (testbed/jvm.py: three embedded-Tomcat 10 servers per colour on
OpenJDK 17, /actuator/health; base image built on first use). Under the busy load, each tool runs, in order:
``--deploys`` ordinary deployments, one of a version whose JVMs need ``--start-delay`` s more to get ready (a slow
Spring context), a rollback to the previous release (deploy.sh: the previous revision deployed again;
bluegreen-hooks: `bluegreen-hooks rollback`), and one of a version that starts but fails its health check (and
answers 503). Failed requests are counted per step, from its start to the next one's (the last: until 5 s after
it). For bluegreen-hooks the ordinary deployments' time is split: the hooks around, `up` (build, create, start),
the JVMs' start until /actuator/health answers UP ("readiness"), the switch; and deploy - readiness.
"""
from __future__ import annotations

import argparse
import os
import re
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

from testbed import dockerd, images, jvm
from testbed.bundle import bed_config, deploy, make_bundle, merge
from testbed.compose import add_site, remove_projects, write_per_colour
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port

HERE = Path(__file__).resolve().parent
CONF_D = Path("/etc/nginx/conf.d")   # where deploy.sh copies its include


class SlowClients:
    """``n`` clients that each keep one 5 s request in flight until stopped; counts the failed ones."""

    def __init__(self, url: str, n: int = 3, path: str = "/cgi-bin/slow?5") -> None:
        self.url, self.done, self.failed = url + path, 0, 0
        self.failed_at: list[float] = []   # time.monotonic() of each failed answer
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
            if not ok:
                self.failed_at.append(time.monotonic())

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


def hooks(bundle: Path, deployment_id: str, per_event: dict[str, list[float]], previous: Path | None,
          runs_out: list | None = None) -> float:
    """The four hooks of ``bundle``, as the agent runs them (testbed.bundle.deploy; ApplicationStop from the
    ``previous`` bundle); seconds in all. Each event's seconds are appended to ``per_event``. With ``runs_out``
    the runs are appended to it and a failed one is no error."""
    runs = deploy(bundle, deployment_id, stop_from=previous)
    if runs_out is not None:
        runs_out.extend(runs)
    elif runs[-1].returncode:
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
    ap.add_argument("--app", choices=("busybox", "jvm"), default="busybox",
                    help="busybox: the example app (ready at once); jvm: three Tomcat JVMs per colour (testbed/jvm.py)")
    ap.add_argument("--start-delay", type=float, default=20,
                    help="--app jvm: seconds the slow version's JVMs wait before they listen")
    args = ap.parse_args()
    if args.app == "jvm":
        return run_jvm(args.deploys, args.start_delay)
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
        shim = systemctl_shim(work, server)
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


JVM_SLOW = "/slow?5"          # the JVM app's 5 s request
JVM_DEADLINE = 45             # health/deadline of the JVM bundles: the slow version needs ~25 s under load
TAIL = 5                      # seconds of load after the last step (a broken live version keeps failing)


def jvm_steps(deploys: int, start_delay: float) -> list[tuple[str, dict | None]]:
    """(step name, the version's knobs for testbed.jvm.write_per_colour, or None for a rollback)."""
    return ([("deploy", {})] * deploys + [(f"JVMs need +{start_delay:g} s", {"start_delay": start_delay}),
                                          ("rollback", None), ("fails its health check", {"unhealthy": True})])


def run_steps(url: str, first, steps: list[tuple[str, object]]) -> dict:
    """``first()`` before any load, then each step's function (-> (seconds, outcome)) under the busy load and 3
    clients with a 5 s request in flight; failed requests counted per step (until the next, the last + TAIL s):
    [/ requests, 5 s requests] (a 5 s request counts where its answer came)."""
    first()
    rows, marks = [], []
    t0 = time.monotonic()
    with Load(url + "/", threads=3) as load, SlowClients(url, path=JVM_SLOW) as slow:
        for name, fn in steps:
            marks.append(time.monotonic() - t0)
            secs, outcome = fn()   # type: ignore[operator]
            rows.append([name, secs, outcome])
        time.sleep(TAIL)   # a fixed window of traffic after the last step, not a wait for a condition
    r = load.result
    marks.append(float("inf"))
    for k, row in enumerate(rows):
        row.append(sum(1 for x in r.samples if not x.ok and marks[k] <= x.t < marks[k + 1]))
        row.append(sum(1 for x in slow.failed_at if marks[k] <= x - t0 < marks[k + 1]))
    return {"rows": rows, "requests": len(r.samples) + slow.done, "failed": r.failed + slow.failed,
            "slow": slow.done, "slow_failed": slow.failed, "causes": dict(r.failures)}


def where_it_goes(runs: list) -> dict[str, float]:
    """One deployment's time split, from its hook runs and ApplicationStart's lines."""
    start = next(r.output for r in runs if r.event == "ApplicationStart")
    up = re.search(r"is up in ([\d.]+)s", start)
    ready = [float(x) for x in re.findall(r"is healthy \(HTTP \d+ from \S+ after ([\d.]+)s[;)]", start)]
    switch = re.search(r"test \+ reload \+ verify in (\d+) ms", start)
    out = {r.event: r.seconds for r in runs}
    out.update(up=float(up.group(1)) if up else 0.0, readiness=max(ready, default=0.0),   # the routes' waits overlap
               switch=int(switch.group(1)) / 1000 if switch else 0.0, deploy=sum(r.seconds for r in runs))
    return out


def run_jvm(deploys: int, start_delay: float) -> int:
    """--app jvm: deploy.sh and bluegreen-hooks (retire "background") through the same steps on the JVM stack."""
    from bench.releases import rollback

    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    t = time.monotonic()
    base = jvm.ensure(client)
    print(f"JVM base image {base} and jar ready in {time.monotonic() - t:.1f} s")
    work = Path(tempfile.mkdtemp(prefix="bluegreen-bench-vs-jvm-"))
    server = Nginx(work / "nginx").start()
    ports = {s: (free_port(), free_port()) for s in ("web", "api", "worker")}
    repo = f"bgc-vsj{uuid.uuid4().hex[:6]}"
    steps = jvm_steps(deploys, start_delay)
    results: dict[str, dict] = {}
    split: list[dict[str, float]] = []
    try:
        conf_d = work / "conf.d"
        conf_d.mkdir()
        site = add_site(server, "deploysh", conf_d / "service-url.inc")
        shim = systemctl_shim(work, server)
        remove_projects(client, "app")
        good: list[Path] = []

        def classic(i: int, knobs: dict | None) -> tuple[float, str]:
            if knobs is None:   # a rollback: the previous good revision deployed again
                return deploy_sh(good[-2], conf_d, shim), "previous revision redeployed"
            b = work / f"sh{i}"
            shutil.copytree(jvm.APP_DIR, b / "app")
            shutil.copy2(HERE / "deploy_sh" / "deploy.sh", b / "deploy.sh")
            jvm.write_per_colour(b, f"{repo}-sh:v{i}", f"v{i}", ports, base, **knobs)
            for n, colour in enumerate(("blue", "green")):
                (b / f"service-url-{colour}.inc").write_text(
                    f"set $service_url http://127.0.0.1:{ports['web'][n]};\n"
                    f"set $api_url http://127.0.0.1:{ports['api'][n]};\n")
            secs = deploy_sh(b, conf_d, shim)
            good.append(b)
            return secs, "switched"

        results["deploy.sh"] = run_steps(site.url, lambda: classic(0, {}), [
            (name, lambda i=i, k=knobs: classic(i, k)) for i, (name, knobs) in enumerate(steps, 1)])
        remove_projects(client, "app", f"{repo}-sh")
        server.remove_site(site)

        app = f"vsj{uuid.uuid4().hex[:6]}"
        site = add_site(server, app, work / "backend-url.inc")
        state = work / "state"
        last: list[Path] = []

        def bluegreen(i: int, knobs: dict | None) -> tuple[float, str]:
            if i:   # deployments minutes apart: the last retire has ended
                wait_retired(state, app)
            if knobs is None:
                live_after, secs = rollback(state)
                return secs, f"rolled back (old release serving after {live_after:.2f} s)"
            cfg = merge(bed_config(app, server, site, ports["web"], state), jvm.compose_config(ports, JVM_DEADLINE))
            del cfg["container"]
            cfg["deploy"]["retire"] = "background"
            b = make_bundle(work / f"bg{i}", cfg, app_dir=jvm.APP_DIR)
            jvm.write_per_colour(b, f"{repo}-bg:v{i}", f"v{i}", ports, base, **knobs)
            runs: list = []
            secs = hooks(b, f"d-{i}", {}, last[-1] if last else None, runs)
            if runs[-1].returncode:
                return secs, f"failed at {runs[-1].event}: {runs[-1].last_line[:90]}"
            last.append(b)
            if i and not knobs:
                split.append(where_it_goes(runs))
            return secs, "switched"

        results["bluegreen-hooks"] = run_steps(site.url, lambda: bluegreen(0, {}), [
            (name, lambda i=i, k=knobs: bluegreen(i, k)) for i, (name, knobs) in enumerate(steps, 1)])
        wait_retired(state, app)
        remove_projects(client, app, f"{repo}-bg")
    finally:
        remove_projects(client, "app")
        server.stop()
        daemon.stop()
    print(f"JVM stack (3 Tomcat JVMs per colour), each tool: {deploys} deploys, then the steps below, under load "
          "(3 threads on /, 3 clients with a 5 s request in flight)")
    print("| step | tool | deploy s | failed requests in the step: /, 5 s | outcome |")
    print("|---|---|---|---|---|")
    for k in range(len(steps)):
        for tool, res in results.items():
            name, secs, outcome, failed, slow_failed = res["rows"][k]
            print(f"| {name} | {tool} | {secs:.2f} | {failed:,}, {slow_failed} | {outcome} |")
    for tool, res in results.items():
        print(f"{tool}: {res['requests']:,} requests, {res['failed']:,} failed "
              f"({res['slow_failed']} of {res['slow']} 5 s requests), causes {res['causes']}")
    if split:
        med = {k: statistics.median(d[k] for d in split) for k in split[0]}
        print("bluegreen-hooks, ordinary JVM deploys (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
        print(f"deploy - readiness = {med['deploy'] - med['readiness']:.2f} s (goal <= 1.5 s; here deploy: the four "
              f"hooks' seconds, readiness: the health waits' seconds after `up`; bench/jvm_timeline.py splits it "
              f"on one clock, readiness from Docker's start of the first container to the slowest JVM listening)")
    return 0 if results["bluegreen-hooks"]["failed"] == 0 else 1


def systemctl_shim(work: Path, server: Nginx) -> Path:
    """A folder with a `systemctl` for deploy.sh: `systemctl reload nginx` reloads the bench's nginx."""
    shim = work / "shim"
    shim.mkdir()
    (shim / "systemctl").write_text(f"#!/bin/sh\n[ \"$*\" = 'reload nginx' ] || exit 1\n"
                                    f"exec {shlex.join(server.reload_argv)}\n")
    (shim / "systemctl").chmod(0o755)
    return shim


def wait_retired(state_dir: Path, app: str) -> None:
    """The last background retire (if any) finished: its stack must not be removed under it."""
    import json

    from tests.helpers import wait_for

    wait_for(lambda: "retiring" not in json.loads((state_dir / f"{app}.json").read_text()), timeout=60,
             what="the last background retire")


if __name__ == "__main__":
    sys.exit(main())
