"""What /proc says about processes and sockets (Linux). The one place that reads /proc.

* ``process_start_time`` / ``process_alive``: a pid plus its start time names one process (a reused pid
  does not count as alive);
* ``children``: the nginx workers of a master;
* ``listening_inodes`` / ``holders``: who holds a listening TCP port (root sees every process, another
  user only their own);
* ``connections_to``: how many established connections go to a port (e.g. requests still open on a colour);
* ``memory_in_use``: a process's memory cgroup (a container's) as ``docker stats`` counts it, read at once.

The socket tables come from the kernel's sock_diag netlink interface when it answers (host/sockdiag.py:
filtered by state in the kernel, fast under load), else from /proc/net/tcp.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_TCP_LISTEN = "0A"   # the state column of a listening socket in /proc/net/tcp
_TCP_ESTABLISHED = "01"


def _stat_fields(pid: int | str, proc: Path = PROC) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_start_time(pid: int, proc: Path = PROC) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it does not run."""
    fields = _stat_fields(pid, proc)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int | None, start_time: int | None) -> bool:
    """True when ``pid`` runs and is the same process (same start time, so a reused pid does not count)."""
    if not pid:
        return False
    now = process_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def children(parent: int, proc: Path = PROC) -> list[list[int]]:
    """The live (not zombie) children of ``parent``, as sorted [pid, start time] pairs."""
    out = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry, proc)
        if fields is not None and int(fields[1]) == parent and fields[0] not in ("Z", "X"):
            out.append([int(entry), int(fields[19])])
    return sorted(out)


def group_members(pgid: int, proc: Path = PROC) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    out = []
    for entry in os.listdir(proc):
        if entry.isdigit():
            fields = _stat_fields(entry, proc)
            if fields is not None and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                out.append(int(entry))
    return sorted(out)


def _tcp_sockets(proc: Path) -> Iterator[list[str]]:
    """The rows of /proc/net/tcp and tcp6, split: [1] local address:port, [2] remote, [3] state, [9] inode."""
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9:
                yield f


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def listening_inodes(port: int, proc: Path = PROC) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address): from the kernel's sock_diag (host/sockdiag.py),
    else from /proc/net/tcp and tcp6."""
    from bluegreen_hooks.host import sockdiag

    diag = sockdiag.sockets(1 << sockdiag.TCP_LISTEN) if proc == PROC else None
    if diag is not None:
        return {str(s.inode) for s in diag if s.local_port == port} - {"0"}
    inodes = {f[9] for f in _tcp_sockets(proc) if f[3] == _TCP_LISTEN and _port(f[1]) == port}
    return inodes - {"0"}


def connections_to(port: int, proc: Path = PROC) -> int:
    """How many established TCP connections go to ``port`` (counted on the client side: remote port)."""
    from bluegreen_hooks.host import sockdiag

    diag = sockdiag.sockets(1 << sockdiag.TCP_ESTABLISHED) if proc == PROC else None
    if diag is not None:
        return sum(1 for s in diag if s.remote_port == port)
    return sum(1 for f in _tcp_sockets(proc) if f[3] == _TCP_ESTABLISHED and _port(f[2]) == port)


def holders(port: int, proc: Path = PROC) -> list[tuple[int, str]]:
    """(pid, command) of the processes holding a listening socket on ``port``; empty if unknown."""
    return holders_of([port], proc)[port]


def holders_of(ports: Iterable[int], proc: Path = PROC) -> dict[int, list[tuple[int, str]]]:
    """``holders`` of several ports from one walk over /proc/*/fd (the walk is the expensive part: every
    descriptor of every process, thousands under load)."""
    targets = {f"socket:[{i}]": port for port in set(ports) for i in listening_inodes(port, proc)}
    found: dict[int, list[tuple[int, str]]] = {port: [] for port in ports}
    if not targets:
        return found
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = f"{proc}/{entry}/fd/"       # strings, not Paths: ~2x faster over thousands of descriptors
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        seen: set[int] = set()
        for fd in fds:
            try:
                port = targets.get(os.readlink(fd_dir + fd))
            except OSError:
                continue
            if port is not None and port not in seen:
                seen.add(port)
                found[port].append((int(entry), command(int(entry), proc)))
    return {port: sorted(pids) for port, pids in found.items()}


def command(pid: int, proc: Path = PROC, width: int = 60) -> str:
    """The command line of ``pid`` (its comm when the command line is empty), cut to ``width``."""
    pdir = proc / str(pid)
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
    return text if len(text) <= width else text[:width - 3] + "..."


def cgroup(pid: int, proc: Path = PROC) -> str:
    """The text of /proc/<pid>/cgroup ("" when unreadable): a container's processes name its id there."""
    try:
        return (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return ""


def ancestors(pid: int, proc: Path = PROC, limit: int = 64) -> list[int]:
    """``pid`` and its parents up to init (at most ``limit``)."""
    out = [pid]
    while len(out) < limit:
        fields = _stat_fields(out[-1], proc)
        if fields is None or int(fields[1]) <= 1:
            break
        out.append(int(fields[1]))
    return out


def memory_in_use(pid: int, proc: Path = PROC, root: Path = CGROUP_ROOT) -> int | None:
    """The memory use of ``pid``'s memory cgroup (a container's main process: the container's) as ``docker
    stats`` counts it: usage less the page cache it could drop (cgroup v1 ``memory.usage_in_bytes`` less
    ``total_inactive_file``; v2 ``memory.current`` less ``inactive_file``). None when it cannot be read (another
    cgroup namespace, no permission, the process gone): ask Docker then. Docker's one-shot stats answer at its
    collector's next tick, up to ~1 s later; these files answer at once."""
    found = None
    for line in cgroup(pid, proc).splitlines():
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if "memory" in controllers.split(","):
            found = (root / "memory" / path.lstrip("/"), "memory.usage_in_bytes", "total_inactive_file")
            break
        if controllers == "" and line.startswith("0::"):
            found = (root / path.lstrip("/"), "memory.current", "inactive_file")
    if found is None:
        return None
    folder, usage_file, inactive_key = found
    try:
        usage = int((folder / usage_file).read_text())
        stat = dict(ln.split(" ", 1) for ln in (folder / "memory.stat").read_text().splitlines() if " " in ln)
        inactive = int(stat.get(inactive_key, "0"))
    except (OSError, ValueError):
        return None
    return max(0, usage - inactive)
