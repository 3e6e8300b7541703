"""How fast a hook starts: the Python ApplicationStop event (a no-op that reads the state and reports) from
start to exit.

Runs ``hooks/launch ApplicationStop`` of a bundle of the example app as the agent runs a hook (own process group,
cwd /, stdin closed), N times: what every Python hook pays before its first step (the bundle's own
``hooks/ApplicationStop`` is plain sh and starts no interpreter), with this interpreter's venv first on PATH,
and prints the median and the spread. Needs no Docker and no nginx: ApplicationStop touches neither. Usage:

    .venv/bin/python bench/hook_start.py [-n 25]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from testbed.bundle import hook_env, make_bundle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=25, help="runs (default 25)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgh-hookstart-") as tmp:
        work = Path(tmp)
        cfg = {"app": "hookstart", "container": {"image": "bluegreen-base:busybox"},
               "deploy": {"state_dir": str(work / "state")}}
        bundle = make_bundle(work / "bundle", cfg)
        os.environ.update(hook_env("d-hookstart"))
        os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
        argv = [str(bundle / "hooks" / "launch"), "ApplicationStop"]

        def run_hook() -> subprocess.CompletedProcess[str]:
            return subprocess.run(argv, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        run_hook()   # warm the page cache
        times = []
        for _ in range(args.n):
            t0 = time.monotonic()
            run = run_hook()
            times.append((time.monotonic() - t0) * 1000)
            if run.returncode != 0:
                print(run.stdout, file=sys.stderr)
                return 1
    q = statistics.quantiles(times, n=10)
    print(f"no-op hook (ApplicationStop) start-to-exit over {args.n} runs: median {statistics.median(times):.0f} ms, "
          f"p10 {q[0]:.0f} ms, p90 {q[-1]:.0f} ms, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
