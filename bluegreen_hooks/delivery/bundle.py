"""The bundle: choose and check its entries, write the reproducible zip, read a built one back.

A bundle is a zip with, at its root: appspec.yml, hooks/ (mode 0755), bluegreen_hooks/ (the whole package,
subpackages included: the hooks run ``python -m bluegreen_hooks`` from it), bluegreen.toml, the app's files
(include/exclude rules; never .git, caches, virtualenvs, dist/, nor an earlier bundle) and wheels/ with the
runtime wheels plus wheels/requirements.txt. Entries are sorted, their timestamps fixed (SOURCE_DATE_EPOCH,
else the last commit time) and their modes fixed, so building twice gives the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bluegreen_hooks.config import Config, load
from bluegreen_hooks.config.appspec import bad_relpath, check_bundle, norm
from bluegreen_hooks.config.appspec import decode as decode_appspec
from bluegreen_hooks.config.appspec import parse as parse_appspec
from bluegreen_hooks.delivery.bundle_files import EVERY_FILE, Rules, walk
from bluegreen_hooks.delivery.wheels import (
    requirements_txt,
    runtime_wheels,
    wheel_cache,
)
from bluegreen_hooks.errors import ConfigError, DeliveryError
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.host.zips import damage, looks_like_zip

PACKAGE_DIR = Path(__file__).resolve().parent.parent    # bluegreen_hooks/, bundled with all its subpackages
PROJECT_ROOT = PACKAGE_DIR.parent                       # where appspec.yml and hooks/ live in a checkout
RESERVED = ("appspec.yml", "bluegreen.toml", "hooks", "bluegreen_hooks", "wheels")
ZIP_EPOCH_MIN = 315532800     # 1980-01-01, the earliest time a zip entry can hold
STORED = (".whl", ".zip", ".gz", ".png", ".jpg")        # already compressed: stored as they are


@dataclass(frozen=True)
class Entry:
    """One file of the bundle: its name in the zip, its mode, and the file or bytes it holds."""

    name: str                  # posix path in the zip
    mode: int                  # 0o644 or 0o755
    content: Path | bytes

    def read(self) -> bytes:
        return self.content if isinstance(self.content, bytes) else self.content.read_bytes()


@dataclass(frozen=True)
class BundleResult:
    path: Path
    sha256: str
    size: int
    files: int
    app: str
    seconds: float = 0.0

    def summary(self) -> str:
        return f"bundle {self.path}: {self.files} files, {self.size:,} bytes, sha256 {self.sha256}"


@dataclass(frozen=True)
class Sources:
    """What a bundle is made of, each checked to exist: the deploy config, the app folder, appspec.yml, hooks/."""

    config: Path
    app_dir: Path
    appspec: Path
    hooks_dir: Path


def locate(config: Path, app_dir: Path | None = None, appspec: Path | None = None) -> Sources:
    """The bundle's sources: app_dir defaults to the config's folder, appspec to the project's."""
    config = Path(config)
    if not config.is_file():
        raise ConfigError(f"{config}: no deploy config here (pass --config path/to/bluegreen.toml)")
    app_dir = Path(app_dir) if app_dir is not None else config.resolve().parent
    if not app_dir.is_dir():
        raise ConfigError(f"{app_dir}: app folder not found (--app-dir)")
    appspec = Path(appspec) if appspec is not None else PROJECT_ROOT / "appspec.yml"
    hooks_dir = appspec.resolve().parent / "hooks"
    if not appspec.is_file():
        raise ConfigError(f"{appspec}: appspec not found (--appspec)")
    if not hooks_dir.is_dir():
        raise ConfigError(f"{hooks_dir}: hooks folder not found next to {appspec.name}")
    return Sources(config, app_dir, appspec, hooks_dir)


def load_config(src: Sources) -> Config:
    """The deploy config, with the checks a host would make that do not depend on the host."""
    return load(src.config, environ={}, check_files=False)


