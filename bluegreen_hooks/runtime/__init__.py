"""Runtime backends: how a colour of the app runs (see runtime/base.py for the protocol).

Where things live:

    base             the Backend protocol and the plain records it passes (Container, ReleaseImage, ...), our labels
    sdk              the docker SDK as both backends use it: the connection, Container records, exec, stats, logs
    docker           the default backend: one container per colour through the docker SDK
    docker_args      its pure builders: a deployment's image tag, the arguments of ``containers.run``
    docker_release   a single-container release recorded and brought back (rollback)
    compose          compose stacks: each colour a docker-compose project
    compose_argv     its pure builders: the variables and argv of each compose command, the state files' paths
    compose_exec     running compose commands (v2 or v1): one at a time, several at once, or detached
    compose_release  per-release images, the rendered config cache, stop/remove/start
    compose_restore  a compose release recorded and brought back (rollback)
    images           image ownership by label
    healthcheck      run a container's own HEALTHCHECK at once
    owner            which of our containers holds a process
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, cast

if TYPE_CHECKING:
    from bluegreen_hooks.config import Config
    from bluegreen_hooks.model import Colour
    from bluegreen_hooks.runtime.base import Backend


def backend(cfg: Config, client: Any = None, check: tuple[str | None, Sequence[Colour]] | None = None,
            start: tuple[Colour, str, Callable[[str], None]] | None = None) -> Backend:
    """The backend the config asks for, connected to Docker (``client`` reuses a connection).

    ``check`` = (deployment id, colours) is BeforeInstall's: a compose app starts rendering those colours'
    files before Docker is connected (importing the SDK and a ping), so that both overlap; ``Backend.check``
    collects them. ``start`` = (colour, deployment id, say) is ApplicationStart's (steps.claim_early): a
    compose app starts that colour's ``up`` before Docker is connected; ``Backend.start`` collects it."""
    from bluegreen_hooks.runtime.sdk import connect

    if cfg.compose is not None:   # a [compose] table: each colour is a compose project
        from bluegreen_hooks.runtime.compose import ComposeBackend
        made = ComposeBackend(cfg, client)
        if check is not None:
            made.start_check(*check)
        if start is not None:
            made.start_early(*start)
        try:
            made.client = client if client is not None else connect()
        except BaseException:
            made.cancel_pending()
            raise
        return made
    client = client if client is not None else connect()
    from bluegreen_hooks.runtime.docker import SdkBackend
    return SdkBackend(cfg, client)


def reconfigured(current: Backend, cfg: Config) -> Backend:
    """The backend for ``cfg`` over ``current``'s Docker connection (rollback: the release's own config)."""
    return backend(cfg, getattr(current, "client", None))


class _OnFirstUse:
    """A backend that connects to Docker when it is first used (see ``deferred``)."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._backend: Backend | None = None

    def __getattr__(self, name: str) -> Any:
        if self._backend is None:
            self._backend = backend(self._cfg)
        return getattr(self._backend, name)


def deferred(cfg: Config) -> Backend:
    """``backend(cfg)``, connected only when something uses it. A ValidateService that validates through nginx
    and hands the old colour to the background retire never does: it saves importing the SDK (~0.2 s)."""
    return cast("Backend", _OnFirstUse(cfg))
