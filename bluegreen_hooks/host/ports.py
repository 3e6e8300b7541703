"""Is a colour's port free for our container? Who holds it if not?

Before the target colour starts, nothing may answer on its port: with host networking a foreign
process there would make our container fail to bind (a crash loop) — or worse, answer the health
check in its place, so that nginx would be switched to it. ``check_free`` refuses with one line that
names the port, the config key, and the holder's pid and command when /proc tells us (Linux; for a
process of another user only root can see its file descriptors).
"""
from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Callable

from bluegreen_hooks.errors import ContainerStartError
from bluegreen_hooks.host.procfs import holders


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to host:port succeeds (something listens there)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def describe_holder(port: int) -> str:
    """``pid 123 (python3 -m http.server)``, or ``another process`` when /proc does not say."""
    found = holders(port)
    if not found:
        return "another process"
    pid, cmd = found[0]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    return f"pid {pid} ({cmd}){more}"


def check_free(host: str, ports: Iterable[tuple[str, int]], colour: str,
               owner: Callable[[int], str | None] | None = None) -> None:
    """Raise ContainerStartError when one of ``ports`` ((config key, port) pairs) already answers.

    ``owner(pid)`` names a holder that is a bluegreen-hooks container (of another app): runtime/owner.py.
    """
    for key, port in ports:
        if not answers(host, port):
            continue
        theirs = next((d for d in (owner(pid) for pid, _ in holders(port)) if d), None) if owner else None
        if theirs:
            raise ContainerStartError(f"{colour} port {host}:{port} is already in use by {theirs}; each app needs "
                                      f"its own ports: change {key} (or stop that container), then retry")
        raise ContainerStartError(
            f"{colour} port {host}:{port} is already in use by {describe_holder(port)}, not by a "
            f"bluegreen-hooks container; stop it or change {key}, then retry")


def _published(attrs: dict, port: int) -> bool:
    """The container publishes host ``port`` (bridge networking: docker-proxy listens for it)."""
    bound = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    return any(str(b.get("HostPort")) == str(port) for bs in bound.values() if bs for b in bs)


def foreign_holder(port: int, containers: list[dict], found: list[tuple[int, str]] | None = None) -> str | None:
    """None when every process listening on ``port`` belongs to one of ``containers`` (inspect data): it runs
    in the container's cgroup or below its main process, or is the docker-proxy of a port it publishes.
    Else ``pid N (command)`` of the first other holder. No listener visible (e.g. not root): None.
    ``found``: the port's holders when already known (``procfs.holders_of``)."""
    from bluegreen_hooks.host import procfs

    ids = [str(a["Id"]) for a in containers if a.get("Id")]
    mains = {int((a.get("State") or {}).get("Pid") or 0) for a in containers} - {0}
    for pid, cmd in holders(port) if found is None else found:
        group = procfs.cgroup(pid)
        if not group and not procfs.process_alive(pid, None):
            continue   # it ended since the walk (a forking server's per-request child): it holds nothing now
        if any(i in group for i in ids) or mains & set(procfs.ancestors(pid)):
            continue
        if "docker-proxy" in cmd and any(_published(a, port) for a in containers):
            continue
        return f"pid {pid} ({cmd})"
    return None


def check_held_by(host: str, ports: Iterable[tuple[str, int]], containers: list[dict], colour: str) -> None:
    """Before traffic goes to ``colour``: refuse when another process holds one of its ports."""
    from bluegreen_hooks.host.procfs import holders_of

    ports = list(ports)
    found = holders_of([port for _, port in ports])   # one walk over /proc for all of them
    for key, port in ports:
        other = foreign_holder(port, containers, found[port])
        if other:
            raise ContainerStartError(
                f"{colour} port {host}:{port} ({key}) is held by {other}, not by {colour}'s container(s); "
                f"refusing to send traffic to it")
