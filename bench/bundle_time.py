#!/usr/bin/env python3
"""Benchmark: time to bundle the example app (wheels cached) and the bundle's size; the launcher's venv cost.

    .venv/bin/python bench/bundle_time.py [--runs 10]

Prints one line per figure. Target (issue 4): bundle <= 1 s with the wheel cache warm.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bluegreen_hooks.delivery import bundle as bundling  # noqa: E402
from bluegreen_hooks.delivery.wheels import runtime_wheels, wheel_cache  # noqa: E402
from testbed.bundle import toml_dumps  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-launcher", action="store_true", help="skip the venv build/reuse timing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgh-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        shutil.copytree(ROOT / "example" / "app", src / "app")
        (src / "bluegreen.toml").write_text(toml_dumps({"app": "demo", "container": {"build": "app"},
                                                        "deploy": {"state_dir": str(tmp / "state")}}))
        runtime_wheels(wheel_cache())          # warm the wheel cache (not timed)
        times, shas = [], set()
        for i in range(args.runs):
            t0 = time.perf_counter()
            res = bundling.bundle(src / "bluegreen.toml", tmp / f"b{i}.zip")
            times.append(time.perf_counter() - t0)
            shas.add(res.sha256)
        with zipfile.ZipFile(res.path) as zf:
            infos = zf.infolist()
        wheels = sum(i.file_size for i in infos if i.filename.startswith("wheels/"))
        print(f"bundle time (example app, wheels cached, {args.runs} runs): "
              f"median {statistics.median(times) * 1000:.0f} ms, "
              f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
        print(f"bundle size: {res.size:,} bytes zipped, {sum(i.file_size for i in infos):,} unzipped, "
              f"{len(infos)} files (wheels {wheels:,} bytes)")
        print(f"reproducible: {len(shas) == 1} ({len(shas)} distinct sha256 over {args.runs} builds)")
        nowheels = bundling.bundle(src / "bluegreen.toml", tmp / "nw.zip", with_wheels=False)
        print(f"bundle size without wheels: {nowheels.size:,} bytes")
        if not args.no_launcher:
            bundle = tmp / "unpacked"
            with zipfile.ZipFile(res.path) as zf:
                zf.extractall(bundle)
                for i in zf.infolist():
                    os.chmod(bundle / i.filename, (i.external_attr >> 16) & 0o777)
            # the agent's (systemd) PATH
            env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "BLUEGREEN_VENV_ROOT": str(tmp / "venvs"),
                   "DEPLOYMENT_ID": "d-bench"}
            hook = [str(bundle / "hooks" / "ApplicationStop")]
            for label in ("first hook (builds the venv offline)", "next hook (reuses it)"):
                t0 = time.perf_counter()
                subprocess.run(hook, env=env, check=True, capture_output=True)
                print(f"{label}: {(time.perf_counter() - t0) * 1000:.0f} ms (ApplicationStop end to end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
