"""What every runtime backend shares: the Backend protocol, the records it passes, our labels.

A backend runs one colour of the app: ``docker`` (one container per colour through the SDK,
runtime/docker.py) or ``compose`` (a compose project per colour, runtime/compose.py). The lifecycle
steps drive both through this protocol only, and it passes plain values only (colours, ids, strings,
numbers and the frozen records below): nothing of the docker SDK (its client, its ``Container`` objects,
their ``attrs``) crosses it, so the layers above cannot tell which backend they drive. What the backends
share of the SDK (connecting, reading a container into a ``Container`` record, exec, stats) is in
runtime/sdk.py, where ``docker`` is imported lazily so hooks that need no Docker start fast.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol

from bluegreen_hooks.model import COLOURS, Colour, Running, Say

LABEL_APP = "bluegreen.app"
LABEL_COLOUR = "bluegreen.colour"
LABEL_DEPLOYMENT = "bluegreen.deployment"
LABEL_IMAGE = "bluegreen.image"
LABEL_SERVICE = "com.docker.compose.service"   # a compose container's service
DOCKER_TIMEOUT = 300

RunningMap = dict[Colour, Optional[Running]]


@dataclass(frozen=True)
class Container:
    """One container of a colour as it was when listed (the SDK's list + inspect data, as plain values)."""

    id: str
    short_id: str
    name: str
    status: str                       # created, running, paused, restarting, exited, dead
    labels: Mapping[str, str] = field(default_factory=dict)
    health: str | None = None         # Docker's HEALTHCHECK status (starting, healthy, unhealthy), None without one
    restarts: int = 0
    started: str | None = None        # State.StartedAt
    image: str | None = None          # the image it was created from, as named (Config.Image)
    pid: int = 0                      # State.Pid: its main process on the host (0 when not running)

    @property
    def service(self) -> str | None:
        """A compose container's service (None for the docker backend's containers)."""
        return self.labels.get(LABEL_SERVICE)


@dataclass(frozen=True)
class ReleaseImage:
    """An image a recorded release runs: its per-release tag and its id."""

    tag: str
    id: str


@dataclass(frozen=True)
class TaskResult:
    """A command run in a container: its exit code (None: killed at its timeout), output tail, seconds."""

    code: int | None
    tail: str
    seconds: float


@dataclass(frozen=True)
class DeclaredMemory:
    """A service's memory limit as the user's compose file declares it (bytes; None: no limit, or one that does
    not read as a size) and how many containers ``up`` starts for it."""

    limit: int | None
    containers: int = 1


class Backend(Protocol):
    """How the lifecycle runs one colour of the app."""

    kind: str                 # "docker" or "compose": for messages only
    release_per_colour: bool  # running() names exactly the release each colour runs (one labelled container):
    #                           a rollback then restarts the previous release when another one runs as its colour

    def server_version(self) -> str:
        """The Docker server's version ("?" when it does not say)."""

    def check(self, say: Say, deployment_id: str | None = None, colours: Sequence[Colour] = COLOURS) -> None:
        """BeforeInstall: refuse bad input (e.g. the compose files of ``colours``) before anything changes."""

    def cancel_pending(self) -> None:
        """End what was started before Docker was connected and is no longer needed (compose: renders, an
        early ``up``): the hook fails first."""

    def start_soon(self, colour: Colour, deployment_id: str, say: Say) -> bool:
        """BeforeInstall, once its checks passed: start ``colour`` in the background for ApplicationStart to
        collect (compose: a detached ``up``); False when this backend does not (then ApplicationStart starts it)."""

    def prepare(self, deployment_id: str, say: Say) -> str:
        """Build or pull; return the artifact ``start`` runs (an image tag, or a compose release)."""

    def artifact_exists(self, deployment_id: str) -> bool | None:
        """Whether ``prepare`` would find its artifact already there (the image tag); None: not one artifact."""

    def start(self, colour: Colour, artifact: str, deployment_id: str, live: Colour | None, say: Say) -> None:
        """Start ``colour`` from ``artifact`` (never the live colour)."""

    def wait_healthy(self, colour: Colour, say: Say) -> float:
        """Wait until ``colour``'s containers and its own port are healthy (host/health.wait_healthy, with
        their fresh inspect data and their own HEALTHCHECK run at once; a compose colour: every routed
        service's port at the same time); the seconds it took."""

    def check_ports_held(self, colour: Colour) -> None:
        """Raise ContainerStartError when a process that is not one of ``colour``'s containers holds one of its
        ports (host/ports.check_held_by)."""

    def logs_tail(self, colour: Colour, lines: int = 15) -> list[str]:
        """The last output lines of the colour's containers."""

    def remove_colour(self, colour: Colour, live: Colour | None, say: Say, grace: float | None = None) -> int:
        """Stop and remove every container of ``colour`` (never ``live``); return how many."""

    def running(self) -> RunningMap:
        """For each colour, what runs as it (or None)."""

    def containers(self, colour: Colour) -> list[Container]:
        """The colour's containers, running or not."""

    def exec_task(self, container_id: str, argv: Sequence[str], env: Mapping[str, str],
                  timeout: float) -> TaskResult:
        """Run ``argv`` in the container (killed at ``timeout``); raises on a Docker error (e.g. no such
        executable in the image)."""

    def memory_used(self, container_id: str) -> int | None:
        """The container's memory use as ``docker stats`` shows it (None when Docker does not say)."""

    def process_ids(self, container_id: str) -> list[int]:
        """The host pids of the container's processes (``docker top``; empty when it cannot say)."""

    def declared_memory(self, colour: Colour, deployment_id: str) -> dict[str, DeclaredMemory]:
        """The memory limits ``colour``'s compose file declares per service (empty: none, or no compose file)."""

    def can_restart(self, colour: Colour, artifact: str | None, deployment: str | None) -> str | None:
        """None when release ``deployment`` (``artifact``) can be started again as ``colour`` (rollback),
        else why not and what to do instead (one line)."""

    def stop_colour(self, colour: Colour, live: Colour | None, say: Say, grace: float | None = None) -> int:
        """Stop (keep) every container of ``colour`` so its release can start again at once; return how many."""

    def record(self, colour: Colour, deployment_id: str, say: Say) -> dict[str, ReleaseImage]:
        """Save release ``deployment_id`` (its settings and per-release images, host/releases.py); return
        its images by name."""

    def restore(self, colour: Colour, deployment_id: str, live: Colour | None, say: Say) -> None:
        """Bring the recorded release back as ``colour`` with its own settings (never the current config)."""

    def prune(self, in_use: set[str], say: Say) -> int:
        """Remove old release artifacts beyond deploy/keep_images (never one in ``in_use``)."""


class RefusedToTouchLive(RuntimeError):
    """A bug guard: something asked to replace or remove the live colour."""


def guard_not_live(colour: Colour, live: Colour | None, what: str) -> None:
    if colour == live:
        raise RefusedToTouchLive(f"refusing to {what} the live colour {colour}")
