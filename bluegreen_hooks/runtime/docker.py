"""The default backend: one container per colour through the docker SDK (build or pull, start, stop, prune).

Containers are found by label, never by parsing ``docker ps``: ``bluegreen.app``, ``bluegreen.colour``
and ``bluegreen.deployment``. Functions that remove containers take the live colour and refuse to
touch it. ``docker`` is imported lazily so that hooks that need no Docker start fast.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ContainerStartError
from bluegreen_hooks.model import COLOURS, Colour, Running
from bluegreen_hooks.runtime import sdk
from bluegreen_hooks.runtime.base import (
    LABEL_APP,
    LABEL_COLOUR,
    LABEL_DEPLOYMENT,
    LABEL_IMAGE,
    ReleaseImage,
    RunningMap,
    Say,
    guard_not_live,
)
from bluegreen_hooks.runtime.docker_args import image_tag as image_tag  # the dry run and the tests use them from here
from bluegreen_hooks.runtime.docker_args import memory_kwargs as memory_kwargs
from bluegreen_hooks.runtime.docker_args import run_kwargs as run_kwargs
from bluegreen_hooks.runtime.images import label, owned, owner, wanted_labels


class ImageError(ContainerStartError):
    """The image could not be built or pulled; ``next_step`` says what the operator should do."""

    def __init__(self, msg: str, next_step: str = "") -> None:
        super().__init__(msg)
        self.next_step = next_step


def ensure_image(client: Any, cfg: Config, deployment_id: str, say: Say) -> str:
    """Build (or pull) the app's image and tag it for this deployment; return the tag."""
    import docker.errors

    tag = image_tag(cfg, deployment_id)
    c = cfg.container
    if c.build is not None:
        say(f"building {tag} from {c.build.name}/{c.dockerfile}")
        _build(client, cfg, tag, say)
        return tag
    if c.image is None:
        raise ContainerStartError("container/image: no image and no build configured")
    say(f"pulling {c.image}")
    try:
        image = client.images.pull(c.image)
    except docker.errors.APIError as exc:
        try:
            image = client.images.get(c.image)
            say(f"pull failed ({exc.explanation or exc}); using the local copy of {c.image}")
        except docker.errors.ImageNotFound:
            raise ImageError(f"cannot pull container/image {c.image}: {exc.explanation or exc}",
                             "check container/image and the registry, then deploy again") from exc
    repo, _, t = tag.partition(":")
    try:
        label(client, image.id, repo, t, wanted_labels(cfg.app))   # the tag names an image labelled ours
    except (docker.errors.APIError, docker.errors.BuildError) as exc:
        raise ImageError(f"cannot label {c.image} as {tag}: {getattr(exc, 'explanation', None) or exc}",
                         "check Docker, then deploy again") from exc
    return tag


def _build(client: Any, cfg: Config, tag: str, say: Say) -> None:
    """``docker build``; on failure remove the images its steps created (they would dangle) and raise ImageError."""
    import docker.errors

    c = cfg.container
    assert c.build is not None
    try:
        client.images.build(path=str(c.build), dockerfile=c.dockerfile, tag=tag, buildargs=dict(c.build_args),
                            rm=True, forcerm=True, network_mode=c.build_network, labels={LABEL_APP: cfg.app})
    except docker.errors.BuildError as exc:
        log = list(exc.build_log)
        last = next((str(x.get("stream") or x.get("error") or "").strip() for x in reversed(log)
                     if (x.get("stream") or x.get("error") or "").strip()), str(exc))
        removed = remove_build_leftovers(client, log)
        if removed:
            say(f"removed {removed} intermediate image(s) of the failed build")
        raise ImageError(f"docker build of {c.build.name}/{c.dockerfile} failed: {last[:200]}",
                         "fix the Dockerfile and deploy again") from exc
    except docker.errors.APIError as exc:
        raise ImageError(f"docker build failed: {exc.explanation or exc}",
                         "check the build context and Docker, then deploy again") from exc


def remove_build_leftovers(client: Any, log: list[dict[str, Any]]) -> int:
    """Remove the untagged images a failed build created (the ``---> id`` after each ``Running in``, not the
    cached ones: those may be parents of other images). Docker then prunes their untagged parents too."""
    import docker.errors

    created, fresh = [], False
    for entry in log:
        line = str(entry.get("stream") or "").strip()
        if line.startswith("---> Running in "):
            fresh = True
        elif line.startswith("---> ") and fresh:
            created.append(line[5:].strip())
            fresh = False
    for image_id in reversed(created):           # removing the last one also prunes its untagged parents
        with contextlib.suppress(docker.errors.APIError):
            if not client.images.get(image_id).tags:
                client.images.remove(image_id)
    removed = 0
    for image_id in created:
        try:
            client.images.get(image_id)
        except docker.errors.ImageNotFound:
            removed += 1
        except docker.errors.APIError:
            continue
    return removed


