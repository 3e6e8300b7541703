"""A Docker daemon for tests: the one DOCKER_HOST (or the default socket) reaches, else a private one.

The private daemon runs with ``--bridge=none --iptables=false --ip-masq=false`` (no docker0, no NAT):
every container of the test bed uses host networking. Its data root is kept under a cache directory so
images survive between sessions; its sockets live under a short path in /tmp.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("BLUEGREEN_TESTBED_CACHE", Path.home() / ".cache" / "bluegreen-hooks"))
RUN_DIR = Path(os.environ.get("BLUEGREEN_TESTBED_RUN", "/tmp/bgh-dockerd"))


@dataclass
class Daemon:
    """A reachable daemon: ``host`` is the DOCKER_HOST value; ``proc`` is set when we started it."""

    host: str
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def client(self, timeout: int = 120):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=timeout)

    def stop(self, timeout: float = 30) -> None:
        """Stop the daemon if this process started it (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def answers(host: str, timeout: float = 3) -> bool:
    import docker

    try:
        with contextlib.closing(docker.DockerClient(base_url=host, timeout=timeout)) as client:
            return bool(client.ping())
    except Exception:
        return False


def default_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def ensure_daemon(deadline_s: float = 60) -> Daemon:
    """Return a daemon that answers, starting a private ``dockerd`` (as root) when none does."""
    host = default_host()
    if answers(host):
        return Daemon(host)
    private = f"unix://{RUN_DIR}/docker.sock"
    if answers(private):
        return Daemon(private)
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        raise RuntimeError(f"no Docker daemon answers at {host}, and dockerd cannot be started here "
                           "(needs root and `apt-get install docker.io`)")
    data_root = CACHE / "docker"
    for d in (data_root, RUN_DIR):
        d.mkdir(parents=True, exist_ok=True)
    log = RUN_DIR / "dockerd.log"
    argv = ["dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
            f"--data-root={data_root}", f"--exec-root={RUN_DIR}/exec", f"--pidfile={RUN_DIR}/docker.pid",
            "-H", private]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {proc.returncode}; see {log}")
        if answers(private, timeout=1):
            return Daemon(private, proc, log)
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"dockerd did not answer within {deadline_s:.0f}s; see {log}")
