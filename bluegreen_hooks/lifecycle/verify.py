"""The nginx verify mode of a deployment: how its switches are proven ("header": our response header names the
colour; "generation": the nginx workers' generation changed; host/nginx_conf.py reads it from ``nginx -T``).
Decided once per deployment, at its first switch, and recorded in its state (in_progress/verify_mode); its later
steps and events (ValidateService, the canary's steps, the watch's switches, a repair) reuse it; the next
deployment decides again."""
from __future__ import annotations

from typing import Protocol

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import Say, VerifyMode


class Context(Protocol):
    """What these functions use of a ``steps.Context`` (which imports this module)."""

    @property
    def cfg(self) -> Config: ...
    @property
    def deployment_id(self) -> str: ...
    @property
    def say(self) -> Say: ...
    @property
    def store(self) -> Store: ...


def verify_mode(ctx: Context) -> VerifyMode:
    """How this deployment's switches are proven ("header" or "generation", from ``nginx -T``: host/nginx_conf.py):
    decided once per deployment, at its first switch, and recorded in its state (in_progress/verify_mode); its
    later steps and events reuse it, the next deployment decides again."""
    mode, unrecorded = decided_mode(ctx)
    if unrecorded:
        record_mode(ctx, mode)
    return mode


def decided_mode(ctx: Context) -> tuple[VerifyMode, bool]:
    """(the deployment's recorded verify mode, False), else (as ``nginx -T`` says now, True: to be recorded); never
    raises for the state. "generation" when nginx's configuration cannot be read (not to be recorded: the next
    step reads it again), as when the deployment does not hold the app."""
    from bluegreen_hooks.host import nginx_conf

    try:
        in_progress = ctx.store.read(quarantine=False).state.holder(ctx.deployment_id)
    except (HookError, OSError):
        in_progress = None
    if in_progress is not None and in_progress.verify_mode is not None:
        return in_progress.verify_mode, False
    mode = nginx_conf.read_mode(ctx.cfg)
    return mode or "generation", mode is not None and in_progress is not None


def record_mode(ctx: Context, mode: VerifyMode) -> None:
    """Record ``mode`` as the deployment's verify mode; a state that cannot be written only warns (the record
    saves a later step an ``nginx -T``, it is never a reason to stop)."""
    try:
        with ctx.store.update() as state:
            mine = state.holder(ctx.deployment_id)
            if mine is not None:
                mine.verify_mode = mode
    except (HookError, OSError) as exc:
        ctx.say(f"warning: could not record the nginx verify mode: {exc}")
