"""Long-lived connections (SSE, long polling, WebSockets) at the end of a drain.

nginx's old workers keep proxying such streams after a reload until they close, so a drain that waits
for the old workers would wait for ever. ``deploy/drain_timeout`` bounds it; then the old colour is
stopped, which closes its streams (nginx closes the clients' side, the old workers exit) and the
clients reconnect, to the new colour. What was still open is said and recorded in the state
(``long_lived``), so ``doctor`` can warn when nginx's ``worker_shutdown_timeout`` is unset.
"""
from __future__ import annotations

import time
from typing import Callable

from bluegreen_hooks.config import Config
from bluegreen_hooks.host import nginx, procfs
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import Colour

WORKER_EXIT_WAIT = 10.0   # how long to watch the old nginx workers exit once their streams closed


def still_open(cfg: Config, colour: Colour) -> int:
    """Established connections to ``colour``'s ports now (nginx's proxied streams among them)."""
    return sum(procfs.connections_to(p) for p in cfg.colour_ports(colour))


def report(cfg: Config, store: Store, say: Callable[[str], None], deployment_id: str, colour: Colour,
           live: Colour, workers: list[list[int]], open_before: int) -> None:
    """After ``colour`` was stopped: say how many streams it closed, record them, watch the old workers exit."""
    if open_before:
        say(f"{open_before} long-lived connection(s) to {colour} were still open after the drain timeout "
                f"({cfg.drain_timeout:g}s): closed by stopping {colour}; their clients reconnect to {live}")
        with store.update() as state:
            state.long_lived = {"at": time.time(), "open": open_before, "colour": colour, "deployment": deployment_id}
    drained, left = nginx.wait_drained(workers, WORKER_EXIT_WAIT)
    if workers and drained:
        say("the old nginx workers exited once their connections closed")
    elif left:
        say(f"warning: {left} old nginx worker(s) still run {WORKER_EXIT_WAIT:g}s after {colour} stopped "
                f"(connections to elsewhere?); set worker_shutdown_timeout in nginx.conf so they cannot pile up")
