"""Benchmark: where a JVM deployment's time goes, step by step, and the peak memory of both colours.

    .venv/bin/python bench/jvm_timeline.py [--deploys 3] [--load busy|none] [--interval 0.05]

The JVM stack of testbed/jvm.py (three embedded-Tomcat 10 servers per colour on OpenJDK 17, per-colour compose
files, `up --build` at every deploy; base image built on first use), deployed through its four hooks as the agent
runs them (testbed.bundle.deploy; ApplicationStop from the previous bundle; deploy/retire "background", the
deployments spaced so that the last retire has ended). The first deployment runs before any load; the next
``--deploys`` under load (--load busy, the default: 3 threads on / and 3 clients with a 5 s request in flight).

Definitions (printed with the figures):

* **deploy**: from the start of the first hook (ApplicationStop) to the end of the last (ValidateService), as the
  agent runs them: everything the deployment takes, interpreter starts included.
* **readiness**: from the moment Docker started the new colour's first container (``State.StartedAt``) to the
  moment its slowest JVM listens (the app's ``listening on`` line, timestamped by Docker's log): what the JVMs
  themselves need, which no deployment tool can shorten. The speed goal is deploy <= readiness + 1.5 s.
* **readiness to answer**: the same, to the moment the last JVM can answer: a routed JVM's listening plus the
  time its accepted health check took to be answered (the hook's ``answered in`` figure). A cold JVM's first
  request loads Tomcat's request path (and a Spring app's dispatcher): that time is the app's too. A lower
  bound: the accepted check came after the JVM listened (and, while the unrouted worker still started, after
  the JVM's first request: a warm answer then).
* The steps between them come from the timestamps of the hooks (bench side), their lines (``[Event +s]``,
  placed on the wall clock from each hook's end), Docker's container start times and log timestamps, and the
  load's first answer from the new version (``traffic``).

Memory: every ``--interval`` s the bench reads the memory cgroup of each container of both compose projects
(cgroup v1 ``memory.usage_in_bytes`` less ``total_inactive_file``, v2 ``memory.current`` less ``inactive_file``:
what ``docker stats`` shows) from the first hook's start to the last one's end; printed: the peak of both
colours' sum (and each colour's share at that moment), and each colour's own peak.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.vs_deploy_sh import SlowClients, wait_retired
from bluegreen_hooks.host import procfs
from testbed import dockerd, jvm
from testbed.bundle import bed_config, deploy, make_bundle, merge
from testbed.compose import add_site, remove_projects
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port

MIB = 1024 * 1024
LABEL_PROJECT = "com.docker.compose.project"
LINE = re.compile(r"\[(\w+) \+([\d.]+)s\] (.*)")
LISTENING = re.compile(r"^(\S+) example jvm app \S+: listening on \S+:(\d+) ")
HEALTHY = re.compile(r" is healthy \(HTTP \d+ from [^:]+:(\d+)/\S* after [\d.]+s; answered in ([\d.]+)s\)")


def wall(stamp: str) -> float:
    """Docker's RFC 3339 time (nanoseconds, ``Z``) as a Unix time."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (frac or "0"))


class MemorySampler:
    """Samples both colours' containers' memory every ``interval`` s on a thread (containers found by their
    compose project label every 0.5 s); peak of the sum, each colour's share then, each colour's own peak."""

    def __init__(self, client, projects: dict[str, str], interval: float) -> None:
        self.client, self.projects, self.interval = client, projects, interval
        self.pids: dict[str, tuple[str, int]] = {}   # container id -> (colour, its main process on the host)
        self.peak_sum, self.at_peak = 0, {c: 0 for c in projects}
        self.peak = {c: 0 for c in projects}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _discover(self) -> None:
        for colour, project in self.projects.items():
            for c in self.client.api.containers(filters={"label": f"{LABEL_PROJECT}={project}", "status": "running"}):
                if c["Id"] in self.pids:
                    continue
                pid = self.client.api.inspect_container(c["Id"])["State"]["Pid"]
                if pid:
                    self.pids[c["Id"]] = (colour, pid)

    def _run(self) -> None:
        next_discovery = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_discovery:
                self._discover()
                next_discovery = time.monotonic() + 0.5
            per = {c: 0 for c in self.projects}
            for colour, pid in list(self.pids.values()):
                per[colour] += procfs.memory_in_use(pid) or 0   # what the preflight reads (docker stats' measure)
            self.samples += 1
            for colour, used in per.items():
                self.peak[colour] = max(self.peak[colour], used)
            if sum(per.values()) > self.peak_sum:
                self.peak_sum, self.at_peak = sum(per.values()), per
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def hook_lines(runs: list, t_start: float) -> tuple[dict[str, tuple[float, float]], list[tuple[float, str, str]]]:
    """Each hook's (start, end) on the wall clock, and every ``[Event +s] text`` line as (wall time, event, text):
    a line's time is its hook's end less the hook's last ``+s`` less its own."""
    spans, lines, t = {}, [], t_start
    for r in runs:
        spans[r.event] = (t, t + r.seconds)
        parsed = [(float(m.group(2)), m.group(3)) for m in map(LINE.match, r.output.splitlines()) if m]
        last = parsed[-1][0] if parsed else 0.0
        lines += [(t + r.seconds - (last - plus), r.event, text) for plus, text in parsed]
        t += r.seconds
    return spans, lines


