"""Runtime backends: how a colour of the app runs (see runtime/base.py for the protocol)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bluegreen_hooks.config import Config
    from bluegreen_hooks.model import Colour
    from bluegreen_hooks.runtime.base import Backend


def backend(cfg: Config, client: Any = None, check: tuple[str | None, Sequence[Colour]] | None = None) -> Backend:
    """The backend the config asks for, connected to Docker (``client`` reuses a connection).

    ``check`` = (deployment id, colours) is BeforeInstall's: a compose app starts rendering those colours'
    files before Docker is connected (importing the SDK and a ping), so that both overlap; ``Backend.check``
    collects them."""
    from bluegreen_hooks.runtime.base import connect

    if cfg.compose is not None:   # a [compose] table: each colour is a compose project
        from bluegreen_hooks.runtime.compose import ComposeBackend
        be = ComposeBackend(cfg, client)
        if check is not None:
            be.start_check(*check)
        try:
            be.client = client if client is not None else connect()
        except BaseException:
            be.cancel_check()
            raise
        return be
    client = client if client is not None else connect()
    from bluegreen_hooks.runtime.docker import SdkBackend
    return SdkBackend(cfg, client)
