"""``maintenance on`` / ``maintenance off``: nginx answers every request for the app with 503, a
Retry-After header and a small HTML or JSON page, then sends traffic to the live colour again.

Both go through the same write → ``nginx -t`` → reload → check path as a switch (host/nginx.switch_to),
under the app's claim (a deployment in progress refuses them, and they refuse a deployment while they
run). The state records the maintenance (since, by whom, message, Retry-After, the colour live then);
the audit log gets a "Maintenance" event with outcome on/off; metrics and notifications follow
(lifecycle/runner.audit). ``off`` restores the colour the state records as live: the colour live when
maintenance began, or the one a deployment made live behind the page (deploy/during_maintenance = "keep").
"""
from __future__ import annotations

import time
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError, HookError
from bluegreen_hooks.host import maintenance as page
from bluegreen_hooks.host import nginx
from bluegreen_hooks.lifecycle import steps
from bluegreen_hooks.lifecycle.runner import audit
from bluegreen_hooks.lifecycle.steps import Context
from bluegreen_hooks.model import Colour, Maintenance, Say, State, is_deployment_id
from bluegreen_hooks.names import operation_id
from bluegreen_hooks.operator.text import ago, first_line

MAINTENANCE_EVENT = "Maintenance"


def _claim(ctx: Context) -> State:
    """Hold the app (as a deployment does) while nginx changes; LockedError when a deployment holds it."""
    return steps.claim(ctx, "maintenance")


def _release(ctx: Context, maintenance: Maintenance | None) -> None:
    """Record the maintenance (None: off) and give the app back."""
    with ctx.store.update() as state:
        state.maintenance = maintenance
        if state.holder(ctx.deployment_id) is not None:
            state.in_progress = None


def _failed(ctx: Context, before: Maintenance | None, t0: float, exc: BaseException) -> None:
    _release(ctx, before)
    audit(ctx, "failed", time.monotonic() - t0, first_line(exc))


def _live(cfg: Config, state: State, text: str | None) -> tuple[Colour, str]:
    """The colour to keep behind the page (or to restore) and the deployment id its include names."""
    colour = state.live or nginx.include_colour(cfg, text)
    if colour is None:
        raise HookError(f"nothing is live for {cfg.app} (no deployment recorded, the include names no colour): "
                        f"deploy first")
    dep = state.live_deployment if state.live_deployment and is_deployment_id(state.live_deployment) else "unknown"
    return colour, dep


def turn_on(cfg: Config, say: Say, message: str | None = None, retry_after: int | None = None) -> dict[str, Any]:
    """Put the maintenance page up (or change its message); return what was done. Raises HookError."""
    message = page.check_message(cfg.maintenance.message if message is None else message)
    retry = page.check_retry_after(cfg.maintenance.retry_after if retry_after is None else retry_after)
    if cfg.nginx.form != "set":
        raise ConfigError("maintenance needs nginx/form = \"set\": the upstream form's include is read at the http "
                          "level, where nginx cannot answer requests itself (see docs/operator.md)")
    token = page.read_bypass_token(cfg)     # a missing secret is refused before anything changes
    t0, ctx = time.monotonic(), Context(cfg, operation_id("maintenance"), MAINTENANCE_EVENT, say)
    state = _claim(ctx)
    before = state.maintenance
    try:
        colour, dep = _live(cfg, state, nginx.read_include(cfg))
        text, marker = page.render(cfg, colour, dep, message, retry, token)
        sw = nginx.switch_to(cfg, text, lambda: page.verify(cfg, marker, retry))
        page.wait_old_workers_stop_accepting(cfg, sw.old_workers)
    except BaseException as exc:
        _failed(ctx, before, t0, exc)
        raise
    m = Maintenance(since=before.since if before else time.time(), id=ctx.deployment_id, user=ctx.who.user,
                    host=ctx.who.host, message=message, retry_after=retry, colour=colour)
    _release(ctx, m)
    say(f"maintenance {'page updated' if before else 'on'} for {cfg.app}: nginx answers 503 (Retry-After {retry}s) "
        f"to every request (test + reload + check in {sw.seconds * 1000:.0f} ms); {colour} keeps running behind it")
    audit(ctx, "on", time.monotonic() - t0)
    return {"id": ctx.deployment_id, "maintenance": True, "colour": colour, "message": message,
            "retry_after": retry, "marker": marker, "updated": before is not None,
            "seconds": round(time.monotonic() - t0, 3)}


def turn_off(cfg: Config, say: Say) -> dict[str, Any]:
    """Send traffic to the live colour again (nothing to do when maintenance is off). Raises HookError."""
    t0, ctx = time.monotonic(), Context(cfg, operation_id("maintenance"), MAINTENANCE_EVENT, say)
    state = _claim(ctx)
    before = state.maintenance
    try:
        text = nginx.read_include(cfg)
        if before is None and page.marker_of(text) is None:
            _release(ctx, None)
            say(f"maintenance is not on for {cfg.app}: nothing to do")
            return {"id": ctx.deployment_id, "maintenance": False, "changed": False, "colour": state.live}
        colour, dep = _live(cfg, state, text)
        sw = nginx.switch(cfg, colour, dep, say)
        page.wait_old_workers_stop_accepting(cfg, sw.old_workers)
    except BaseException as exc:
        _failed(ctx, before, t0, exc)
        raise
    _release(ctx, None)
    since = f" (it was on since {ago(before.since)})" if before else ""
    say(f"maintenance off for {cfg.app}: {colour} serves again (deployment {state.live_deployment}){since}")
    audit(ctx, "off", time.monotonic() - t0)
    return {"id": ctx.deployment_id, "maintenance": False, "changed": True, "colour": colour,
            "deployment": state.live_deployment, "seconds": round(time.monotonic() - t0, 3)}


def status_view(cfg: Config, state: State, include_text: str | None) -> tuple[dict[str, Any] | None, list[str]]:
    """What ``status`` shows of maintenance, and a warning when the state and the include disagree."""
    marker = page.marker_of(include_text)
    m = state.maintenance
    warnings = []
    if m is not None and marker is None and include_text is not None:
        warnings.append("state says maintenance is on, but the nginx include has no maintenance page; run "
                        "`bluegreen-hooks maintenance on` (or `off`) again")
    if m is None and marker is not None:
        warnings.append("the nginx include holds the maintenance page, but the state says maintenance is off; run "
                        "`bluegreen-hooks maintenance off`")
    if m is None:
        return None, warnings
    return {**m.to_json(), "marker": marker, "during_deploy": cfg.maintenance.during}, warnings
