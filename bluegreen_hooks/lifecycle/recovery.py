"""When the switch cannot be recorded: nginx already serves the new colour, but the state file could not
be written (disk full, a read-only or unwritable state dir).

The state still names the colour that was live before, and that colour still runs (ValidateService has
not stopped it yet). So the safest way to make state, include and containers agree again is to go back
to it: switch nginx back, drain, remove the new colour. If that is impossible (nothing to go back to, or
the switch back fails) the new colour stays live and the next deployment's reconcile makes the state
agree with the include. Either way the event ends with one ``ERROR`` line, never a traceback.
"""
from __future__ import annotations

from bluegreen_hooks.decide import Decision
from bluegreen_hooks.errors import HookError, StateError
from bluegreen_hooks.lifecycle import steps
from bluegreen_hooks.lifecycle.steps import Context
from bluegreen_hooks.model import is_deployment_id
from bluegreen_hooks.runtime.base import Backend


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def back_to_recorded(ctx: Context, backend: Backend, d: Decision, exc: BaseException) -> HookError:
    """The switch to ``d.target`` could not be recorded (``exc``): go back to ``d.live``; the error to fail with."""
    where = f"could not record the switch to {d.target} ({_why(exc)})"
    fix = f"free space in {ctx.store.dir} (or make it writable), then deploy again"
    live = d.live
    if not (live and backend.running().get(live)):
        return StateError(f"{where}; {d.target} stays live (no colour to go back to) and the next deployment "
                          f"reconciles the state from the nginx include; {fix}")
    ctx.say(f"{where}: switching nginx back to {live}, which the state still names")
    recorded = (d.state.live_deployment if d.state is not None else None) or ""
    try:
        steps.check_ports_owned(ctx.cfg, backend, live)   # traffic only ever goes to the colour's own containers
        back = steps.switch(ctx, live, recorded if is_deployment_id(recorded) else "unknown")
    except HookError as failed:
        return StateError(f"{where}; switching back to {live} failed too ({failed}): {d.target} stays live and the "
                          f"next deployment reconciles the state from the nginx include; {fix}")
    try:
        steps.retire(ctx, backend, d.target, live, back.old_workers, f"nginx workers finished their requests to "
                                                                 f"{d.target}")
    except HookError as cleanup:
        ctx.say(f"warning: could not remove {d.target}: {cleanup}")
    return StateError(f"{where}; traffic is back on {live}; {fix}")