def first(lines: list[tuple[float, str, str]], event: str, pattern: str, last: bool = False) -> float | None:
    hits = [t for t, e, text in lines if e == event and re.search(pattern, text)]
    return (hits[-1] if last else hits[0]) if hits else None


def new_colour_times(client, project: str) -> tuple[float, float, dict[int, float]]:
    """(first container started, last container started, {port: when its JVM listened}) of a compose project."""
    started, listens = [], {}
    for c in client.api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        started.append(wall(client.api.inspect_container(c["Id"])["State"]["StartedAt"]))
        logs = client.api.logs(c["Id"], timestamps=True).decode("utf-8", "replace")
        listens.update((int(m.group(2)), wall(m.group(1))) for m in map(LISTENING.match, logs.splitlines()) if m)
    return min(started), max(started), listens


def timeline(runs: list, t_start: float, client, project: str, traffic: float | None) -> dict[str, float]:
    """One deployment's steps in seconds (see the module docstring); the keys are printed in this order."""
    spans, lines = hook_lines(runs, t_start)
    starter = "BeforeInstall" if first(lines, "BeforeInstall", r"^starting \S+ from ") else "ApplicationStart"
    up = first(lines, starter, r"^starting \S+ from ")   # BeforeInstall starts it detached, when it may
    healthy = first(lines, "ApplicationStart", r" is healthy \(", last=True)
    switched = first(lines, "ApplicationStart", r"^nginx now sends traffic to ")
    c0, c1, listens = new_colour_times(client, project)
    ready = max(listens.values())
    # a routed JVM can answer once it listens and has answered a request (the accepted health check's answer
    # time, from the hook's line): a lower bound, since that request came after it listened (and after its first
    # one, when a worker still started: the accepted answer is then a warm one)
    answers = {int(m.group(1)): float(m.group(2)) for _, e, text in lines if e == "ApplicationStart"
               for m in [HEALTHY.search(text)] if m}
    can_answer = max(at + answers.get(port, 0.0) for port, at in listens.items())
    end = spans["ValidateService"][1]
    out = {
        "ApplicationStop": spans["ApplicationStop"][1] - spans["ApplicationStop"][0],
        "BeforeInstall": spans["BeforeInstall"][1] - spans["BeforeInstall"][0],
        f"{starter} until `up` (the hook that starts it)": (up or c0) - spans[starter][0],
        "`up` until the 1st container runs": c0 - (up or c0),
        "readiness (1st container started -> slowest JVM listens)": ready - c0,
        "slowest JVM listens -> healthy seen": (healthy or ready) - ready,
        "healthy -> nginx switched (verified)": (switched or healthy or ready) - (healthy or ready),
        "switched -> ApplicationStart ends": spans["ApplicationStart"][1] - (switched or ready),
        "ValidateService": end - spans["ValidateService"][0],
        "deploy": end - t_start,
        "(containers started over)": c1 - c0,
        "(first answer of the new version - slowest JVM listens)": (traffic - ready) if traffic else float("nan"),
        "(the slowest accepted health answer)": max(answers.values(), default=float("nan")),
        "readiness to answer (1st container started -> the last JVM listens + answers its first request)":
            can_answer - c0,
    }
    out["deploy - readiness"] = out["deploy"] - out["readiness (1st container started -> slowest JVM listens)"]
    out["deploy - readiness to answer"] = out["deploy"] - out[
        "readiness to answer (1st container started -> the last JVM listens + answers its first request)"]
    return out


def step_lines(runs: list, t_start: float, client, project: str) -> list[str]:
    """The deployment's hook lines and its JVMs' ``listening`` (Docker's log times) on one clock (seconds from its
    start), for the record."""
    _, lines = hook_lines(runs, t_start)
    _, _, listens = new_colour_times(client, project)
    lines += [(at, "JVM", f"listening on :{port}") for port, at in listens.items()]
    return [f"{t - t_start:7.2f} {e}: {text[:150]}" for t, e, text in sorted(lines)]


