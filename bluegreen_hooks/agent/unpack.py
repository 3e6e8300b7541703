"""A revision's files on disk, as the agent handles them: the bundle unpacked (DownloadBundle), the
appspec's ``files:`` copied (Install), and what the previous Install created removed first."""
from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

from bluegreen_hooks.agent.scripts import UNKNOWN_ERROR, EventFailed
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host.zips import damage, looks_like_zip


def unpack(bundle: Path, dest: Path) -> None:
    """Copy a bundle folder, or extract a zip (keeping the modes stored in it), into ``dest``.

    A damaged zip, an entry or a symlink that leads outside the bundle are refused (ConfigError): the hooks
    run as root, and ``local`` makes a hook executable, so a link to /etc/shadow must never be followed.
    """
    if bundle.is_dir():
        shutil.copytree(bundle, dest, symlinks=True)
        check_links(dest, bundle)
        return
    if not looks_like_zip(bundle) and not zipfile.is_zipfile(bundle):
        raise ConfigError(f"{bundle}: not a folder or a zip file")
    why = damage(bundle)
    if why is not None:
        raise ConfigError(f"{bundle}: the zip is damaged ({why}); download or build the bundle again")
    dest.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as zf:
        links = [i for i in zf.infolist() if stat.S_ISLNK(i.external_attr >> 16)]
        for info in zf.infolist():
            target = _inside(dest, info.filename, bundle)
            if info in links:
                continue
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o7777
            if mode and not info.is_dir():
                os.chmod(target, mode)
        for info in links:          # last, so that no entry is ever written through a link
            link = dest / info.filename.rstrip("/")
            to = zf.read(info).decode("utf-8", "replace")
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(to, link)
    check_links(dest, bundle)


def _inside(dest: Path, name: str, bundle: Path) -> Path:
    """``dest/name`` resolved; ConfigError when it leaves ``dest`` (zip slip)."""
    root = os.path.realpath(dest)
    target = os.path.realpath(os.path.join(dest, name))
    if target != root and not target.startswith(root + os.sep):
        raise ConfigError(f"{bundle}: entry {name!r} would be extracted outside the bundle")
    return Path(target)


def check_links(root: Path, bundle: Path) -> None:
    """Refuse a symlink anywhere under ``root`` whose target (resolved) is outside ``root``."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                continue
            target = os.path.realpath(p)
            if target != real_root and not target.startswith(real_root + os.sep):
                rel = os.path.relpath(p, root)
                raise ConfigError(f"{bundle}: {rel}: symlink leaves the bundle (-> {os.readlink(p)}); "
                                  f"replace it with the file it points to")


def _within(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)


def _refuse_outside(path: Path, root: Path, why: str) -> ConfigError:
    return ConfigError(f"files: {path}: {why} outside the install root {root}; nothing is written there "
                       f"(replace the link with the file or folder it points to)")


def _check_destination(t: Path, root: Path, folder: bool = False) -> None:
    """Refuse ``t`` (a file to write, or a ``folder`` to write into) when, resolved, it is not under ``root``:
    it or a folder above it is a link (installed earlier, or there already) leading out of the install root.
    A file that is a link itself is replaced, never written through, so only its folder counts."""
    real_root = os.path.realpath(root)
    where = os.path.realpath(t.parent)
    if not _within(where, real_root):
        raise _refuse_outside(t, root, f"is reached through a symbolic link to {where},")
    if (folder or not os.path.islink(t)) and not _within(os.path.realpath(t), real_root):
        raise _refuse_outside(t, root, f"resolves to {os.path.realpath(t)},")


def _check_link(p: Path, t: Path, root: Path) -> None:
    """Refuse installing the link ``p`` at ``t`` when its target, resolved from ``t`` (not from where it was in
    the bundle: a relative link climbs from its new place), is outside ``root``."""
    to = os.readlink(p)
    resolved = os.path.realpath(os.path.join(os.path.realpath(t.parent), to))
    if not _within(resolved, os.path.realpath(root)):
        raise _refuse_outside(t, root, f"symlink -> {to} would point to {resolved},")


def copy_files(src: Path, dest: Path, behaviour: str, created: list[str], root: Path | None = None) -> None:
    """The agent's ``files:`` copy: a file into ``dest/``, a folder's contents into ``dest``.

    Appends every file and folder it creates to ``created`` (parents first), for the next Install's cleanup.
    With ``root`` (the install root: the appspec's ``/``), every folder and file is resolved where it is
    installed and must stay under ``root``: nothing is written through a link leading out of it, and a link
    whose target, seen from where it is installed, leaves ``root`` is refused (ConfigError).
    """
    if not src.exists():
        raise EventFailed(f"files: source {src} does not exist in the bundle", UNKNOWN_ERROR)
    pairs = [(src, dest / src.name)] if src.is_file() else\
        [(p, dest / p.relative_to(src)) for p in sorted(src.rglob("*"))]
    for d in [dest] + [t for p, t in pairs if p.is_dir()]:
        if root is not None:
            _check_destination(d, root, folder=True)
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
        if root is not None:
            _check_destination(t, root)
            if p.is_symlink():
                _check_link(p, t, root)
        if os.path.lexists(t):
            if behaviour == "DISALLOW":
                raise EventFailed(f"The deployment failed because a specified file already exists at this "
                                  f"location: {t}", UNKNOWN_ERROR)
            if behaviour == "RETAIN":
                continue
            if t.is_symlink() or (p.is_symlink() and not t.is_dir()):
                t.unlink()                       # a link is replaced, never written through
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
