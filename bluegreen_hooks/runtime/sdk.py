"""The docker SDK as both backends use it: the connection, a container read into a plain ``Container`` record,
log tails, ``docker exec``, one-shot stats and ``docker top``; the health wait and the ports check over
the SDK's inspect data. Everything that takes a client or an SDK container stays in runtime/: the Backend
protocol (runtime/base.py) passes the plain values these return. ``docker`` is imported lazily.
"""
from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import DockerUnavailable
from bluegreen_hooks.model import Colour, Say
from bluegreen_hooks.runtime.base import DOCKER_TIMEOUT, Container, DeclaredMemory, TaskResult

OUTPUT_TAIL = 120     # characters of a task's output: the hook's last line (runner.LAST_LINE_MAX) keeps it


class SdkParts:
    """The Backend members both backends implement the same way through their SDK ``client`` (over their own
    ``sdk_containers`` and ``watch``)."""

    cfg: Config
    client: Any

    def sdk_containers(self, colour: Colour) -> list[Any]:
        """The colour's containers as SDK objects (runtime/ only)."""
        raise NotImplementedError

    def watch(self, colour: Colour) -> list[dict[str, Any]]:
        """Fresh inspect data of the containers whose health decides the colour's (runtime/ only)."""
        raise NotImplementedError

    def artifact_exists(self, deployment_id: str) -> bool | None:
        return None

    def declared_memory(self, colour: Colour, deployment_id: str) -> dict[str, DeclaredMemory]:
        return {}

    def server_version(self) -> str:
        return str(self.client.version().get("Version", "?"))

    def containers(self, colour: Colour) -> list[Container]:
        return [record(c) for c in self.sdk_containers(colour)]

    def wait_healthy(self, colour: Colour, say: Say) -> float:
        return wait_healthy(self.cfg, self.client, colour, lambda: self.watch(colour), say)

    def check_ports_held(self, colour: Colour) -> None:
        check_ports_held(self.cfg, self.sdk_containers(colour), colour)

    def exec_task(self, container_id: str, argv: Sequence[str], env: Mapping[str, str],
                  timeout: float) -> TaskResult:
        return exec_in(self.client, container_id, argv, env, timeout)

    def memory_used(self, container_id: str) -> int | None:
        return memory_used(self.client, container_id)

    def process_ids(self, container_id: str) -> list[int]:
        return process_ids(self.client, container_id)


def connect(timeout: int = DOCKER_TIMEOUT) -> Any:
    """A DockerClient from the environment (DOCKER_HOST …), checked with a ping."""
    from bluegreen_hooks.startup import importing

    try:
        with importing():
            import docker
    except ImportError as exc:  # pragma: no cover - the launcher installs it
        raise DockerUnavailable(f"the docker Python package is missing ({exc}); "
                                f"install bluegreen-hooks' dependencies") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DockerUnavailable(f"Docker daemon unreachable ({reason}); start Docker (systemctl start docker) "
                                f"or set DOCKER_HOST, then retry") from exc
    return client


def record(cont: Any) -> Container:
    """An SDK container (list + inspect data, as the SDK holds it) as a plain record."""
    attrs = cont.attrs
    state = attrs.get("State", {})
    return Container(id=cont.id, short_id=cont.short_id, name=cont.name, status=state.get("Status") or cont.status,
                     labels=dict(cont.labels or {}), health=(state.get("Health") or {}).get("Status"),
                     restarts=attrs.get("RestartCount", 0) or 0, started=state.get("StartedAt"),
                     image=(attrs.get("Config") or {}).get("Image"), pid=state.get("Pid") or 0)


def logs_tail(cont: Any, lines: int = 15, width: int = 200) -> list[str]:
    """The last lines of a container's output (each cut to ``width`` characters)."""
    try:
        text = cont.logs(tail=lines).decode("utf-8", "replace")
    except Exception:
        return []
    return [ln[:width] for ln in text.splitlines()[-lines:]]


def wait_healthy(cfg: Config, client: Any, colour: Colour, watch: Any, say: Say, port: int | None = None) -> float:
    """host/health.wait_healthy over ``watch()`` (the containers' fresh inspect data), running a ``starting``
    container's own HEALTHCHECK at once (runtime/healthcheck.py)."""
    from bluegreen_hooks.host import health
    from bluegreen_hooks.runtime.healthcheck import early_checks

    return health.wait_healthy(cfg, colour, watch, say, port=port, check_now=early_checks(client))


def check_ports_held(cfg: Config, conts: Sequence[Any], colour: Colour) -> None:
    """host/ports.check_held_by with the inspect data of ``colour``'s containers."""
    from bluegreen_hooks.host import ports

    ports.check_held_by(cfg.host, cfg.colour_port_keys(colour), [c.attrs for c in conts], colour)


def _tail(chunks: collections.deque[bytes]) -> str:
    text = b"".join(chunks).decode("utf-8", "replace")
    text = " / ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return text[-OUTPUT_TAIL:]


def exec_in(client: Any, container_id: str, argv: Sequence[str], env: Mapping[str, str],
            timeout: float) -> TaskResult:
    """Run ``argv`` in the container; its exit code (None on timeout: killed), output tail and seconds."""
    api = client.api
    t0 = time.monotonic()
    ex = api.exec_create(container_id, list(argv), environment=dict(env), stdout=True, stderr=True)
    chunks: collections.deque[bytes] = collections.deque(maxlen=64)

    def read() -> None:
        with contextlib.suppress(Exception):
            for chunk in api.exec_start(ex["Id"], stream=True):
                chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():   # its timeout: kill the process (its host pid) and what it started
        pid = api.exec_inspect(ex["Id"]).get("Pid") or 0
        if pid > 0:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        reader.join(10)
        return TaskResult(None, _tail(chunks), time.monotonic() - t0)
    return TaskResult(api.exec_inspect(ex["Id"]).get("ExitCode"), _tail(chunks), time.monotonic() - t0)


def usage_of(stats: dict[str, Any]) -> int | None:
    """A container's memory use as ``docker stats`` shows it: usage less the page cache it could drop
    (cgroup v1: total_inactive_file, else cache; cgroup v2: inactive_file)."""
    ms = stats.get("memory_stats") or {}
    usage = ms.get("usage")
    if not isinstance(usage, int):
        return None
    state = ms.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file", "cache"):
        if isinstance(state.get(key), int):
            return max(0, usage - state[key])
    return usage


def memory_used(client: Any, container_id: str) -> int | None:
    """One-shot stats (what ``Container.stats(stream=False, one_shot=True)`` asks); raises when Docker fails."""
    return usage_of(client.api.stats(container_id, stream=False, one_shot=True))


def process_ids(client: Any, container_id: str) -> list[int]:
    """The host pids of a running container's processes (``docker top``)."""
    try:
        top = client.api.top(container_id, ps_args="-eo pid")
    except Exception:
        return []
    titles = [t.upper() for t in top.get("Titles") or []]
    col = titles.index("PID") if "PID" in titles else 0
    out = []
    for row in top.get("Processes") or []:
        try:
            out.append(int(row[col]))
        except (ValueError, IndexError):
            continue
    return out
