"""Benchmark: consecutive blue/green deploys of the example app under load, on the real test bed.

    .venv/bin/python bench/deploys.py [--deploys 10] [--scenarios ready,canary,...] [--png bench/out/timeline.png]

Scenarios: ``ready`` (the app answers at once), ``slow13`` (each new version needs 13 s to start),
``inflight`` (5 s requests are in flight through nginx at every switch), ``canary`` (each new version gets
10 %, then 50 % of the requests for 3 s each, then is promoted), ``canary-abort`` (each new version answers
500 on 20 % of requests: its canary is aborted at 10 %, the deployment fails, the old version stays).
For each deploy it measures the whole lifecycle (BeforeInstall → ValidateService), the switch latency
(target healthy → nginx verified serving it, from the state's timings), failed requests (4 load threads,
new connection per request), and the peak RSS of the hook processes (with GNU time: `apt-get install time`). It also
times a no-op hook (ApplicationStop) and prints one table; with matplotlib installed it writes a PNG
timeline (requests/s by answering version, switch moments marked).
"""
from __future__ import annotations

import argparse
import json
import os
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
from testbed.bundle import EVENTS, bed_config, hook_env, make_bundle
from testbed.load import Load
from testbed.nginx import Nginx
from testbed.ports import free_port

SCENARIOS = {"ready": 0, "slow13": 13, "inflight": 0, "canary": 0, "canary-abort": 0}
CANARY = {"steps": [10, 50], "step_seconds": 3, "min_requests": 20, "max_wait": 20, "max_error_rate": 0.05}
TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None   # apt-get install time


def run_hook(bundle: Path, event: str, deployment_id: str) -> tuple[int, float, int, str]:
    """Run a hook as the agent would; return (exit status, seconds, peak RSS in KiB, output)."""
    env = hook_env(deployment_id)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    # Peak RSS comes from GNU time (Debian's `time` package): a child forked from this big process would
    # report this process's size as its own high-water mark (Linux keeps ru_maxrss across exec).
    rss_file = Path(tempfile.mktemp(prefix="bgh-rss-"))
    argv = [str(bundle / "hooks" / event)]
    if TIME:
        argv = [TIME, "-q", "-f", "%M", "-o", str(rss_file), *argv]
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seconds = time.monotonic() - t0
    try:
        rss = int(rss_file.read_text().split()[-1])
        rss_file.unlink()
    except (OSError, ValueError, IndexError):
        rss = 0
    return proc.returncode, seconds, rss, proc.stdout


def noop_hook_ms(bundle: Path, n: int = 15) -> float:
    times = [run_hook(bundle, "ApplicationStop", "d-noop")[1] for _ in range(n)]
    return statistics.median(times) * 1000


def scenario(name: str, deploys: int, server: Nginx, work: Path, client) -> dict:
    app = f"bench{name}{uuid.uuid4().hex[:4]}"
    site = server.add_site(app, work / app / "backend-url.inc")
    ports = (free_port(), free_port())
    delay = SCENARIOS[name]

    def bundle(i: int) -> Path:
        env = {"HOST": "127.0.0.1", "START_DELAY": str(delay if i > 0 else 0)}
        extra = {"canary": CANARY} if name.startswith("canary") else {}
        if name == "canary-abort" and i > 0:
            env["FAIL_PERCENT"] = "20"
        cfg = bed_config(app, server, site, ports, work / app / "state", f"v{i}", container={"env": env}, **extra)
        return make_bundle(work / app / f"b{i}", cfg)

    per_event: dict[str, list[float]] = {e: [] for e in EVENTS}
    rss_event: dict[str, int] = {e: 0 for e in EVENTS}

    def lifecycle(i: int, load: Load | None, marks: list) -> tuple[float, int, bool]:
        b, d = bundle(i), f"d-{name}-{i}"
        t0, peak, ok = time.monotonic(), 0, True
        for event in EVENTS:
            code, secs, rss, out = run_hook(b, event, d)
            if load is not None:
                per_event[event].append(secs)
                rss_event[event] = max(rss_event[event], rss)
            peak = max(peak, rss)
            if event == "ApplicationStart" and load is not None:
                marks.append(time.monotonic() - load._t0)
            if event == "ApplicationStart" and "canary" in out:
                lines = [ln for ln in out.splitlines() if "canary step" in ln and ":" in ln and " in " in ln]
                canary_lines.extend(ln.split("] ", 1)[-1] for ln in lines + out.splitlines()[-1:])
            if code != 0:
                print(out, file=sys.stderr)
                ok = False
                break
        return time.monotonic() - t0, peak, ok

    canary_lines: list[str] = []
    lifecycle(0, None, [])
    canary_lines.clear()
    slow_results: list[int] = []
    stop = threading.Event()

    def slow_client() -> None:
        from tests.helpers import get
        while not stop.is_set():
            try:
                slow_results.append(get(site.url + "/cgi-bin/slow?5", timeout=30)[0])
            except Exception:  # counted as a failure
                slow_results.append(0)

    marks: list[float] = []
    seconds, peaks, fails = [], [], 0
    slow_threads = [threading.Thread(target=slow_client, daemon=True) for _ in range(3 if name == "inflight" else 0)]
    with Load(site.url + "/", threads=4) as load:
        for t in slow_threads:
            t.start()
        for i in range(1, deploys + 1):
            s, peak, ok = lifecycle(i, load, marks)
            seconds.append(s)
            peaks.append(peak)
            fails += not ok
        stop.set()
    for t in slow_threads:
        t.join(40)
    store = json.loads((work / app / "state" / f"{app}.json").read_text())
    timings = [d["timings"] for d in store["deployments"][-deploys:] if d.get("timings")]
    r = load.result
    for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"bluegreen.app={app}"}):
        c.remove(force=True)
    return {
        "scenario": name, "deploys": deploys, "hook_failures": fails,
        "deploy_s_median": statistics.median(seconds), "deploy_s_max": max(seconds),
        "start_delay_s": delay,
        "switch_ms_median": statistics.median(t["healthy_to_serving_ms"] for t in timings) if timings else None,
        "switch_ms_max": max(t["healthy_to_serving_ms"] for t in timings) if timings else None,
        "requests": r.total, "failed": r.failed, "failures": dict(r.failures),
        "slow_requests": len(slow_results), "slow_failed": sum(1 for s in slow_results if s != 200),
        "hook_peak_rss_mib": max(peaks) / 1024, "samples": r.samples, "marks": marks,
        "event_s_median": {e: statistics.median(v) for e, v in per_event.items() if v},
        "event_rss_mib": {e: v / 1024 for e, v in rss_event.items()},
        "canary_lines": canary_lines,
        "expected_failures": name == "canary-abort",
    }


