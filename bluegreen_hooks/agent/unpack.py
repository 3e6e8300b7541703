"""A revision's files on disk, as the agent handles them: the bundle unpacked (DownloadBundle), the
appspec's ``files:`` copied (Install), and what the previous Install created removed first."""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from bluegreen_hooks.agent.scripts import UNKNOWN_ERROR, EventFailed
from bluegreen_hooks.errors import ConfigError


def unpack(bundle: Path, dest: Path) -> None:
    """Copy a bundle folder, or extract a zip (keeping the modes stored in it), into ``dest``."""
    if bundle.is_dir():
        shutil.copytree(bundle, dest, symlinks=True)
        return
    if not zipfile.is_zipfile(bundle):
        raise ConfigError(f"{bundle}: not a folder or a zip file")
    dest.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not str(target).startswith(str(dest.resolve()) + os.sep) and target != dest.resolve():
                raise ConfigError(f"{bundle}: entry {info.filename!r} would be extracted outside the bundle")
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o7777
            if mode and not info.is_dir():
                os.chmod(target, mode)


def copy_files(src: Path, dest: Path, behaviour: str, created: list[str]) -> None:
    """The agent's ``files:`` copy: a file into ``dest/``, a folder's contents into ``dest``.

    Appends every file and folder it creates to ``created`` (parents first), for the next Install's cleanup.
    """
    if not src.exists():
        raise EventFailed(f"files: source {src} does not exist in the bundle", UNKNOWN_ERROR)
    pairs = [(src, dest / src.name)] if src.is_file() else \
        [(p, dest / p.relative_to(src)) for p in sorted(src.rglob("*"))]
    for d in [dest] + [t for p, t in pairs if p.is_dir()]:
        if not d.exists():
            missing = []
            up = d
            while not up.exists():
                missing.append(up)
                up = up.parent
            d.mkdir(parents=True)
            created += [str(m) for m in reversed(missing)]
    for p, t in pairs:
        if p.is_dir():
            continue
        if t.exists():
            if behaviour == "DISALLOW":
                raise EventFailed(f"The deployment failed because a specified file already exists at this "
                                  f"location: {t}", UNKNOWN_ERROR)
            if behaviour == "RETAIN":
                continue
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, t, follow_symlinks=False)
        created.append(str(t))


def remove_installed(cleanup: Path) -> None:
    """Delete what the previous Install created (the paths listed in ``cleanup``, last first), then the list.

    Folders go only when empty, so files someone else put there stay.
    """
    if not cleanup.exists():
        return
    for line in reversed(cleanup.read_text().splitlines()):
        p = Path(line)
        if p.is_dir() and not p.is_symlink():
            if not any(p.iterdir()):
                p.rmdir()
        elif p.exists() or p.is_symlink():
            p.unlink()
    cleanup.unlink()