def source_date_epoch(app_dir: Path, environ: Mapping[str, str] | None = None) -> int:
    """SOURCE_DATE_EPOCH, else the last commit time of the app's git checkout, else 1980-01-01."""
    environ = os.environ if environ is None else environ
    value = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise DeliveryError(f"SOURCE_DATE_EPOCH: should be seconds since 1970, not {value!r}")
        return max(int(value), ZIP_EPOCH_MIN)
    try:
        proc = subprocess.run(["git", "-C", str(app_dir), "log", "-1", "--format=%ct"], capture_output=True,
                              text=True, timeout=10)
        if proc.returncode == 0 and proc.stdout.strip().isdigit():
            return max(int(proc.stdout.strip()), ZIP_EPOCH_MIN)
    except (OSError, subprocess.SubprocessError):
        pass
    return ZIP_EPOCH_MIN


def _mode(path: Path) -> int:
    return 0o755 if os.stat(path).st_mode & 0o111 else 0o644


def is_bundle_zip(path: Path) -> bool:
    """Whether ``path`` is a zip laid out like the bundles we write (appspec.yml and bluegreen_hooks/ at its root)."""
    if not path.name.lower().endswith(".zip"):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return "appspec.yml" in names and any(n.startswith("bluegreen_hooks/") for n in names)


class _Entries:
    """The bundle's entries by name; a name added twice is an error naming where it came from."""

    def __init__(self) -> None:
        self.by_name: dict[str, Entry] = {}

    def add(self, entry: Entry, origin: str) -> None:
        if entry.name in self.by_name:
            raise DeliveryError(f"{origin}: {entry.name} is already in the bundle")
        self.by_name[entry.name] = entry

    def __contains__(self, name: object) -> bool:
        return name in self.by_name


def _add_framework(entries: _Entries, src: Sources) -> None:
    entries.add(Entry("appspec.yml", 0o644, src.appspec), str(src.appspec))
    entries.add(Entry("bluegreen.toml", 0o644, src.config), str(src.config))
    for rel, path in walk(src.hooks_dir, EVERY_FILE, "hooks"):
        entries.add(Entry(f"hooks/{rel}", 0o755, path), "hooks")
    for rel, path in walk(PACKAGE_DIR, EVERY_FILE, "bluegreen_hooks"):
        entries.add(Entry(f"bluegreen_hooks/{rel}", _mode(path), path), "bluegreen_hooks")


def _add_app_files(entries: _Entries, src: Sources, rules: Rules, output: Path | None, out: TextIO) -> None:
    """The app folder's files, minus this bundle's output and earlier bundles; reserved names only if ours."""
    ours = {os.path.realpath(p) for p in (src.appspec, src.config, src.hooks_dir, PACKAGE_DIR)}
    skip = os.path.realpath(output) if output is not None else None
    label = str(src.app_dir)
    for rel, path in walk(src.app_dir, rules, label):
        real = os.path.realpath(path)
        if real == skip or is_bundle_zip(path):
            what = "the output of this build" if real == skip else "an earlier bundle (appspec.yml, bluegreen_hooks/)"
            print(f"bundle: left out {label}/{rel}: {what}", file=out, flush=True)
            continue
        top = rel.split("/", 1)[0]
        if top in RESERVED:
            if os.path.realpath(src.app_dir / top) in ours or real in ours:
                continue          # the same file/folder the bundle already carries
            raise DeliveryError(f"{label}/{rel}: conflicts with the bundle's own {top}; exclude it (--exclude {top})")
        entries.add(Entry(rel, _mode(path), path), label)


def _add_wheels(entries: _Entries, wheels: Sequence[tuple[Path, str]]) -> None:
    if not wheels:
        return
    datas = [(p.name, p.read_bytes(), marker) for p, marker in wheels]
    for name, data, _ in datas:
        entries.add(Entry(f"wheels/{name}", 0o644, data), "wheels")
    entries.add(Entry("wheels/requirements.txt", 0o644, requirements_txt(datas).encode()), "wheels")


def _in_bundle(cfg: Config, path: Path) -> str:
    """A path the config names (resolved when it was read) as a name relative to the bundle root."""
    return Path(os.path.relpath(path, os.path.realpath(cfg.root))).as_posix()


