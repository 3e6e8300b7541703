"""Compose releases: per-release images, the rendered config cache, and the Docker-SDK stop/remove/start.

* ``render``/cache: BeforeInstall renders each colour's compose file once (``config``, both colours at
  once); the output is kept in ``<state_dir>/<app>.compose-cache/`` under a key of the files' bytes and
  the variables, so ApplicationStart records the release without running compose again.
* ``record``: after ``up``, every service's image is tagged ``bluegreen-<app>/<service>:<deployment>`` (an
  image labelled with the app and service: runtime/images.py)
  and the rendered config is saved with the release (host/releases.py) with ``build:`` removed and each
  ``image:`` set to that tag: a rollback's ``up --no-build`` runs exactly those images and settings.
* ``stop``/``remove``/``start``: through the Docker SDK by the project label (compose adds nothing there;
  ``down`` costs a compose start-up).
* ``prune``: deploy/keep_images for compose: our per-release tags beyond the kept releases (only images
  labelled with this app, or unlabelled ones its own records name), and the images compose built for them
  once nothing else names them (only while the name still names the image the release ran).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.host import releases
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.model import Colour, Say
from bluegreen_hooks.names import PATH_COMPONENT
from bluegreen_hooks.runtime import images
from bluegreen_hooks.runtime.base import DeclaredMemory as DeclaredMemory  # its home: the protocol's records

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_ONEOFF = "com.docker.compose.oneoff"
_SERVICE_LINE = re.compile(r"  ([A-Za-z0-9][A-Za-z0-9._-]*):\s*\Z")
_KEY_LINE = re.compile(r"( +)([A-Za-z0-9_.'\"-]+):(?: (.*))?\Z")   # a mapping key and its value, if on its line


# ------------------------------------------------------------------------------ the rendered config (pure)

def memory_override(cfg: Config, services: Sequence[str]) -> str:
    """A compose override giving every service deploy/mem_limit, cgroup_parent and the new colour's OOM score
    (docs/memory.md). No ``version:`` key: docker-compose 1.27+ (and v2) merge it with a file of any version."""
    m = cfg.memory
    keys = [f"    oom_score_adj: {m.new_oom_score_adj}"]
    if m.mem_limit:
        keys.append(f"    mem_limit: {m.mem_limit}")
    if m.cgroup_parent:
        keys.append(f'    cgroup_parent: "{m.cgroup_parent}"')
    lines = ["# written by bluegreen-hooks before each `up` (deploy/mem_limit, new_oom_score_adj, cgroup_parent)",
             "services:"]
    for name in services:
        lines += [f'  "{name}":', *keys]
    return "\n".join(lines) + "\n"


def write_memory_override(cfg: Config, path: Path, rendered: str) -> None:
    """Write ``memory_override`` for the services of ``rendered`` (the colour's ``config`` output) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, memory_override(cfg, services_of(rendered)))


def services_of(rendered: str) -> list[str]:
    """The service names of ``config`` output (canonical YAML: services at two spaces under ``services:``)."""
    out, inside = [], False
    for line in rendered.splitlines():
        if line and not line[0].isspace():
            inside = line.rstrip() == "services:"
            continue
        m = _SERVICE_LINE.match(line)
        if inside and m:
            out.append(m.group(1))
    return sorted(out)


def declared_memory(rendered: str) -> dict[str, DeclaredMemory]:
    """Per service of ``config`` output (canonical YAML, two spaces a level): its ``mem_limit``, or
    ``deploy.resources.limits.memory`` when that is set (docker-compose 1.29 gives a service with
    ``deploy.resources.limits`` that limit; compose v2 wants both equal), and its ``deploy.replicas`` or
    ``scale`` (default 1). Sizes as compose writes them: ``512m``, ``1G``, ``"536870912"`` (v2: bytes)."""
    from bluegreen_hooks.config.memory import parse_size

    keys: dict[str, dict[tuple[str, ...], str]] = {}
    path: list[str] = []
    inside = False
    for line in rendered.splitlines():
        if line and not line[0].isspace():
            inside = line.rstrip() == "services:"
            continue
        m = _KEY_LINE.match(line)
        if not inside or not m or len(m.group(1)) % 2:
            continue
        del path[len(m.group(1)) // 2 - 1:]
        path.append(m.group(2).strip("'\""))
        if len(path) > 1 and m.group(3):
            keys.setdefault(path[0], {})[tuple(path[1:])] = m.group(3).strip().strip("'\"")
    out = {}
    for svc in services_of(rendered):
        k = keys.get(svc, {})
        size = k.get(("deploy", "resources", "limits", "memory"), k.get(("mem_limit",)))
        count = k.get(("deploy", "replicas"), k.get(("scale",), "1"))
        out[svc] = DeclaredMemory(parse_size(size) if size is not None else None,
                                  int(count) if count.isdigit() else 1)
    return out


def pin_images(rendered: str, tags: dict[str, str]) -> tuple[str, dict[str, str | None]]:
    """``rendered`` without ``build:`` sections and with each service's ``image:`` set to ``tags[service]``.

    Returns the new text and, per service that compose builds, the image name it had (None: compose's
    own ``<project>_<service>``), so that pruning can remove a build no release needs any more."""
    out: list[str] = []
    built: dict[str, str | None] = {}
    service: str | None = None
    skipping = in_services = False
    for line in rendered.splitlines():
        if line and not line[0].isspace():
            service, in_services = None, line.rstrip() == "services:"
        m = _SERVICE_LINE.match(line) if in_services else None
        if m:
            service, skipping = m.group(1), False
            out.append(line)
            if service in tags:
                out.append(f"    image: {tags[service]}")
            continue
        if skipping and line.startswith("     "):
            continue
        skipping = False
        if service is not None and line.startswith("    build:"):
            skipping, built[service] = True, built.get(service)
            continue
        if service is not None and line.startswith("    image:"):
            if service in built:
                built[service] = line.split(":", 1)[1].strip().strip("'\"")
            if service not in tags:
                out.append(line)
            continue
        out.append(line)
    return "\n".join(out) + "\n", built


def cache_key(files: Iterable[Path], variables: dict[str, str]) -> str:
    h = hashlib.sha256(json.dumps(sorted(variables.items())).encode())
    for f in files:
        with contextlib.suppress(OSError):
            h.update(Path(f).read_bytes())
    return h.hexdigest()[:32]


def cache_path(state_dir: Path, app: str, colour: Colour, key: str) -> Path:
    return Path(state_dir) / f"{app}.compose-cache" / f"{colour}-{key}.yml"


def cache_put(path: Path, rendered: str) -> None:
    """Keep the rendered config (one per colour; older ones of that colour removed)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    colour = path.name.split("-", 1)[0]
    for old in path.parent.glob(f"{colour}-*.yml"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink()
    write_atomic(path, rendered, mode=0o600)


def tag_name(app: str, service: str) -> str:
    """``bluegreen-<app>/<service>``: a repository no other app's can be (an app name has no ``/``; the
    single-container repository is ``bluegreen-<app>``). A service name that is not a valid path component as it
    is (upper case, ``..``, a leading ``_``) gets a valid form plus 8 hex digits of its sha256, so two services
    never share one."""
    component = service.lower()
    if component != service or not re.fullmatch(PATH_COMPONENT, component):
        digest = hashlib.sha256(service.encode()).hexdigest()[:8]
        component = "-".join(filter(None, re.split(r"[^a-z0-9]+", component)) or ["service"]) + "-" + digest
    return f"bluegreen-{app}/{component}"


# ------------------------------------------------------------------------------------------- through the SDK

def _each(conts: Sequence[Any], fn: Any) -> None:
    """Run ``fn(container)`` for every container at once (stop timeouts overlap instead of adding up)."""
    if not conts:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(conts))) as pool:
        for f in [pool.submit(fn, c) for c in conts]:
            f.result()


def stop(conts: Sequence[Any], grace: float) -> None:
    """Stop the containers (kept, so the release can be started again at once)."""
    import docker.errors

    def one(c: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            if c.status in ("running", "restarting", "paused"):
                c.stop(timeout=round(grace))

    _each(conts, one)


def start(conts: Sequence[Any]) -> None:
    _each(conts, lambda c: c.start())


def remove(client: Any, project: str, conts: Sequence[Any], grace: float, volumes: bool) -> None:
    """What ``down --remove-orphans`` does: stop (grace), remove the containers, the project's networks
    (and its volumes with compose/remove_volumes)."""
    import docker.errors

    def one(c: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            if c.status in ("running", "restarting", "paused") and grace > 0:
                c.stop(timeout=round(grace))
            c.remove(force=True, v=False)

    _each(conts, one)
    label = {"label": f"{LABEL_PROJECT}={project}"}
    for net in client.networks.list(filters=label):
        with contextlib.suppress(docker.errors.APIError):
            net.remove()
    if volumes:
        for vol in client.volumes.list(filters=label):
            with contextlib.suppress(docker.errors.APIError):
                vol.remove(force=True)


def tag_images(client: Any, app: str, deployment: str, listed: Sequence[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Tag each service's image ``bluegreen-<app>/<service>:<deployment>``, labelled with the app and the
    service (runtime/images.label: a label-only image on the one the service runs, all services at once);
    return {service: {tag, id, tagged}} (``id``: the image the service's container runs, as status shows it;
    ``tagged``: the labelled image the tag names, which a re-created release runs: the same layers).

    ``listed``: the project's containers as the list call returns them (their labels and image id)."""
    todo: dict[str, str] = {}
    for c in listed:
        svc = (c.get("Labels") or {}).get(LABEL_SERVICE)
        image_id = c.get("ImageID")
        if svc and image_id and svc not in todo:
            todo[svc] = image_id

    def one(svc: str) -> tuple[str, dict[str, str]]:
        repo = tag_name(app, svc)
        tagged = images.label(client, todo[svc], repo, deployment, images.wanted_labels(app, svc))
        return svc, {"tag": f"{repo}:{deployment}", "id": todo[svc], "tagged": tagged}

    if not todo:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
        return dict(pool.map(one, sorted(todo)))


class EarlyTags:
    """``tag_images`` of a colour whose ``up`` just ended, started on a thread at once (ComposeBackend.start), so
    that the labelling (a label-only image per service: ~0.2 s when Docker has it cached, up to ~2 s for a new
    image) overlaps the health wait instead of following the switch. ``record`` collects it (compose_restore);
    a start that fails undoes it (ComposeBackend.remove_colour): a release that never went live has no record
    for ``prune`` to find its tags by."""

    def __init__(self, client: Any, app: str, colour: Colour, deployment: str,
                 listed: Sequence[dict[str, Any]]) -> None:
        self.client, self.colour, self.deployment = client, colour, deployment
        self.containers = sorted(c["Id"] for c in listed)
        self.tags = sorted({f"{tag_name(app, svc)}:{deployment}" for c in listed
                            if (svc := (c.get("Labels") or {}).get(LABEL_SERVICE))})
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labels")
        self._future = pool.submit(tag_images, client, app, deployment, listed)
        pool.shutdown(wait=False)

    def result(self, colour: Colour, deployment: str, listed: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        """The tags (as ``tag_images`` returns them) when they are of these containers, else None (undone)."""
        if (colour, deployment, sorted(c["Id"] for c in listed)) == (self.colour, self.deployment, self.containers):
            with contextlib.suppress(Exception):
                return dict(self._future.result())
        self.undo()
        return None

    def undo(self) -> None:
        """Wait for the labelling, then remove the tags it made (their label-only images with them)."""
        import docker.errors

        with contextlib.suppress(Exception):
            self._future.result()
        for tag in self.tags:
            with contextlib.suppress(docker.errors.APIError):
                self.client.images.remove(tag, noprune=False)


def prune(client: Any, state_dir: Path, app: str, keep: int, needed: set[str], say: Say) -> int:
    """Drop the releases beyond the ``keep`` newest (never one in ``needed``): their per-release tags,
    then the images compose built for them when no kept release and no other name uses them."""
    import docker.errors

    kept, dropped = releases.kept(state_dir, app, keep, needed)
    kept_names = {n for r in kept for n in (r.meta.get("built_names") or [])}
    removed = 0
    for rel in dropped:
        for tag in sorted(rel.image_tags()):
            with contextlib.suppress(docker.errors.APIError):
                if not images.owned(client.images.get(tag), app, recorded=True):
                    say(f"left {tag} alone: its labels name app {images.owner(client.images.get(tag))}")
                    continue
                client.images.remove(tag, noprune=False)
                removed += 1
        sources = {str(i.get("id")) for i in (rel.meta.get("images") or {}).values() if isinstance(i, dict)}
        for name in sorted(set(rel.meta.get("built_names") or []) - kept_names):   # what compose built for it
            with contextlib.suppress(docker.errors.APIError):   # e.g. a container still uses it: kept
                if client.images.get(name).id not in sources:
                    continue                    # the name is another build's now (another app's, or rebuilt)
                client.images.remove(name, noprune=False)
                removed += 1
        releases.remove(state_dir, app, rel.deployment)
    if removed or dropped:
        say(f"pruned {len(dropped)} old release(s) of {app} ({removed} image tag(s)); keeping "
            f"{', '.join(r.deployment for r in kept) or 'none'}")
    return removed


def listed(client: Any, project: str, running: bool = False) -> list[dict[str, Any]]:
    """The project's containers as the list call has them (labels, state; no inspect), ordered as
    ``ComposeBackend.sdk_containers``; ``running``: the running ones only."""
    filters: dict[str, Any] = {"label": [f"{LABEL_PROJECT}={project}"]}
    if running:
        filters["status"] = "running"
    found = [c for c in client.api.containers(all=not running, filters=filters)
             if (c.get("Labels") or {}).get(LABEL_ONEOFF, "False") != "True"]
    return sorted(found, key=lambda c: ((c.get("Labels") or {}).get(LABEL_SERVICE, ""),
                                        (c.get("Names") or [""])[0].lstrip("/")))