def plot(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG (pip install matplotlib)", file=sys.stderr)
        return False
    fig, axes = plt.subplots(len(results), 1, figsize=(11, 3.2 * len(results)), squeeze=False)
    for ax, res in zip(axes[:, 0], results):
        step = 0.5   # bins of half a second; requests/s stacked by the version that answered
        n = int(max((s.t for s in res["samples"]), default=0) / step) + 1
        versions = sorted({s.version for s in res["samples"] if s.ok},
                          key=lambda v: int(v[1:]) if v[1:].isdigit() else 0)
        rows = {v: [0.0] * n for v in versions}
        failed = [0.0] * n
        for s in res["samples"]:
            b = int(s.t / step)
            if s.ok:
                rows[s.version][b] += 1 / step
            else:
                failed[b] += 1 / step
        xs = [i * step for i in range(n)]
        ax.stackplot(xs, *(rows[v] for v in versions), labels=versions, step="post", alpha=0.85)
        if any(failed):
            ax.step(xs, failed, "r", where="post", label="failed")
        for m in res["marks"]:
            ax.axvline(m, color="grey", linestyle=":", linewidth=0.8)
        what = ("ApplicationStart finished = canary aborted" if res["scenario"] == "canary-abort" else
                "ApplicationStart finished = switch" + (" (after 10 % and 50 % steps)"
                                                        if res["scenario"] == "canary" else ""))
        ax.set_title(f"{res['scenario']}: {res['deploys']} deploys, {res['requests']:,} requests, "
                     f"{res['failed']} failed (dotted: {what})")
        ax.set_xlabel("seconds")
        ax.set_ylabel("requests/s")
        ax.legend(loc="upper right", fontsize=7, ncol=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deploys", type=int, default=10)
    ap.add_argument("--scenarios", default="ready,slow13,inflight,canary,canary-abort")
    ap.add_argument("--png", type=Path, default=Path("bench/out/timeline.png"))
    args = ap.parse_args()
    daemon = dockerd.ensure_daemon()
    os.environ["DOCKER_HOST"] = daemon.host
    client = daemon.client()
    images.ensure_base_image(client)
    work = Path(tempfile.mkdtemp(prefix="bluegreen-bench-"))
    server = Nginx(work / "nginx").start()
    try:
        results = [scenario(name, args.deploys, server, work, client) for name in args.scenarios.split(",")]
        noop = noop_hook_ms(next(p for p in (work.glob("*/b1")) if p.is_dir()))
    finally:
        server.stop()
        daemon.stop()
    head = (f"{'scenario':<10} {'deploys':>7} {'deploy s (med/max)':>19} {'switch ms (med/max)':>20} "
            f"{'requests':>9} {'failed':>7} {'5s reqs failed':>15} {'hook RSS MiB':>13}")
    print(head)
    for r in results:
        sw = f"{r['switch_ms_median']:.0f} / {r['switch_ms_max']:.0f}" if r["switch_ms_median"] is not None else "-"
        slow = f"{r['slow_failed']}/{r['slow_requests']}" if r["slow_requests"] else "-"
        print(f"{r['scenario']:<10} {r['deploys']:>7} {r['deploy_s_median']:>9.2f} / {r['deploy_s_max']:<7.2f} "
              f"{sw:>20} {r['requests']:>9,} {r['failed']:>7} {slow:>15} {r['hook_peak_rss_mib']:>13.1f}")
    for r in results:
        print(f"{r['scenario']}: median seconds per event: "
              + ", ".join(f"{e} {v:.2f}" for e, v in r["event_s_median"].items())
              + "; peak RSS MiB: " + ", ".join(f"{e} {v:.0f}" for e, v in r["event_rss_mib"].items()))
    for r in results:
        for line in r["canary_lines"]:
            print(f"{r['scenario']}: {line}")
    print(f"no-op hook (ApplicationStop) start-to-exit: {noop:.0f} ms median of 15")
    if plot(results, args.png):
        print(f"timeline: {args.png}")
    return 0 if all(r["expected_failures"] or (r["failed"] == 0 and r["hook_failures"] == 0)
                    for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
