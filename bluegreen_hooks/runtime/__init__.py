"""Runtime backends: how a colour of the app runs (see runtime/base.py for the protocol)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bluegreen_hooks.config import Config
    from bluegreen_hooks.runtime.base import Backend


def backend(cfg: Config, client: Any = None) -> Backend:
    """The backend the config asks for, connected to Docker (``client`` reuses a connection)."""
    from bluegreen_hooks.runtime.base import connect

    client = client if client is not None else connect()
    if cfg.compose is not None:   # a [compose] table: each colour is a compose project
        from bluegreen_hooks.runtime.compose import ComposeBackend
        return ComposeBackend(cfg, client)
    from bluegreen_hooks.runtime.docker import SdkBackend
    return SdkBackend(cfg, client)