def containers(client: Any, cfg: Config, colour: Colour | None = None) -> list[Any]:
    """All containers of the app (or of one colour), running or not.

    ``ignore_removed``: the SDK inspects each listed container, and one can go in between (an image build's
    step container carries the app's label; so does a container another hook removes).
    """
    labels = [f"{LABEL_APP}={cfg.app}"] + ([f"{LABEL_COLOUR}={colour}"] if colour else [])
    return client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)


def running(client: Any, cfg: Config) -> RunningMap:
    """For each colour, the deployment, image and name of its running container, or None."""
    out: RunningMap = {c: None for c in COLOURS}
    for cont in containers(client, cfg):
        colour = cont.labels.get(LABEL_COLOUR)
        if colour in out and cont.status in ("running", "paused"):   # paused: ours, frozen (fails its health check)
            out[colour] = Running(cont.labels.get(LABEL_DEPLOYMENT), cont.labels.get(LABEL_IMAGE), cont.name,
                                  cont.short_id)
    return out


def remove_colour(client: Any, cfg: Config, colour: Colour, live: Colour | None, say: Say,
                  grace: float | None = None) -> int:
    """Stop (with the grace period) and remove every container of ``colour``; never the live colour."""
    guard_not_live(colour, live, "remove")
    import docker.errors

    grace = cfg.container.stop_grace_period if grace is None else grace
    removed = 0
    for cont in containers(client, cfg, colour):
        with contextlib.suppress(docker.errors.NotFound):
            if cont.status in ("running", "restarting", "paused"):
                dep = cont.labels.get(LABEL_DEPLOYMENT)
                say(f"stopping {cont.name} ({colour}, deployment {dep}, grace {grace:g}s)")
                cont.stop(timeout=round(grace))
            cont.remove(force=True)
            removed += 1
    # a container of another app may hold the name (e.g. created by hand): leave it, but say so
    with contextlib.suppress(docker.errors.NotFound):
        other = client.containers.get(cfg.container_name(colour))
        if other.labels.get(LABEL_APP) != cfg.app:
            raise ContainerStartError(f"a container named {other.name} that bluegreen-hooks did not create exists; "
                                      f"remove or rename it (docker rm -f {other.name}), then retry")
    return removed


def start(client: Any, cfg: Config, colour: Colour, image: str, deployment_id: str, live: Colour | None,
          say: Say) -> Any:
    """Start ``colour`` from ``image``; a running container of this deployment and image is reused."""
    import docker.errors

    for cont in containers(client, cfg, colour):
        if (cont.status == "running" and cont.labels.get(LABEL_DEPLOYMENT) == deployment_id
                and cont.labels.get(LABEL_IMAGE) == image and cont.attrs.get("RestartCount", 0) == 0):
            say(f"{cont.name} already runs {image} for {deployment_id}: reusing it")
            return cont
    if remove_colour(client, cfg, colour, live, say, grace=0):
        say(f"removed leftovers of {colour}")
    kwargs = run_kwargs(cfg, colour, image, deployment_id)
    where = (f"host network, port {cfg.port(colour)}" if cfg.container.network == "host"
             else f"{cfg.host}:{cfg.port(colour)} -> {cfg.container.port}")
    say(f"starting {kwargs['name']} from {image} ({where})")
    try:
        return client.containers.run(**kwargs)
    except docker.errors.APIError as exc:
        with contextlib.suppress(docker.errors.APIError):
            client.containers.get(kwargs["name"]).remove(force=True)
        raise ContainerStartError(f"cannot start {kwargs['name']}: {exc.explanation or exc}") from exc


def prune_images(client: Any, cfg: Config, keep: int, in_use: set[str], say: Say) -> int:
    """Remove this app's deployment images beyond the ``keep`` newest (never one in use). Only images whose
    labels say this app (runtime/images.py), and only their tags in ``bluegreen-<app>``; an unlabelled tag
    there only when this app's own release records name it (recorded before the labels)."""
    import docker.errors

    from bluegreen_hooks.host import releases

    prefix = cfg.image_repo + ":"
    found = {i.id: i for i in client.images.list(filters={"label": f"{LABEL_APP}={cfg.app}"})}
    recorded = {t for r in releases.listing(cfg.state_dir, cfg.app) for t in r.image_tags() if t.startswith(prefix)}
    for tag in sorted(recorded):
        with contextlib.suppress(docker.errors.APIError):
            img = client.images.get(tag)
            if owned(img, cfg.app, recorded=True):
                found.setdefault(img.id, img)
    imgs = [i for i in found.values() if any(t.startswith(prefix) for t in i.tags)]
    imgs.sort(key=lambda i: i.attrs.get("Created", ""), reverse=True)
    removed = 0
    for img in imgs[keep:]:
        if any(t in in_use for t in img.tags) or img.id in in_use:
            continue
        for t in img.tags:
            if t.startswith(prefix) and (owner(img) == cfg.app or t in recorded):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(t, noprune=False)
                    removed += 1
    if removed:
        say(f"pruned {removed} old image tag(s) of {cfg.image_repo} (keeping {keep})")
    return removed


