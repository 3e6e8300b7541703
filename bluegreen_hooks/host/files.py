"""The one way this package replaces a file: temp file in the same folder, fsync, rename."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


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
