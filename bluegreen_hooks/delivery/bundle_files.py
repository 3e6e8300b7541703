"""Which files of the app folder go into a bundle: include/exclude rules and the sorted, symlink-safe walk."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from bluegreen_hooks.errors import DeliveryError

# never bundled: VCS folders, caches, virtualenvs (also any folder holding pyvenv.cfg), dist/ at the top
NEVER_NAMES = (".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
               ".pytest_cache", ".ruff_cache", ".eggs", "*.egg-info", "*.pyc", "*.pyo", ".DS_Store")
NEVER_TOP = ("dist",)


def match(rel: str, pattern: str) -> bool:
    """gitignore-like: a pattern without '/' matches any path component; with '/', the path or a parent of it."""
    parts = rel.split("/")
    pattern = pattern.strip("/")
    if "/" not in pattern:
        return any(fnmatchcase(p, pattern) for p in parts)
    return any(fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


@dataclass(frozen=True)
class Rules:
    """The --include/--exclude globs (relative to the app folder); no include means every file."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @staticmethod
    def never(rel: str, top: bool) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(fnmatchcase(name, p) for p in NEVER_NAMES) or (top and name in NEVER_TOP)

    def wanted(self, rel: str) -> bool:
        if self.excluded_dir(rel):
            return False
        return not self.include or any(match(rel, p) for p in self.include)

    def excluded_dir(self, rel: str) -> bool:
        return any(match(rel, p) for p in self.exclude)


EVERY_FILE = Rules()     # no include/exclude: every file but the never-bundled ones


def _inside(real_root: str, path: str) -> bool:
    return path == real_root or path.startswith(real_root + os.sep)


def _check_link(label: str, rel: str, path: Path, target: str, real_root: str) -> None:
    if not _inside(real_root, target):
        raise DeliveryError(f"{label}/{rel}: symlink leaves the tree (-> {os.readlink(path)}); "
                            "replace it with the file or exclude it")
    if not os.path.exists(target):
        raise DeliveryError(f"{label}/{rel}: broken symlink (-> {os.readlink(path)})")


def walk(root: Path, rules: Rules, label: str) -> Iterator[tuple[str, Path]]:
    """Yield (relative posix path, real file) under ``root``, sorted; symlinks must stay inside ``root``."""
    real_root = os.path.realpath(root)

    def rec(d: Path, prefix: str, seen: frozenset[str]) -> Iterator[tuple[str, Path]]:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            raise DeliveryError(f"{label}/{prefix}: cannot read: {exc.strerror}") from exc
        for e in entries:
            rel = f"{prefix}{e.name}"
            if rules.never(rel, top=not prefix) or rules.excluded_dir(rel):
                continue
            path = Path(e.path)
            target = os.path.realpath(path)
            if e.is_symlink():
                if not e.is_dir() and not rules.wanted(rel):
                    continue          # a link the rules leave out need not be valid
                _check_link(label, rel, path, target, real_root)
            if os.path.isdir(target):
                if os.path.exists(os.path.join(target, "pyvenv.cfg")):
                    continue
                if target in seen:
                    raise DeliveryError(f"{label}/{rel}: symlink loop")
                yield from rec(Path(target) if e.is_symlink() else path, rel + "/", seen | {target})
            elif os.path.isfile(target) and rules.wanted(rel):
                yield rel, Path(target)
            # sockets, fifos, devices: never bundled

    yield from rec(root, "", frozenset({real_root}))
