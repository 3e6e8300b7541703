"""What BeforeInstall's memory preflight costs, and what it says on a host too small for both colours.

Starts 1 and then 3 containers of a "live colour" (busybox, each holding ``--hold`` MiB like a JVM heap) on the
test bed's Docker daemon, then times ``lifecycle/memory.estimate`` (one-shot stats of every live container, in
parallel) N times each; finally prints the one-line refusal for a host whose MemAvailable is the live colour's
use (a 2 GB instance running 3 JVMs of 600 MiB has about that much left). Usage:

    .venv/bin/python bench/memory_preflight.py [-n 10] [--hold 100]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bluegreen_hooks.config import parse
from bluegreen_hooks.config.memory import MIB, mib
from bluegreen_hooks.lifecycle import memory
from testbed import dockerd, images


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=10, help="timed estimates per size (default 10)")
    p.add_argument("--hold", type=int, default=100, help="MiB each live container holds (default 100)")
    args = p.parse_args()
    import docker

    daemon = dockerd.ensure_daemon()
    client = docker.DockerClient(base_url=daemon.host)
    base = images.ensure_base_image(client)
    app = f"memb{uuid.uuid4().hex[:6]}"
    cfg = parse({"app": app, "container": {"image": base}}, Path("/tmp/bluegreen.toml"), environ={},
                check_files=False, as_root=True)
    started = []
    try:
        for n in (1, 3):
            while len(started) < n:
                started.append(client.containers.run(
                    base, ["sh", "-c", f"{{ head -c {args.hold}m /dev/zero; exec sleep 100000; }} | tail"],
                    detach=True, network_mode="host", labels={"bluegreen.app": app, "bluegreen.colour": "blue"}))
            end = time.monotonic() + 60
            while time.monotonic() < end:   # until each holds its memory
                used, _ = memory.measure(started)
                if len(used) == n and min(used.values()) >= (args.hold - 2) * MIB:
                    break
                time.sleep(0.2)
            times, est = [], None
            for _ in range(args.n):
                t0 = time.monotonic()
                est = memory.estimate(cfg, "blue", started)
                times.append((time.monotonic() - t0) * 1000)
            assert est is not None
            print(f"{n} live container(s): estimate {mib(est.need)} ({est.how}) in {statistics.median(times):.0f} ms "
                  f"median, {min(times):.0f}-{max(times):.0f} ms over {args.n}")
        assert est is not None
        print("a host with MemAvailable = what the live colour uses:")
        print("ERROR BeforeInstall: " + str(memory.refusal("green", "blue", est, 128 * MIB, est.need)))
    finally:
        for c in started:
            c.remove(force=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
