"""A compose release recorded and brought back (``rollback``), with its own images and settings.

``record`` (ApplicationStart, once the new stack runs): tag every service's image per release, save the
rendered config with those tags and the config copy (host/releases.py). ``restore`` (rollback): when the
release's own containers are still there (ValidateService stops them, it does not remove them), start
them through the SDK; else re-create the project from the recorded config with ``up -d --no-build`` and the
memory override of the release's config (runtime/compose_release.memory_override), as its deployment's ``up``
had. Never from the current bundle's files or config.
"""
from __future__ import annotations

from typing import Any

from bluegreen_hooks.errors import ContainerStartError
from bluegreen_hooks.host import releases
from bluegreen_hooks.model import Colour
from bluegreen_hooks.runtime import compose_release as rel
from bluegreen_hooks.runtime.base import ReleaseImage, Say, guard_not_live
from bluegreen_hooks.runtime.compose_argv import memory_override_path
from bluegreen_hooks.runtime.compose_exec import run_compose

UP_TIMEOUT = 1800.0


def _built_names(project: str, built: dict[str, str | None]) -> list[str]:
    """The tags compose gave the images it built (``<project>_<service>:latest`` when the file names none)."""
    out = []
    for svc, name in built.items():
        name = name or f"{project}_{svc}"
        out.append(name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest")
    return out


def record(backend: Any, colour: Colour, deployment_id: str, say: Say) -> dict[str, ReleaseImage]:
    """Tag the running stack's images for this release and save the release; return {service: {tag, id}}."""
    cfg = backend.cfg
    project = cfg.compose.project_name(cfg.app, colour)
    conts = rel.listed(backend.client, project)
    early, backend.labelling = backend.labelling, None   # started when `up` ended (rel.EarlyTags)
    images = early.result(colour, deployment_id, conts) if early is not None else None
    if images is None:
        images = rel.tag_images(backend.client, cfg.app, deployment_id, conts)
    text, built = rel.pin_images(backend.rendered(colour, deployment_id), {s: i["tag"] for s, i in images.items()})
    meta = {"colour": colour, "backend": "compose", "project": project, "images": images,
            "built_names": _built_names(project, built), "containers": sorted(c["Id"] for c in conts)}
    releases.save(cfg.state_dir, cfg.app, deployment_id,
                  {"compose.yml": text, "bluegreen.toml": cfg.path.read_text(encoding="utf-8")}, meta)
    say(f"release {deployment_id} recorded: " + ", ".join(f"{s} {i['id'][7:19]}" for s, i in sorted(images.items())))
    return {service: ReleaseImage(i["tag"], i["id"]) for service, i in images.items()}


def can_restore(backend: Any, colour: Colour, deployment: str | None) -> str | None:
    """None when release ``deployment`` can be brought back as ``colour``, else why not (one line)."""
    import docker.errors

    release = releases.load(backend.cfg.state_dir, backend.cfg.app, deployment)
    if release is None:
        return (f"{colour} ({deployment}) no longer runs and no record of that release is kept (deployed before "
                f"bluegreen-hooks recorded releases, or pruned): deploy revision {deployment} again instead")
    for tag in sorted(release.image_tags()):
        try:
            backend.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return (f"image {tag} of the previous release ({deployment}) is gone (pruned or removed); "
                    f"deploy revision {deployment} again instead")
    return None


def restore(backend: Any, colour: Colour, deployment_id: str, live: Colour | None, say: Say) -> None:
    """Bring release ``deployment_id`` back as ``colour``: start its stopped containers, else re-create them."""
    guard_not_live(colour, live, "replace")
    cfg = backend.cfg
    release = releases.load(cfg.state_dir, cfg.app, deployment_id)
    if release is None:
        raise ContainerStartError(f"release {deployment_id} is not recorded; deploy that revision again instead")
    project = str(release.meta.get("project") or cfg.compose.project_name(cfg.app, colour))
    conts = backend.sdk_containers(colour)
    if conts and {c.id for c in conts} == set(release.meta.get("containers") or []):
        say(f"starting the stopped {project} ({len(conts)} container(s) of release {deployment_id})")
        rel.start([c for c in conts if c.status != "running"])
    else:
        if conts:
            backend.remove_colour(colour, live, say, grace=0)
        say(f"re-creating {project} from release {deployment_id}: its recorded config and images (up --no-build)")
        # the release's memory keys (limits, the new colour's OOM score, cgroup_parent), as its deployment's `up`
        override = memory_override_path(cfg, colour)
        rel.write_memory_override(cfg, override, release.file("compose.yml").read_text(encoding="utf-8"))
        argv = [*backend.command, "-p", project, "-f", str(release.file("compose.yml")), "-f", str(override),
                "up", "-d", "--no-build", "--remove-orphans"]
        run_compose(argv, {}, release.path, f"compose up of {project} (release {deployment_id})", UP_TIMEOUT)
