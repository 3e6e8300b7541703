"""Release records: what each deployment ran, kept so that a rollback brings it back with its OWN settings.

``<state_dir>/<app>.releases/<deployment>/`` (folder 0700, files 0600, written by the hooks as root)::

    release.json     {deployment, colour, backend, created, images: {name: {tag, id}}, containers: [...],
                     built: [image names compose built]}     written last: a folder without it is no release
    bluegreen.toml   the config the release was deployed with (ports, health, env, command ...)
    container.json   docker backend: the arguments of ``containers.run`` (image, env, command, ports, labels)
    compose.yml      compose backend: its colour's rendered compose config (variables applied, ``build:``
                     removed, each service's ``image:`` its per-release tag)

Written by ApplicationStart once the new colour runs (runtime/*.record), read by ``rollback``
(runtime/*.restore) and pruned with the images (deploy/keep_images).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluegreen_hooks.host import files as typed
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.host.trust import STATE_KEY
from bluegreen_hooks.model import is_deployment_id

META = "release.json"


@dataclass(frozen=True)
class Release:
    """One recorded release: its folder and its ``release.json``."""

    path: Path
    meta: dict[str, Any]

    @property
    def deployment(self) -> str:
        return str(self.meta.get("deployment"))

    def file(self, name: str) -> Path:
        return self.path / name

    def text(self, name: str) -> str | None:
        try:   # never through a symlink, never blocking on a FIFO (a ConfigError naming the path)
            return typed.read_text(self.path / name, STATE_KEY, follow=False)
        except (OSError, ValueError):
            return None

    def image_ids(self) -> set[str]:
        return {str(i["id"]) for i in (self.meta.get("images") or {}).values() if isinstance(i, dict) and i.get("id")}

    def image_tags(self) -> set[str]:
        return {str(i["tag"]) for i in (self.meta.get("images") or {}).values()
                if isinstance(i, dict) and i.get("tag")}


def summary(state_dir: Path, app: str) -> dict[str, dict[str, Any]]:
    """``{deployment: {colour, backend, created, images: {name: {tag, id}}}}`` of every recorded release, for
    status and history (which show the image ids each release runs)."""
    return {r.deployment: {"colour": r.meta.get("colour"), "backend": r.meta.get("backend"),
                           "created": r.meta.get("created"),
                           "images": {str(k): {"tag": v.get("tag"), "id": v.get("id")}
                                      for k, v in (r.meta.get("images") or {}).items() if isinstance(v, dict)}}
            for r in listing(state_dir, app)}


def images_text(images: Any) -> str:
    """``web=3f2a9c1d0b7e api=…``: each image's short id (the 12 hex digits Docker shows)."""
    if not isinstance(images, dict) or not images:
        return "-"
    return " ".join(f"{name}={str((v or {}).get('id') or '?').split(':')[-1][:12]}" for name, v in images.items())


def folder(state_dir: Path, app: str) -> Path:
    return Path(state_dir) / f"{app}.releases"


def _path(state_dir: Path, app: str, deployment: str) -> Path:
    if not is_deployment_id(deployment):   # it names a folder: never a path
        raise ValueError(f"not a deployment id: {deployment!r}")
    return folder(state_dir, app) / deployment


def save(state_dir: Path, app: str, deployment: str, files: dict[str, str], meta: dict[str, Any]) -> Release:
    """Write the release's files, then ``release.json`` (so a half-written folder is never taken for one)."""
    path = _path(state_dir, app, deployment)
    for d in (folder(state_dir, app), path):
        d.mkdir(mode=0o700, exist_ok=True)
        typed.check_type(d, STATE_KEY, "folder", follow=False)   # never chmod or write through a link
        os.chmod(d, 0o700)
    for name, text in files.items():
        write_atomic(path / name, text, mode=0o600)
    meta = {**meta, "deployment": deployment, "created": meta.get("created") or time.time()}
    write_atomic(path / META, json.dumps(meta, indent=1, sort_keys=True), mode=0o600)
    return Release(path, meta)


def load(state_dir: Path, app: str, deployment: str | None) -> Release | None:
    """The recorded release ``deployment``, or None (not recorded, or not readable)."""
    if not deployment or not is_deployment_id(deployment):
        return None
    path = _path(state_dir, app, deployment)
    try:   # a FIFO, a symlink or a folder there is refused in one line (it hung status), never followed
        typed.check_type(path, STATE_KEY, "folder", follow=False)
        meta = json.loads(typed.read_text(path / META, STATE_KEY, follow=False))
    except (OSError, ValueError):
        return None
    return Release(path, meta) if isinstance(meta, dict) and meta.get("deployment") == deployment else None


def listing(state_dir: Path, app: str) -> list[Release]:
    """Every recorded release of ``app``, oldest first."""
    try:
        typed.check_type(folder(state_dir, app), STATE_KEY, "folder", follow=False)
        names = os.listdir(folder(state_dir, app))
    except OSError:
        return []
    found = [r for r in (load(state_dir, app, n) for n in names if is_deployment_id(n)) if r is not None]
    return sorted(found, key=lambda r: float(r.meta.get("created") or 0))


def remove(state_dir: Path, app: str, deployment: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        shutil.rmtree(_path(state_dir, app, deployment))


def kept(state_dir: Path, app: str, keep: int, needed: set[str]) -> tuple[list[Release], list[Release]]:
    """(kept, dropped): the ``keep`` newest releases plus every one named in ``needed``; the rest dropped."""
    every = listing(state_dir, app)
    newest = {r.deployment for r in every[-keep:]} if keep > 0 else set()
    keep_set = newest | needed
    return [r for r in every if r.deployment in keep_set], [r for r in every if r.deployment not in keep_set]
