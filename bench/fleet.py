#!/usr/bin/env python3
"""Benchmark: fleet deployment time against the number of hosts (1-4) and the deployment config.

    .venv/bin/python bench/fleet.py [--hosts 1,2,3,4] [--configs OneAtATime,HalfAtATime,AllAtOnce]
                                    [--no-traffic-control] [--png docs/fleet-bench.png]

Root only (network namespaces). Starts a test fleet of max(--hosts) hosts (testbed.fleet: own dockerd and
nginx each, a balancer nginx in front), its own aws-local with the real CodeDeploy agent on every host,
deploys the example app once to every host (warm-up, not timed), then for each (config, N) one new version
to the first N hosts with ``build.py deploy``, under load through the balancer (3 threads). Prints a table:
wall time of ``build.py deploy`` (create_deployment to Succeeded, 0.3 s polls), CodeDeploy's own span
(first event start to last event end, 1 s resolution), the batches, and the failed requests. With
matplotlib installed, --png draws the requests per host and version over time.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bluegreen_hooks.cli import main as build_main  # noqa: E402
from testbed import rollout  # noqa: E402
from testbed.aws_local import AwsLocal  # noqa: E402
from testbed.fleet import Fleet  # noqa: E402
from testbed.load import Load  # noqa: E402

VENV_ROOT = "/tmp/bgh-hook-venvs"


def deploy(aws: AwsLocal, ctx: dict, group: str, version: str, config: str | None) -> tuple[float, str, str]:
    """(seconds, deployment id, output) of one ``build.py deploy`` (raises if it fails)."""
    z = rollout.make_zip(ctx["work"], ctx["fleet"].config(ctx["app"], version), f"{version}.zip")
    argv = ["deploy", str(z), "--bucket", ctx["bucket"], "--application", ctx["cdapp"], "--group", group,
            "--poll", "0.3", *(["--deployment-config", config] if config else [])]
    buf = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = build_main(argv)
    seconds = time.monotonic() - t0
    out = buf.getvalue()
    if rc != 0:
        raise SystemExit(f"deploy of {version} to {group} failed:\n{out}")
    did = next(ln.split()[1].rstrip(":") for ln in out.splitlines() if ln.startswith("deployment d-") and " -> " in ln)
    return seconds, did, out


def setup(aws: AwsLocal, fleet: Fleet, work: Path, traffic: bool) -> dict:
    import os

    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(k, None)
    os.environ.update({k: v for k, v in aws.env.items() if k.startswith("AWS_")})   # build.py deploy's boto3
    cd, s3 = aws.client("codedeploy"), aws.client("s3")
    ctx = {"cd": cd, "fleet": fleet, "work": work, "app": f"bench{uuid.uuid4().hex[:6]}",
           "cdapp": f"bghf-bench-{uuid.uuid4().hex[:6]}", "bucket": f"bghf-bench-{uuid.uuid4().hex[:8]}"}
    s3.create_bucket(Bucket=ctx["bucket"])
    cd.create_application(applicationName=ctx["cdapp"], computePlatform="Server")
    for n in range(1, fleet.n + 1):
        rollout.create_group(cd, ctx["cdapp"], f"n{n}", traffic_control=traffic)
    return ctx


def run(args: argparse.Namespace, fleet: Fleet, aws: AwsLocal, work: Path) -> tuple[list[dict], list]:
    ctx = setup(aws, fleet, work, not args.no_traffic_control)
    deploy(aws, ctx, f"n{fleet.n}", "v0", "CodeDeployDefault.AllAtOnce")           # warm-up: every host serves
    rows, samples = [], []
    t_start = time.monotonic()
    k = 0
    for config in args.configs:
        for n in args.hosts:
            if config == "HalfAtATime" and n == 1:     # M = ceil(1/2) = 1 >= N: HEALTH_CONSTRAINTS_INVALID
                rows.append({"hosts": n, "config": config, "invalid": True})
                continue
            k += 1
            version = f"v{k}"
            with Load(fleet.balancer.url, threads=3, header="X-Fleet-Host") as load:
                seconds, did, _out = deploy(aws, ctx, f"n{n}", version, f"CodeDeployDefault.{config}")
            offset = load._t0 - t_start
            samples += [(s.t + offset, s.header, s.version, s.ok) for s in load.result.samples]
            sp = rollout.spans(ctx["cd"], did)
            api = (max(s.end for s in sp) - min(s.start for s in sp)).total_seconds()
            rows.append({"hosts": n, "config": config, "seconds": round(seconds, 1), "api_seconds": api,
                         "batches": "+".join(str(len(b)) for b in rollout.batches(sp)),
                         "requests": load.result.total, "failed": load.result.failed, "version": version,
                         "start": round(offset, 1)})
            print(f"  {config:<12} {n} host(s): {seconds:5.1f}s  {load.result.summary()}", file=sys.stderr, flush=True)
    return rows, samples


def table(rows: list[dict], traffic: bool) -> str:
    head = ("| hosts | config | batches | `build.py deploy` (s) | CodeDeploy span (s) | requests | failed |\n"
            "|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['hosts']} | {r['config']} | - | HEALTH_CONSTRAINTS_INVALID (M = 1 >= N) | | | |\n"
                   if r.get("invalid") else
                   f"| {r['hosts']} | {r['config']} | {r['batches']} | {r['seconds']:.1f} | {r['api_seconds']:.0f} | "
                   f"{r['requests']} | {r['failed']} |\n" for r in rows)
    return f"traffic control (BlockTraffic/AllowTraffic): {'yes' if traffic else 'no'}\n\n" + head + body


def plot(samples: list, rows: list[dict], hosts: int, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(hosts, 1, figsize=(11, 1.6 * hosts + 1), sharex=True)
    versions = sorted({v for _, _, v, ok in samples if ok}, key=lambda v: int(v[1:]))
    colours = {v: plt.cm.tab10(i % 10) for i, v in enumerate(versions)}
    end = max((t for t, *_ in samples), default=1)
    bins = [i * 0.5 for i in range(int(end / 0.5) + 2)]
    for i, ax in enumerate(axes if hosts > 1 else [axes]):
        host = f"host{i + 1}"
        for v in versions:
            ts = [t for t, h, vv, ok in samples if ok and h == host and vv == v]
            if ts:
                ax.hist(ts, bins=bins, color=colours[v], label=v, histtype="stepfilled", alpha=0.8)
        ax.set_ylabel(f"{host}\nreq/0.5s")
        for r in rows:
            if "start" in r:
                ax.axvline(r["start"], color="grey", lw=0.5)
    axes_list = axes if hosts > 1 else [axes]
    for r in (r for r in rows if "start" in r):
        axes_list[0].text(r["start"], axes_list[0].get_ylim()[1], f"{r['config'][:4]} N={r['hosts']}", fontsize=6,
                          va="bottom")
    axes_list[-1].set_xlabel("seconds (each grey line: a deployment starts; colour: the version that answered)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[v]) for v in versions]
    fig.legend(handles, versions, loc="upper right", ncol=min(len(versions), 8), fontsize=7)
    fig.suptitle("requests through the balancer, per host and version", fontsize=10, x=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", default="1,2,3,4", help="host counts, comma-separated (default 1,2,3,4)")
    ap.add_argument("--configs", default="OneAtATime,HalfAtATime,AllAtOnce",
                    help="CodeDeployDefault.* configs, comma-separated")
    ap.add_argument("--no-traffic-control", action="store_true", help="groups without the load balancer")
    ap.add_argument("--png", type=Path, help="draw requests per host and version over time (needs matplotlib)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    args.hosts = [int(x) for x in args.hosts.split(",")]
    args.configs = args.configs.split(",")
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="bghf-", dir="/tmp")), n=max(args.hosts))
    with tempfile.TemporaryDirectory(prefix="bgh-bench-fleet-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        fleet.start()
        inst = {f"n{n}": fleet.instances(fleet.hosts[:n], env={"BLUEGREEN_VENV_ROOT": VENV_ROOT})
                for n in range(1, fleet.n + 1)}
        (work / "instances.json").write_text(json.dumps(inst))
        try:
            with AwsLocal(work / "instances.json") as aws:
                print(f"fleet of {fleet.n} + aws-local up in {time.monotonic() - t0:.1f}s", file=sys.stderr)
                rows, samples = run(args, fleet, aws, work)
        finally:
            left = fleet.stop()
    print(table(rows, not args.no_traffic_control))
    if left:
        print(f"LEFT BEHIND: {left}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.png:
        print(f"picture: {args.png}" if plot(samples, rows, fleet.n, args.png) else "matplotlib is not installed")
    return 1 if left or any(r.get("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