class SdkBackend(sdk.SdkParts):
    """Runs each colour as one container through the docker SDK (see runtime/base.Backend)."""

    kind = "docker"
    release_per_colour = True

    def __init__(self, cfg: Config, client: Any) -> None:
        self.cfg, self.client = cfg, client

    def check(self, say: Say, deployment_id: str | None = None, colours: Sequence[Colour] = COLOURS) -> None:
        """Nothing to check beyond the config (validated when loaded)."""

    def cancel_pending(self) -> None:
        """Nothing starts before Docker is connected here."""

    def start_soon(self, colour: Colour, deployment_id: str, say: Say) -> bool:
        """The image is built or pulled in ApplicationStart, then started: nothing to start in BeforeInstall."""
        return False

    def prepare(self, deployment_id: str, say: Say) -> str:
        """Build or pull; return the artifact to start (here: the image tag)."""
        return ensure_image(self.client, self.cfg, deployment_id, say)

    def artifact_exists(self, deployment_id: str) -> bool | None:
        import docker.errors

        try:
            self.client.images.get(image_tag(self.cfg, deployment_id))
            return True
        except docker.errors.ImageNotFound:
            return False

    def start(self, colour: Colour, artifact: str, deployment_id: str, live: Colour | None, say: Say) -> None:
        start(self.client, self.cfg, colour, artifact, deployment_id, live, say)

    def watch(self, colour: Colour) -> list[dict[str, Any]]:
        return [c.attrs for c in containers(self.client, self.cfg, colour)]

    def logs_tail(self, colour: Colour, lines: int = 15) -> list[str]:
        out: list[str] = []
        for c in containers(self.client, self.cfg, colour):
            out += sdk.logs_tail(c, lines)
        return out[-lines:]

    def remove_colour(self, colour: Colour, live: Colour | None, say: Say, grace: float | None = None) -> int:
        return remove_colour(self.client, self.cfg, colour, live, say, grace)

    def running(self) -> RunningMap:
        return running(self.client, self.cfg)

    def sdk_containers(self, colour: Colour) -> list[Any]:
        return containers(self.client, self.cfg, colour)

    def stop_colour(self, colour: Colour, live: Colour | None, say: Say, grace: float | None = None) -> int:
        """Stop the colour's container, keeping it (and its release) for a rollback; never the live colour."""
        guard_not_live(colour, live, "stop")
        grace = self.cfg.container.stop_grace_period if grace is None else grace
        conts = [c for c in containers(self.client, self.cfg, colour)
                 if c.status in ("running", "restarting", "paused")]
        for c in conts:
            dep = c.labels.get(LABEL_DEPLOYMENT)
            say(f"stopping {c.name} ({colour}, deployment {dep}, grace {grace:g}s; kept for a rollback until "
                f"the next deployment)")
            c.stop(timeout=round(grace))
        return len(conts)

    def can_restart(self, colour: Colour, artifact: str | None, deployment: str | None) -> str | None:
        """None when the image ``artifact`` still exists and the release's settings are recorded."""
        import docker.errors

        from bluegreen_hooks.host import releases

        if not artifact:
            return f"the previous release ({deployment}) has no recorded image to restart"
        try:
            self.client.images.get(artifact)
        except docker.errors.ImageNotFound:
            return (f"image {artifact} of the previous release ({deployment}) is gone (pruned or removed); "
                    f"deploy that revision again instead")
        if releases.load(self.cfg.state_dir, self.cfg.app, deployment) is None:
            return (f"the settings of release {deployment} are not recorded (deployed before bluegreen-hooks kept "
                    f"releases, or pruned): deploy that revision again instead")
        return None

    def record(self, colour: Colour, deployment_id: str, say: Say) -> dict[str, ReleaseImage]:
        """Save the release: the exact ``containers.run`` arguments and the config copy (host/releases.py)."""
        from bluegreen_hooks.runtime.docker_release import record

        return record(self, colour, deployment_id, say)

    def restore(self, colour: Colour, deployment_id: str, live: Colour | None, say: Say) -> None:
        """Start release ``deployment_id`` again as ``colour`` with its own recorded settings."""
        from bluegreen_hooks.runtime.docker_release import restore

        restore(self, colour, deployment_id, live, say)

    def prune(self, in_use: set[str], say: Say) -> int:
        from bluegreen_hooks.runtime.docker_release import prune_releases

        removed = prune_images(self.client, self.cfg, self.cfg.keep_images, in_use, say)
        prune_releases(self, in_use)
        return removed
