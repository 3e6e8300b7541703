"""Is a file or folder safe to trust? The state directory and its files decide what runs as root.

The state directory holds ``<app>.json`` (the state), ``<app>.lock`` and ``<app>.toml`` (the copy of the
live config whose nginx commands the operator commands run). Like sshd's StrictModes and sudo's checks of
sudoers, a folder or file there is refused when another user could have written it: it must be owned by
the running user (or root) and not writable by its group or by others, and a file must not be a symbolic
link. The type (a folder, a regular file: never a FIFO or a device) is checked by host/files.py's one helper,
a ConfigError naming deploy/state_dir and the path. Files are opened with ``O_NOFOLLOW`` and checked again
on the open descriptor (``fstat``), so a file swapped in between the check and the open is refused too.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from bluegreen_hooks.errors import StateError
from bluegreen_hooks.host import files

STATE_KEY = "deploy/state_dir"   # the key named when a path in the state directory has the wrong type


def _owners() -> tuple[int, ...]:
    return (os.geteuid(), 0)


def problem(st: os.stat_result, kind: str = "file") -> str | None:
    """What makes a ``stat`` result untrusted (None when it is fine)."""
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if kind == "folder" and not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid not in _owners():
        return f"is owned by uid {st.st_uid}, not by uid {os.geteuid()} (the running user) or root"
    if mode & 0o022:
        who = "its group and others" if mode & 0o022 == 0o022 else ("others" if mode & 0o002 else "its group")
        return f"is writable by {who} (mode {mode:o})"
    return None


def _fix(path: Path, kind: str) -> str:
    if kind == "folder":
        return f"chown {os.geteuid()} {path} && chmod go-w {path}"
    return f"remove {path}, or chown {os.geteuid()} {path} && chmod go-w {path}"


def refuse(path: Path, why: str, kind: str = "file") -> StateError:
    """The one-line error for an untrusted ``path``."""
    return StateError(f"{path} {why}: another user could change what bluegreen-hooks runs as root; "
                      f"refusing to use it ({_fix(path, kind)})")


def _typed(st: os.stat_result, path: Path, kind: files.Kind, key: str | None) -> os.stat_result:
    """A symlink is refused as untrusted (``refuse``); any other wrong type (a FIFO, a device, a folder for a
    file...) by host/files.py's one type check, a ConfigError naming ``key`` and the path (``key`` None: a path
    outside the state directory, e.g. --config, left to ``problem``)."""
    if stat.S_ISLNK(st.st_mode):
        raise refuse(path, "is a symbolic link", kind)
    return files.require(st, path, key, kind) if key else st


def check_folder(path: Path, key: str | None = STATE_KEY) -> None:
    """Refuse the folder ``path`` when it is untrusted; a missing folder is fine (we create it 0700)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    why = problem(_typed(st, path, "folder", key), "folder")
    if why:
        raise refuse(path, why, "folder")


def check_file(path: Path, key: str | None = STATE_KEY) -> None:
    """Refuse the file ``path`` when it is untrusted (a symlink, another owner, group/world-writable);
    a missing file is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    why = problem(_typed(st, path, "file", key))
    if why:
        raise refuse(path, why)


def check_fd(fd: int, path: Path, key: str | None = STATE_KEY) -> None:
    """Refuse an opened file whose descriptor says it is untrusted (the race-free check after open)."""
    why = problem(_typed(os.fstat(fd), path, "file", key))
    if why:
        raise refuse(path, why)


def read_text(path: Path, limit: int = 1 << 20) -> str:
    """Read a trusted file: refused as a symlink (``O_NOFOLLOW``), with another owner or writable mode."""
    check_folder(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise refuse(path, "is a symbolic link") from exc
        raise
    with os.fdopen(fd, "rb") as f:
        check_fd(f.fileno(), path)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise StateError(f"{path} is larger than {limit} bytes: not a file bluegreen-hooks wrote")
    return data.decode("utf-8")
