"""What every runtime backend shares: the Backend protocol, our labels, the Docker connection, log tails.

A backend runs one colour of the app: ``docker`` (one container per colour through the SDK,
runtime/docker.py) or ``compose`` (a compose project per colour, runtime/compose.py). The lifecycle
steps drive both through this protocol only. ``docker`` is imported lazily so hooks that need no
Docker start fast.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Protocol

from bluegreen_hooks.errors import DockerUnavailable
from bluegreen_hooks.model import COLOURS, Colour, Running, Say

LABEL_APP = "bluegreen.app"
LABEL_COLOUR = "bluegreen.colour"
LABEL_DEPLOYMENT = "bluegreen.deployment"
LABEL_IMAGE = "bluegreen.image"
DOCKER_TIMEOUT = 300

RunningMap = dict[Colour, Optional[Running]]


class Backend(Protocol):
    """How the lifecycle runs one colour of the app."""

    kind: str
    client: Any

    def check(self, say: Say, deployment_id: str | None = None, colours: Sequence[Colour] = COLOURS) -> None:
        """BeforeInstall: refuse bad input (e.g. the compose files of ``colours``) before anything changes."""

    def cancel_pending(self) -> None:
        """End what was started before Docker was connected and is no longer needed (compose: renders, an
        early ``up``): the hook fails first."""

    def prepare(self, deployment_id: str, say: Say) -> str:
        """Build or pull; return the artifact ``start`` runs (an image tag, or a compose release)."""

    def start(self, colour: Colour, artifact: str, deployment_id: str, live: Colour | None, say: Say) -> None:
        """Start ``colour`` from ``artifact`` (never the live colour)."""

    def watch(self, colour: Colour) -> list[dict[str, Any]]:
        """Fresh inspect data of the colour's containers (for fail-fast health checks)."""

    def logs_tail(self, colour: Colour, lines: int = 15) -> list[str]:
        """The last output lines of the colour's containers."""

    def remove_colour(self, colour: Colour, live: Colour | None, say: Say, grace: float | None = None) -> int:
        """Stop and remove every container of ``colour`` (never ``live``); return how many."""

    def running(self) -> RunningMap:
        """For each colour, what runs as it (or None)."""

    def containers(self, colour: Colour) -> list[Any]:
        """The colour's containers, running or not (docker SDK objects)."""

    def can_restart(self, colour: Colour, artifact: str | None, deployment: str | None) -> str | None:
        """None when release ``deployment`` (``artifact``) can be started again as ``colour`` (rollback),
        else why not and what to do instead (one line)."""

    def stop_colour(self, colour: Colour, live: Colour | None, say: Say, grace: float | None = None) -> int:
        """Stop (keep) every container of ``colour`` so its release can start again at once; return how many."""

    def record(self, colour: Colour, deployment_id: str, say: Say) -> dict[str, Any]:
        """Save release ``deployment_id`` (its settings and per-release images, host/releases.py); return
        its images ({name: {tag, id}})."""

    def restore(self, colour: Colour, deployment_id: str, live: Colour | None, say: Say) -> None:
        """Bring the recorded release back as ``colour`` with its own settings (never the current config)."""

    def prune(self, in_use: set[str], say: Say) -> int:
        """Remove old release artifacts beyond deploy/keep_images (never one in ``in_use``)."""


class RefusedToTouchLive(RuntimeError):
    """A bug guard: something asked to replace or remove the live colour."""


def guard_not_live(colour: Colour, live: Colour | None, what: str) -> None:
    if colour == live:
        raise RefusedToTouchLive(f"refusing to {what} the live colour {colour}")


def connect(timeout: int = DOCKER_TIMEOUT) -> Any:
    """A DockerClient from the environment (DOCKER_HOST …), checked with a ping."""
    from bluegreen_hooks.startup import importing

    try:
        with importing():
            import docker
    except ImportError as exc:  # pragma: no cover - the launcher installs it
        raise DockerUnavailable(f"the docker Python package is missing ({exc}); "
                                f"install bluegreen-hooks' dependencies") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DockerUnavailable(f"Docker daemon unreachable ({reason}); start Docker (systemctl start docker) "
                                f"or set DOCKER_HOST, then retry") from exc
    return client


def logs_tail(cont: Any, lines: int = 15, width: int = 200) -> list[str]:
    """The last lines of a container's output (each cut to ``width`` characters)."""
    try:
        text = cont.logs(tail=lines).decode("utf-8", "replace")
    except Exception:
        return []
    return [ln[:width] for ln in text.splitlines()[-lines:]]

