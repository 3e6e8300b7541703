"""Benchmark: the JVM stack deployed through the real CodeDeploy agent, the new colour started by BeforeInstall or
by ApplicationStart (``compose/start_in``), side by side.

    CODEDEPLOY_LOCAL=../shared/codedeploy-agent/codedeploy-local \
        .venv/bin/python bench/agent_start_in.py [--rounds 3] [--compose-command ARGV]

The same stack as bench/jvm_timeline.py (three embedded-Tomcat JVMs per colour, per-colour compose files,
`up --build`), under its busy load (3 threads on / and 3 clients with a 5 s request in flight). Each round deploys
once with ``start_in = "BeforeInstall"`` and once with ``"ApplicationStart"`` (the order alternates), each through
``codedeploy-local`` as a real instance runs a deployment: DownloadBundle, the hooks, the agent's Install step
between BeforeInstall and ApplicationStart, the agent's own bookkeeping. Printed per mode (medians):

* **deploy**: the agent's run, from its start to its end (what `codedeploy-local` takes);
* **new version served**: from the agent's start to the load's first answer from the new version;
* **readiness**: the new colour's first container started -> its slowest JVM listens (Docker's timestamps);
* the **gap** between BeforeInstall's end and ApplicationStart's first step, from the state's event log (what
  the agent does in between: Install, its bookkeeping; and ApplicationStart's interpreter start): time the JVMs
  get when BeforeInstall starts them.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.jvm_timeline import jvm_bed, new_colour_times
from bench.vs_deploy_sh import SlowClients, wait_retired
from testbed import jvm
from testbed.bundle import bed_config, make_bundle, merge
from testbed.compose import remove_projects
from testbed.load import Load

VENV_BIN = str(Path(sys.executable).parent)
MODES = ("BeforeInstall", "ApplicationStart")


def agent_deploy(root: Path, bundle: Path, app: str) -> tuple[float, float, str]:
    """Deploy ``bundle`` with codedeploy-local; (start, end) on the wall clock and the agent's output."""
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
               CODEDEPLOY_LOCAL_ROOT=str(root), CODEDEPLOY_LOCAL_DEPLOYMENT_ID=f"d-{uuid.uuid4().hex[:9].upper()}")
    argv = [os.environ["CODEDEPLOY_LOCAL"], "-l", str(bundle), "-t", "directory", "-a", app, "-d", "testbed",
            "-g", "bench", "-b", "OVERWRITE"]
    t0 = time.time()
    proc = subprocess.run(argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    t1 = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"codedeploy-local failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return t0, t1, env["CODEDEPLOY_LOCAL_DEPLOYMENT_ID"]


def hook_gap(state: Path, app: str, deployment_id: str) -> float:
    """BeforeInstall's end -> ApplicationStart's first step, from the state's event log (``at`` is an event's end,
    ``seconds`` its run after the interpreter started): what the agent does in between (Install, bookkeeping)
    plus ApplicationStart's interpreter start."""
    events = json.loads((state / f"{app}.json").read_text())["events"]
    mine = {e["event"]: e for e in events if e["deployment"] == deployment_id}
    bi, start = mine.get("BeforeInstall"), mine.get("ApplicationStart")
    return (start["at"] - start["seconds"] - bi["at"]) if bi and start else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compose-command", metavar="ARGV", default=None,
                    help="compose/command for the deployments; default: what the hooks detect")
    args = ap.parse_args()
    if not os.environ.get("CODEDEPLOY_LOCAL"):
        raise SystemExit("set CODEDEPLOY_LOCAL to the agent's codedeploy-local (../shared/codedeploy-agent/)")
    client, base, work, server, ports, app, repo, site = jvm_bed("agent-start-in", "as")
    state, root = work / "state", work / "agent"
    root.mkdir()
    results: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in MODES}
    n = 0

    def bundle(mode: str) -> Path:
        nonlocal n
        n += 1
        cfg = merge(bed_config(app, server, site, ports["web"], state), jvm.compose_config(ports, 120))
        del cfg["container"]
        cfg["compose"]["start_in"] = mode
        cfg["deploy"]["retire"] = "background"
        if args.compose_command:
            cfg["compose"]["command"] = shlex.split(args.compose_command)
        b = make_bundle(work / f"b{n}", cfg, app_dir=jvm.APP_DIR)
        jvm.write_per_colour(b, f"{repo}:v{n}", f"v{n}", ports, base)
        return b

    try:
        agent_deploy(root, bundle("BeforeInstall"), app)
        wait_retired(state, app)
        with Load(site.url + "/", threads=3) as load, SlowClients(site.url, n=3, path="/slow?5"):
            t_load = time.time()
            for r in range(args.rounds):
                for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                    b = bundle(mode)
                    version = f"v{n}"
                    t0, t1, did = agent_deploy(root, b, app)
                    new = [s.t for s in load.result.samples if s.ok and s.version == version]
                    served = (t_load + min(new) - t0) if new else float("nan")
                    live = "green" if n % 2 == 0 else "blue"
                    c0, _, ready = new_colour_times(client, f"{app}-{live}")
                    results[mode].append((t1 - t0, served, ready - c0, hook_gap(state, app, did)))
                    wait_retired(state, app)
        failed = load.result.failed
    finally:
        remove_projects(client, app, repo)
        server.stop()
    print(f"JVM stack through the real agent (codedeploy-local), {args.rounds} deployments per mode under 3 threads "
          f"on / and 3 clients with a 5 s request in flight; compose command: {args.compose_command or 'detected'}; "
          f"failed requests: {failed}")
    print("| compose/start_in | deploy (agent's run) | new version served (from the agent's start) | readiness | "
          "gap BeforeInstall -> ApplicationStart's first step |")
    print("|---|---|---|---|---|")
    for mode, rows in results.items():
        cols = [statistics.median(v) for v in zip(*rows)]
        spread = [f"{min(v):.2f}-{max(v):.2f}" for v in zip(*rows)]
        print(f"| {mode} | " + " | ".join(f"{c:.2f} ({s})" for c, s in zip(cols, spread)) + " |")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
