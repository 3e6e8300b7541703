"""Is a colour's port free for our container? Who holds it if not?

Before the target colour starts, nothing may answer on its port: with host networking a foreign
process there would make our container fail to bind (a crash loop) — or worse, answer the health
check in its place, so that nginx would be switched to it. ``check_free`` refuses with one line that
names the port, the config key, and the holder's pid and command when /proc tells us (Linux; for a
process of another user only root can see its file descriptors).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Iterable

from bluegreen_hooks.errors import ContainerStartError

_LISTEN = "0A"   # TCP_LISTEN in /proc/net/tcp


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to host:port succeeds (something listens there)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Socket inodes listening on ``port`` (any address), from /proc/net/tcp and tcp6."""
    inodes = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == _LISTEN and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def holders(port: int, proc: Path = Path("/proc")) -> list[tuple[int, str]]:
    """(pid, command) of the processes holding a listening socket on ``port``; empty if unknown."""
    inodes = {f"socket:[{i}]" for i in listening_inodes(port, proc)} - {"socket:[0]"}
    if not inodes:
        return []
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(proc / entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(proc / entry / "fd" / fd) in inodes:
                    found.append((int(entry), _command(proc / entry)))
                    break
            except OSError:
                continue
    return sorted(found)


def _command(pdir: Path) -> str:
    try:
        argv = (pdir / "cmdline").read_bytes().split(b"\0")
        text = " ".join(a.decode("utf-8", "replace") for a in argv if a)
    except OSError:
        text = ""
    if not text:
        try:
            text = (pdir / "comm").read_text().strip()
        except OSError:
            text = "?"
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def describe_holder(port: int) -> str:
    """``pid 123 (python3 -m http.server)``, or ``another process`` when /proc does not say."""
    found = holders(port)
    if not found:
        return "another process"
    pid, cmd = found[0]
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    return f"pid {pid} ({cmd}){more}"


def check_free(host: str, ports: Iterable[tuple[str, int]], colour: str) -> None:
    """Raise ContainerStartError when one of ``ports`` ((config key, port) pairs) already answers."""
    for key, port in ports:
        if answers(host, port):
            raise ContainerStartError(
                f"{colour} port {host}:{port} is already in use by {describe_holder(port)}, not by a "
                f"bluegreen-hooks container; stop it or change {key}, then retry")
