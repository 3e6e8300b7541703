"""``canary promote|abort``: end a running canary early. The command only records the request in the
state file, under the store's lock; the ApplicationStart hook running the canary looks for it every
0.25 s (lifecycle/canary.py) and acts: ``promote`` sends 100 % to the new colour at once (the remaining
steps are skipped), ``abort`` sends all traffic back to the old colour and fails the deployment.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.host.store import me
from bluegreen_hooks.host.wait import poll
from bluegreen_hooks.model import CanaryRequest
from bluegreen_hooks.operator.find_app import open_store

ACTIONS: tuple[CanaryRequest, ...] = get_args(CanaryRequest)


def request(cfg: Config, action: str, say: Callable[[str], None], wait: float = 30.0) -> str:
    """Ask the running canary of ``cfg.app`` to ``action``; wait (at most ``wait`` s) until the hook acted.

    Returns the canary's phase afterwards (``promoted``, ``aborted`` or ``running`` if the hook has not acted)."""
    wanted = next((a for a in ACTIONS if a == action), None)
    if wanted is None:
        raise HookError(f"canary: unknown action {action!r}; use promote or abort")
    store = open_store(cfg)
    who = me()
    with store.update() as state:
        in_progress = state.in_progress
        c = in_progress.canary if in_progress is not None else None
        if in_progress is None or c is None or c.phase != "running":
            raise HookError(f"no canary is running for {cfg.app} (see `bluegreen-hooks status`)")
        c.request, c.requested_by = wanted, f"{who.user}@{who.host}"
        dep, new, share = in_progress.id, c.new, c.share
    say(f"{action} requested for the canary of {dep} ({new} at {share} %); the hook acts within a second")

    def acted() -> str | None:
        read = store.read(quarantine=False).state
        in_progress = read.in_progress
        if in_progress is None or in_progress.id != dep or in_progress.canary is None:
            return "ended"
        return in_progress.canary.phase if in_progress.canary.phase != "running" else None

    phase = poll(acted, wait, interval=0.1, max_interval=0.25) or "running"
    say(f"canary of {dep}: {phase}" if phase != "running" else
        f"the hook has not acted within {wait:g}s: is its ApplicationStart still running?")
    return phase