def jvm_bed(name: str, tag: str) -> tuple:
    """The shared daemon, the JVM base image, a work folder, an nginx with the app's two-route site, free ports
    per service and colour, and fresh app/image names: (client, base, work, server, ports, app, repo, site)."""
    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    base = jvm.ensure(client)
    work = Path(tempfile.mkdtemp(prefix=f"bluegreen-bench-{name}-"))
    server = Nginx(work / "nginx").start()
    ports = {s: (free_port(), free_port()) for s in ("web", "api", "worker")}
    app, repo = f"{tag}{uuid.uuid4().hex[:6]}", f"bgc-{tag}{uuid.uuid4().hex[:6]}"
    return client, base, work, server, ports, app, repo, add_site(server, app, work / "backend-url.inc")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=3)
    ap.add_argument("--load", choices=("busy", "none"), default="busy")
    ap.add_argument("--interval", type=float, default=0.05, help="memory sampling interval, seconds")
    ap.add_argument("--lines", action="store_true", help="print each deployment's hook lines on one clock")
    ap.add_argument("--compose-command", metavar="ARGV", default=None,
                    help="compose/command for the deployments (e.g. a docker-compose v2 binary: "
                         "'/opt/compose-v2/docker-compose'); default: what the hooks detect")
    ap.add_argument("--start-in", choices=("BeforeInstall", "ApplicationStart"), default=None,
                    help="compose/start_in for the deployments (default: the config's default)")
    args = ap.parse_args()
    client, base, work, server, ports, app, repo, site = jvm_bed("jvm-timeline", "jt")
    state = work / "state"
    rows: list[dict[str, float]] = []
    mem: list[tuple[int, dict[str, int], dict[str, int]]] = []
    loads: list[float] = []
    bundles: list[Path] = []
    busy = args.load == "busy"

    def one(i: int, load: Load | None, t_load: float) -> None:
        cfg = merge(bed_config(app, server, site, ports["web"], state), jvm.compose_config(ports, 120))
        del cfg["container"]
        if args.compose_command:
            cfg["compose"]["command"] = shlex.split(args.compose_command)
        if args.start_in:
            cfg["compose"]["start_in"] = args.start_in
        cfg["deploy"]["retire"] = "background"
        b = make_bundle(work / f"bg{i}", cfg, app_dir=jvm.APP_DIR)
        jvm.write_per_colour(b, f"{repo}:v{i}", f"v{i}", ports, base)
        state_file = state / f"{app}.json"
        live = json.loads(state_file.read_text())["live"] if state_file.exists() else None
        target = "green" if live == "blue" else "blue"
        loads.append(os.getloadavg()[0])
        projects = {"blue": f"{app}-blue", "green": f"{app}-green"}
        t_start = time.time()
        with MemorySampler(client, projects, args.interval) as sampler:
            runs = deploy(b, f"d-{i}", stop_from=bundles[-1] if bundles else None)
        if runs[-1].returncode:
            raise SystemExit(f"{runs[-1].event} of d-{i} failed:\n{runs[-1].output}")
        bundles.append(b)
        if load is None:
            return
        new = [s.t for s in load.result.samples if s.ok and s.version == f"v{i}"]
        traffic = t_load + min(new) if new else None
        rows.append(timeline(runs, t_start, client, f"{app}-{target}", traffic))
        mem.append((sampler.peak_sum, sampler.at_peak, sampler.peak))
        if args.lines:
            print(f"--- d-{i} (load average {loads[-1]:.2f})")
            print("\n".join(step_lines(runs, t_start, client, f"{app}-{target}")))
        wait_retired(state, app)

    try:
        one(0, None, 0.0)
        with Load(site.url + "/", threads=3 if busy else 1) as load, \
                SlowClients(site.url, n=3 if busy else 0, path="/slow?5"):
            t_load = time.time()   # the load's clock starts as the block is entered
            for i in range(1, args.deploys + 1):
                one(i, load, t_load)
        failed = load.result.failed
    finally:
        remove_projects(client, app, repo)
        server.stop()
    print(f"compose command: {args.compose_command or 'detected by the hooks'}")
    print(f"JVM stack (3 Tomcat JVMs per colour, `up --build`), {args.deploys} deploys under "
          f"{'3 threads on / and 3 clients with a 5 s request in flight' if busy else 'one thread on /'}; "
          f"load average (1 min) at each deploy's start: {', '.join(f'{x:.2f}' for x in loads[1:])}; "
          f"failed requests: {failed}")
    print("deploy: first hook's start (ApplicationStop) -> last hook's end (ValidateService), as the agent runs them")
    print("readiness: the new colour's first container started -> its slowest JVM listens (Docker's timestamps)")
    print("readiness to answer: ... -> the last JVM that listens and has answered its first request (its health "
          "answer's time from the hook's line, added to its listening; a lower bound)")
    print("| step | " + " | ".join(f"d-{i}" for i in range(1, len(rows) + 1)) + " | median |")
    print("|---|" + "---|" * (len(rows) + 1))
    for key in rows[0]:
        vals = [r[key] for r in rows]
        print(f"| {key} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {statistics.median(vals):.2f} |")
    print("peak memory of both colours during the deploy (docker stats' measure, sampled every "
          f"{args.interval:g} s):")
    for i, (peak_sum, at_peak, peak) in enumerate(mem, 1):
        print(f"d-{i}: both {peak_sum / MIB:.0f} MiB (blue {at_peak['blue'] / MIB:.0f} + green "
              f"{at_peak['green'] / MIB:.0f} at that moment); each colour's own peak: blue {peak['blue'] / MIB:.0f}, "
              f"green {peak['green'] / MIB:.0f} MiB")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
