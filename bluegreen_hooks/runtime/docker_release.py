"""A single-container release recorded and brought back (``rollback``) with its own settings.

``record``: the exact arguments of ``containers.run`` (image, env, command, ports, labels, restart policy)
and the config copy, saved with the release (host/releases.py). ``restore``: the release's own stopped
container is started again when it is still there (ValidateService stops it, it does not remove it);
else a container is run from the recorded arguments. Never from the current config.
"""
from __future__ import annotations

import json
from typing import Any

from bluegreen_hooks.errors import ContainerStartError
from bluegreen_hooks.host import releases
from bluegreen_hooks.model import Colour
from bluegreen_hooks.runtime.base import LABEL_DEPLOYMENT, LABEL_IMAGE, ReleaseImage, Say, guard_not_live
from bluegreen_hooks.runtime.docker_args import run_kwargs


def _ports_back(kwargs: dict[str, Any]) -> dict[str, Any]:
    """JSON made the ``(host, port)`` bindings lists; the SDK reads a list as several host ports."""
    ports = kwargs.get("ports")
    if isinstance(ports, dict):
        kwargs["ports"] = {k: tuple(v) if isinstance(v, list) else v for k, v in ports.items()}
    return kwargs


def record(backend: Any, colour: Colour, deployment_id: str, say: Say) -> dict[str, ReleaseImage]:
    """``backend``: runtime/docker.SdkBackend (not imported: it imports this module)."""
    cfg = backend.cfg
    conts = [c for c in backend.sdk_containers(colour) if c.labels.get(LABEL_DEPLOYMENT) == deployment_id]
    image = conts[0].labels.get(LABEL_IMAGE) if conts else None
    if not image:
        return {}
    kwargs = run_kwargs(cfg, colour, image, deployment_id)
    images = {"app": {"tag": image, "id": conts[0].attrs.get("Image", "")}}
    meta = {"colour": colour, "backend": "docker", "images": images, "containers": [c.id for c in conts]}
    releases.save(cfg.state_dir, cfg.app, deployment_id,
                  {"container.json": json.dumps(kwargs, indent=1, sort_keys=True),
                   "bluegreen.toml": cfg.path.read_text(encoding="utf-8")}, meta)
    say(f"release {deployment_id} recorded: {image} ({images['app']['id'][7:19]})")
    return {name: ReleaseImage(i["tag"], i["id"]) for name, i in images.items()}


def restore(backend: Any, colour: Colour, deployment_id: str, live: Colour | None, say: Say) -> None:
    import docker.errors

    guard_not_live(colour, live, "replace")
    release = releases.load(backend.cfg.state_dir, backend.cfg.app, deployment_id)
    text = release.text("container.json") if release else None
    if release is None or text is None:
        raise ContainerStartError(f"release {deployment_id} is not recorded; deploy that revision again instead")
    kept = [c for c in backend.sdk_containers(colour) if c.id in set(release.meta.get("containers") or [])]
    if kept:
        for c in kept:
            say(f"starting the stopped {c.name} (release {deployment_id})")
            c.start()
        return
    backend.remove_colour(colour, live, say, grace=0)
    kwargs = _ports_back(json.loads(text))
    say(f"starting {kwargs.get('name')} from {kwargs.get('image')} with the settings recorded for {deployment_id}")
    try:
        backend.client.containers.run(**kwargs)
    except docker.errors.APIError as exc:
        raise ContainerStartError(f"cannot start {kwargs.get('name')}: {exc.explanation or exc}") from exc


def prune_releases(backend: Any, in_use: set[str]) -> None:
    """Drop the release records whose image was pruned (their container can no longer be re-created)."""
    import docker.errors

    cfg = backend.cfg
    for rel in releases.listing(cfg.state_dir, cfg.app):
        tags = rel.image_tags()
        if tags & in_use:
            continue
        for tag in tags:
            try:
                backend.client.images.get(tag)
            except docker.errors.ImageNotFound:
                releases.remove(cfg.state_dir, cfg.app, rel.deployment)
                break
