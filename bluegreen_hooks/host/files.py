"""The one way this package replaces a file (temp file in the same folder, fsync, rename), and the one way it
opens a path a config value names (its type checked first, never blocking on a FIFO)."""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Literal

from bluegreen_hooks.errors import ConfigError


def write_atomic(path: Path, data: str | bytes, mode: int | None = None, fsync_dir: bool = False) -> None:
    """Replace ``path`` with ``data`` in one rename, so a reader sees the old file or the new one.

    The file keeps its permissions (0644 when new) unless ``mode`` is given; when the file existed and
    this process may, its owner and group are kept too. ``fsync_dir`` also syncs the folder (the rename
    survives a crash).
    """
    old = None
    with contextlib.suppress(FileNotFoundError):
        old = os.stat(path)
    if mode is None:
        mode = old.st_mode & 0o7777 if old is not None else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
            with contextlib.suppress(PermissionError):
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync_dir:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# --------------------------------------------------------------------------- paths named by the config
# Every file or folder the package opens that a config value names (nginx/include and nginx/pid_file,
# deploy/metrics_dir, deploy/emf, notify/webhook_file and auth_file, maintenance/bypass_token_file, the
# state directory ``deploy/state_dir`` and every file opened in it) goes through these: its type is checked
# before it is opened, and files are opened with O_NONBLOCK (a FIFO there would block open() or read() for
# ever) and checked again on the descriptor.

_TYPES = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
          (stat.S_ISREG, "a regular file"))
Kind = Literal["file", "folder"]


def _type_name(mode: int) -> str:
    return next((name for test, name in _TYPES if test(mode)), "not a file")


def wrong_type(path: Path, key: str, mode: int, kind: Kind = "file") -> ConfigError:
    """The one-line error for a config path of the wrong type, naming the key and the path."""
    want = "a regular file" if kind == "file" else "a folder"
    return ConfigError(f"{key}: {path} is {_type_name(mode)}, not {want}; refusing to open it")


def check_type(path: Path, key: str, kind: Kind = "file", follow: bool = True) -> os.stat_result | None:
    """The ``stat`` of ``path`` (``lstat`` when not ``follow``) when it is a ``kind``; None when it is absent;
    ConfigError naming ``key`` when it is anything else (a FIFO, a device, a socket, a folder for a file...)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot use {path}: {exc.strerror}") from exc
    return require(st, path, key, kind)


def require(st: os.stat_result, path: Path, key: str, kind: Kind = "file") -> os.stat_result:
    """``st`` when it is of ``kind``; else the ConfigError of ``wrong_type`` (for callers that stat themselves,
    e.g. host/trust.py's checks of the state directory, which also check the owner and the mode)."""
    ok = stat.S_ISREG(st.st_mode) if kind == "file" else stat.S_ISDIR(st.st_mode)
    if not ok:
        raise wrong_type(path, key, st.st_mode, kind)
    return st


def open_file(path: Path, key: str, flags: int = os.O_RDONLY, mode: int = 0o644, follow: bool = True) -> int:
    """An fd of the regular file ``path``, opened with ``flags`` plus O_NONBLOCK and O_CLOEXEC (and O_NOFOLLOW
    when not ``follow``) so that a FIFO or a device there never blocks; the type is checked on the descriptor.
    FileNotFoundError passes through (the caller knows whether a missing file is fine); anything that is not a
    regular file is a ConfigError naming ``key`` and ``path``."""
    extra = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags | extra, mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ELOOP, errno.EISDIR):   # FIFO without a reader, symlink, folder
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                raise wrong_type(path, key, st.st_mode) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise wrong_type(path, key, st.st_mode)
    os.set_blocking(fd, True)
    return fd


def read_file(path: Path, key: str, limit: int = 1 << 20, follow: bool = True) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``; ConfigError when larger), opened with
    ``open_file``. FileNotFoundError and other OSErrors pass through."""
    fd = open_file(path, key, follow=follow)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"{key}: {path} is larger than {limit} bytes; refusing to read it")
    return data


def read_text(path: Path, key: str, limit: int = 1 << 20, follow: bool = True) -> str:
    """``read_file`` decoded as UTF-8 (UnicodeDecodeError passes through)."""
    return read_file(path, key, limit, follow).decode("utf-8")