def _check_config_paths(cfg: Config, src: Sources, entries: _Entries) -> None:
    """The build context and compose files the config names must travel in the bundle."""
    name, hint = src.config.name, f"(app files come from {src.app_dir}; check --app-dir/--include/--exclude)"
    if cfg.container.build is not None:
        build = _in_bundle(cfg, cfg.container.build)
        bad = bad_relpath(build)
        if bad:
            raise ConfigError(f"{name}: container/build: {bad} (the bundle carries the build context): {build!r}")
        dockerfile = norm(f"{build}/{cfg.container.dockerfile}")
        if dockerfile not in entries:
            raise ConfigError(f"{name}: container/build: {dockerfile} is not in the bundle {hint}")
    if cfg.compose is not None:
        files = cfg.compose.files
        keys = [("compose/file", files["blue"])] if cfg.compose.single else\
            [(f"compose/files/{c}", f) for c, f in sorted(files.items())]
        for key, path in keys:
            rel = _in_bundle(cfg, path)
            if norm(rel) not in entries:
                raise ConfigError(f"{name}: {key}: {rel} is not in the bundle {hint}")


def collect(src: Sources, cfg: Config, rules: Rules = EVERY_FILE, wheels: Sequence[tuple[Path, str]] = (),
            output: Path | None = None, out: TextIO | None = None) -> list[Entry]:
    """Choose and check every entry of the bundle, sorted by name. Writes nothing (notes go to ``out``)."""
    entries = _Entries()
    _add_framework(entries, src)
    _add_app_files(entries, src, rules, output, out or sys.stderr)
    _add_wheels(entries, wheels)
    _check_config_paths(cfg, src, entries)
    text = decode_appspec(src.appspec.read_bytes(), src.appspec.name)
    check_bundle(parse_appspec(text, src.appspec.name), {k: e.mode for k, e in entries.by_name.items()},
                 src.appspec.name)
    for name in entries.by_name:
        bad = bad_relpath(name)
        if bad:
            raise DeliveryError(f"{name}: {bad}")
    return sorted(entries.by_name.values(), key=lambda e: e.name)


def zip_bytes(entries: Iterable[Entry], epoch: int) -> bytes:
    """The zip of the entries in order, with fixed times and modes."""
    date_time = time.gmtime(max(epoch, ZIP_EPOCH_MIN))[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for e in entries:
            zi = zipfile.ZipInfo(e.name, date_time)
            zi.create_system = 3                              # unix: the mode below is honoured
            zi.external_attr = (0o100000 | e.mode) << 16
            stored = e.name.endswith(STORED)
            zi.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(zi, e.read(), compresslevel=None if stored else 6)
    return buf.getvalue()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle(config: Path, output: Path | None = None, app_dir: Path | None = None, rules: Rules = EVERY_FILE,
           appspec: Path | None = None, with_wheels: bool = True, cache: Path | None = None,
           environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> BundleResult:
    """Build the bundle (checked before anything is written); return its path, sha256 and size."""
    t0 = time.monotonic()
    src = locate(config, app_dir, appspec)
    cfg = load_config(src)
    wheels = runtime_wheels(wheel_cache(cache), out=out) if with_wheels else []
    output = Path(output) if output is not None else Path("dist") / f"{cfg.app}.zip"
    entries = collect(src, cfg, rules, wheels, output, out)
    data = zip_bytes(entries, source_date_epoch(src.app_dir, environ))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, data)
    return BundleResult(output, hashlib.sha256(data).hexdigest(), len(data), len(entries), cfg.app,
                        time.monotonic() - t0)


def read_bundle(path: Path) -> tuple[str, str]:
    """(app name, sha256) of a built bundle; refuses a file that is not one of our bundles."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        raise DeliveryError(f"{path}: bundle not found (build it with: build.py bundle)")
    try:
        why = damage(path) if looks_like_zip(path) else None
        if why is not None:
            raise DeliveryError(f"{path}: the zip is damaged ({why}); build the bundle again")
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "appspec.yml" not in names or "bluegreen.toml" not in names:
                raise DeliveryError(f"{path}: not a bluegreen-hooks bundle (no appspec.yml/bluegreen.toml at its root)")
            raw = tomllib.loads(zf.read("bluegreen.toml").decode())
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError) as exc:
        raise DeliveryError(f"{path}: not a readable zip bundle: {exc}") from exc
    return str(raw.get("app", "")), sha256_file(path)
