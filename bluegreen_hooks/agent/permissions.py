"""The appspec's ``permissions:`` the way the CodeDeploy agent applies them (aws-codedeploy-agent 1.8.1,
``Installer#generate_instructions``, ``LinuxPermissionInfo``, ``ModeInfo``, ``CommandBuilder``):

* each entry names an ``object`` (an absolute path); it applies only to what THIS Install copied or
  created: the object itself when it is a file the Install copied (and ``type`` has ``file``; then
  ``pattern`` must stay ``**`` and ``except`` empty), else — when the object is a folder the Install
  made or one that exists — every copied file (``type`` ``file``) and made folder (``type``
  ``directory``) *below* it whose name matches ``pattern`` and none of ``except``;
* ``pattern``/``except`` are simple globs: only ``*``, matched against the name relative to the object,
  never across ``/`` (``**``, the default, matches everything at any depth);
* ``mode`` (1-4 octal digits) is applied with chmod, then ``owner``/``group`` with chown;
* naming one path in two entries fails the deployment; ``acls`` and ``context`` (SELinux) are refused here.

Pure parsing (``parse``) and matching (``targets``); ``apply`` changes the files.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bluegreen_hooks.errors import ConfigError

KEYS = ("object", "pattern", "except", "owner", "group", "mode", "type")
TYPES = ("file", "directory")


@dataclass(frozen=True)
class Permission:
    object: str
    pattern: str = "**"
    except_: tuple[str, ...] = ()
    owner: str | None = None
    group: str | None = None
    mode: str | None = None
    type: tuple[str, ...] = TYPES


def _mode(value: Any, where: str, file: str) -> str | None:
    if value is None:
        return None
    mode = str(value).rjust(3, "0")
    if len(mode) > 4 or not all("0" <= ch <= "7" for ch in mode):
        raise ConfigError(f"{file}: {where}/mode: should be 1 to 4 octal digits such as 644, not {value!r}")
    return mode


def _names(value: Any, where: str, file: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{file}: {where}: should be a list of names")
    return tuple(value)


def parse(raw: Any, file: str = "appspec.yml") -> tuple[Permission, ...]:
    """``permissions:`` (a list of mappings) into Permission objects; ConfigError naming the key."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{file}: permissions: should be a list of '- object: …'")
    out = []
    for n, item in enumerate(raw):
        where = f"permissions/{n}"
        if not isinstance(item, dict):
            raise ConfigError(f"{file}: {where}: should be a mapping with 'object'")
        for key in item:
            if key not in KEYS:
                hint = " (acls and context are not supported by the local runner)" if key in ("acls", "context")\
                    else f" (known: {', '.join(KEYS)})"
                raise ConfigError(f"{file}: {where}/{key}: unknown key{hint}")
        obj = item.get("object")
        if not isinstance(obj, str) or not obj.strip():
            raise ConfigError(f"{file}: {where}/object: is required (the path to set permissions on)")
        types = _names(item.get("type"), f"{where}/type", file) or TYPES
        bad = [t for t in types if t not in TYPES]
        if bad:
            raise ConfigError(f"{file}: {where}/type: {bad[0]!r} is not one of file, directory")
        pattern = item.get("pattern") or "**"
        for key in ("owner", "group"):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ConfigError(f"{file}: {where}/{key}: should be a name, not {item[key]!r}")
        out.append(Permission(os.path.abspath(obj.strip()), str(pattern), _names(item.get("except"),
                              f"{where}/except", file), item.get("owner"), item.get("group"),
                              _mode(item.get("mode"), where, file), types))
    return tuple(out)


def simple_glob(name: str, pattern: str) -> bool:
    """The agent's ``matches_simple_glob``: only ``*`` is special, and no match across ``/``."""
    if "/" in name:
        return False
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), name, re.S) is not None


def _relative(obj: str, name: str) -> str | None:
    base = obj.rstrip("/") + "/"
    name = name.rstrip("/")
    return name[len(base):] if name.startswith(base) else None


def matches(p: Permission, name: str) -> bool:
    rel = _relative(p.object, name)
    if rel is None:
        return False
    if p.pattern != "**" and not simple_glob(rel, p.pattern):
        return False
    return not any(simple_glob(rel, e) for e in p.except_)


def targets(perms: Sequence[Permission], files: Iterable[str], dirs: Iterable[str],
            is_dir: Callable[[str], bool], file: str = "appspec.yml") -> list[tuple[str, Permission]]:
    """(path, permission) pairs in the agent's order; ConfigError for the agent's refusals."""
    files, dirs = list(files), list(dirs)
    seen: set[str] = set()
    out = []
    for p in perms:
        found: list[str] = []
        if p.object in files:
            if "file" in p.type:
                if p.pattern != "**" or p.except_:
                    raise ConfigError(f"{file}: permissions: object {p.object} is a file: pattern must be ** and "
                                      f"except empty")
                found = [p.object]
        elif p.object in dirs or is_dir(p.object):
            found = ([f for f in files if matches(p, f)] if "file" in p.type else []) +\
                    ([d for d in dirs if matches(p, d)] if "directory" in p.type else [])
        for path in found:
            if path in seen:
                raise ConfigError(f"{file}: permissions: {path} is named by more than one entry")
            seen.add(path)
            out.append((path, p))
    return out


def _open_exactly(where: str) -> int | None:
    """A descriptor of ``where`` itself, a link not followed (``O_PATH | O_NOFOLLOW``), once /proc says the kernel
    opened exactly that path: no folder on the way was a link (checked on the open file, so a link swapped in
    meanwhile is caught too). ConfigError when it was; None where there is no O_PATH or /proc (not Linux)."""
    if not hasattr(os, "O_PATH"):
        return None
    fd = os.open(where, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        os.close(fd)
        return None
    if opened != where:
        os.close(fd)
        raise ConfigError(f"permissions: {where} is reached through a symbolic link (it is {opened}): not changed")
    return fd


def apply(pairs: Sequence[tuple[str, Permission]], real: Callable[[str], str]) -> int:
    """chmod, then chown, each target (``real`` maps an appspec path to where it was installed, with no link in
    the install root's own path). A link is never followed: its own owner is set (``lchown``), its mode is not
    (Linux links have none), and a target reached through a linked folder is refused (ConfigError)."""
    for path, p in pairs:
        where = real(path)
        ids = None
        if p.owner is not None or p.group is not None:
            try:
                ids = (pwd.getpwnam(p.owner).pw_uid if p.owner else -1, grp.getgrnam(p.group).gr_gid if p.group else -1)
            except KeyError as exc:
                raise ConfigError(f"permissions: {path}: no such user or group {exc}") from None
        fd = _open_exactly(where)
        try:
            is_link = stat.S_ISLNK(os.fstat(fd).st_mode if fd is not None else os.lstat(where).st_mode)
            target = f"/proc/self/fd/{fd}" if fd is not None else where   # the opened file itself
            if p.mode is not None and not is_link:
                if fd is not None:
                    os.chmod(target, int(p.mode, 8))
                else:
                    os.chmod(where, int(p.mode, 8), follow_symlinks=False)
            if ids is not None:
                if is_link or fd is None:
                    os.lchown(where, *ids)
                else:
                    os.chown(target, *ids)
        finally:
            if fd is not None:
                os.close(fd)
    return len(pairs)
