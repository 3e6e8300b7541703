"""``rollback``: make the previous release live again, under the same claim as a deployment.

Under the app's claim: if the previous colour still runs the previous deployment, switch nginx to it
at once; else start the previous image as that colour, wait until healthy, then switch. Then wait for
the old nginx workers to drain, and stop the colour rolled back from unless ``keep_other``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from bluegreen_hooks import containers, health, nginx, state
from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.model import Colour, is_deployment_id
from bluegreen_hooks.operator.select import open_store
from bluegreen_hooks.operator.text import first_line

if TYPE_CHECKING:
    from bluegreen_hooks.compose import ComposeBackend
    from bluegreen_hooks.containers import SdkBackend

ROLLBACK_EVENT = "Rollback"

Say = Callable[[str], None]


class NoPreviousRelease(HookError):
    """Rollback has nothing to go back to."""


class RollbackFailed(HookError):
    """A rollback step failed after the claim; the colour that was live keeps serving.

    It keeps the exit code of the error that caused it (``raise RollbackFailed(...) from exc``)."""

    def __init__(self, msg: str, exit_code: int = 1) -> None:
        super().__init__(msg)
        self.exit_code = exit_code


def rollback_id(now: float | None = None) -> str:
    """``rollback-<UTC timestamp>``: the deployment id a rollback is recorded under."""
    return "rollback-" + datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")


@dataclass
class Plan:
    """What a rollback goes from and to, decided under the claim."""

    live: Colour                   # the colour rolled back from
    live_d: str | None
    live_image: str | None
    prev: Colour                   # the colour rolled back to
    prev_d: str | None
    prev_image: str | None
    up: dict[str, Any]             # "switch": the previous colour's running container ({} when restarting)
    start_image: str | None        # "restart": the image to start the previous colour from (None when switching)

    @property
    def mode(self) -> str:
        """"switch" (the previous colour still runs) or "restart" (start its image first)."""
        return "switch" if self.start_image is None else "restart"


def _refuse_unless_possible(cfg: Config, st: dict[str, Any], running: dict[str, Any]) -> None:
    """NoPreviousRelease when nothing is live, no previous release is recorded, or it failed its deployment."""
    live, prev = st.get("live"), st.get("previous")
    prev_d, prev_image = st.get("previous_deployment"), st.get("previous_image")
    if not live:
        raise NoPreviousRelease(f"nothing to roll back: no colour is live for {cfg.app} (see `bluegreen-hooks status`)")
    if not prev or prev == live or not (prev_image or running.get(prev)):
        raise NoPreviousRelease(f"nothing to roll back to: {cfg.app} has no previous release recorded "
                                f"(live: {live}, deployment {st.get('live_deployment')})")
    failed = next((d for d in reversed(st.get("deployments", [])) if d.get("id") == prev_d), None)
    if failed and failed.get("outcome") == "failed" and prev_d != st.get("live_deployment"):
        raise NoPreviousRelease(f"the previous release {prev_d} on {prev} failed its deployment "
                                f"({(failed.get('cause') or 'no cause recorded')[:120]}); refusing to roll back "
                                f"to it: {live} ({st.get('live_deployment')}) stays live")


def _plan(st: dict[str, Any], backend: SdkBackend | ComposeBackend, running: dict[str, Any]) -> Plan:
    """Switch when the previous colour still runs its release, else restart its image (docker apps only)."""
    prev, prev_d, prev_image = st["previous"], st.get("previous_deployment"), st.get("previous_image")
    release = (st["live"], st.get("live_deployment"), st.get("live_image"), prev, prev_d, prev_image)
    up = running.get(prev) or {}
    if up and (backend.kind != "docker" or up.get("deployment") == prev_d or not prev_image):
        return Plan(*release, up=up, start_image=None)
    if backend.kind != "docker":
        raise NoPreviousRelease(f"{prev} ({prev_d}) no longer runs, and a {backend.kind} app is started from its "
                                f"bundle's files: deploy revision {prev_d} again instead")
    return Plan(*release, up={}, start_image=_require_image(backend, prev_image, prev_d))


def _claim(cfg: Config, store: state.Store, backend: SdkBackend | ComposeBackend, rid: str, say: Say) -> Plan:
    """Under the lock: reconcile, refuse or plan, and claim the app for the rollback."""
    with store.update() as st:
        running = backend.running()
        for fixed in state.reconcile(st, nginx.include_colour(cfg, nginx.read_include(cfg)), running, store.problem):
            say(f"reconciled: {fixed}")
        _refuse_unless_possible(cfg, st, running)
        plan = _plan(st, backend, running)
        took_over = state.claim(st, rid, ROLLBACK_EVENT, plan.prev, cfg.stale_after)
        if took_over:
            say(took_over)
        st["in_progress"].update({"from": plan.live, "image": plan.prev_image})
    return plan


def _bring_up(cfg: Config, backend: SdkBackend | ComposeBackend, plan: Plan, rid: str, say: Say,
              ) -> tuple[nginx.Switch, str | None]:
    """Start the previous colour if it does not run, then switch nginx to it; the switch and its deployment."""
    prev, prev_d = plan.prev, plan.prev_d
    if plan.start_image is None:
        say(f"{prev} still runs {plan.up.get('name')} (deployment {plan.up.get('deployment') or prev_d}): "
            f"switching nginx to it at once")
        prev_d = plan.up.get("deployment") or prev_d
    else:
        say(f"{prev} is not running: starting it from {plan.start_image}")
        backend.start(prev, plan.start_image, prev_d or rid, plan.live, say)
        health.wait_healthy(cfg, prev, lambda: backend.watch(prev), say)
    include_id = prev_d if prev_d and is_deployment_id(prev_d) else rid
    return nginx.switch(cfg, prev, include_id, say), prev_d


def _switch_back(cfg: Config, store: state.Store, backend: SdkBackend | ComposeBackend, plan: Plan, rid: str,
                 t0: float, say: Say) -> tuple[nginx.Switch, str | None]:
    """``_bring_up``; on failure remove a colour it started, record the failure, and raise RollbackFailed."""
    try:
        return _bring_up(cfg, backend, plan, rid, say)
    except BaseException as exc:
        if plan.start_image is not None:
            say(f"removing {plan.prev}: {plan.live} keeps serving")
            try:
                backend.remove_colour(plan.prev, plan.live, say, grace=0)
            except Exception as cleanup:  # noqa: BLE001 - report the first failure, not the cleanup's
                say(f"warning: could not remove {plan.prev}: {first_line(cleanup)}")
        _record(store, rid, "failed", time.monotonic() - t0, plan.live, plan.prev, first_line(exc))
        if isinstance(exc, HookError):
            raise RollbackFailed(f"rollback failed: {exc}; {plan.live} keeps serving", exc.exit_code) from exc
        raise


def _retire(cfg: Config, store: state.Store, backend: SdkBackend | ComposeBackend, plan: Plan, sw: nginx.Switch,
            keep_other: bool, rid: str, t0: float, say: Say) -> bool:
    """Wait for the old nginx workers, then stop the colour rolled back from (unless ``keep_other``)."""
    live, prev = plan.live, plan.prev
    try:
        drained, left = nginx.wait_drained(sw.old_workers, cfg.drain_timeout)
        say("old nginx workers finished their requests" if drained else
            f"drain timeout ({cfg.drain_timeout:g}s) reached with {left} old nginx worker(s) still busy")
        if keep_other:
            say(f"{live} keeps running (--keep-other); roll back again to switch to it at once")
            return False
        backend.remove_colour(live, prev, say)
        return True
    except BaseException as exc:
        _record(store, rid, "failed", time.monotonic() - t0, prev, prev,
                f"{prev} is live, but stopping {live} failed: {first_line(exc)}")
        raise


def rollback(cfg: Config, say: Say, keep_other: bool = False) -> dict[str, Any]:
    """Make the previous release live again; return what was done. Raises HookError (nothing else changed).

    Under the app's claim: if the previous colour still runs the previous deployment, switch nginx to it
    at once; else start the previous image as that colour, wait until healthy, then switch. Then wait
    for the old nginx workers to drain, and stop the colour rolled back from unless ``keep_other``.
    """
    t0 = time.monotonic()
    rid = rollback_id()
    store = open_store(cfg)
    backend = containers.backend(cfg)
    plan = _claim(cfg, store, backend, rid, say)
    live, prev = plan.live, plan.prev
    say(f"rolling {cfg.app} back from {live} ({plan.live_d}) to {prev} ({plan.prev_d}, image {plan.prev_image})")
    sw, prev_d = _switch_back(cfg, store, backend, plan, rid, t0, say)
    with store.update() as st:
        state.set_live(st, prev, prev_d, plan.prev_image)
        st["drain_workers"] = sw.old_workers   # as a deployment's switch records them (events.py)
        state.finish_event(st, rid, "switched")
    say(f"{prev} is live again (deployment {prev_d})")
    stopped = _retire(cfg, store, backend, plan, sw, keep_other, rid, t0, say)
    seconds = time.monotonic() - t0
    _record(store, rid, "succeeded", seconds, prev, prev)
    say(f"rollback {rid} done in {seconds:.1f}s: {prev} live ({prev_d})"
        + (f", {live} stopped" if stopped else f", {live} still running"))
    return {"id": rid, "mode": plan.mode, "from": live, "from_deployment": plan.live_d,
            "from_image": plan.live_image, "to": prev, "deployment": prev_d, "image": plan.prev_image,
            "stopped_other": stopped, "seconds": round(seconds, 3)}


def _require_image(backend: SdkBackend | ComposeBackend, image: str | None, deployment: str | None) -> str:
    """``image`` when Docker still has it; NoPreviousRelease when none is recorded or it is gone."""
    import docker.errors

    if not image:
        raise NoPreviousRelease(f"the previous release ({deployment}) has no recorded image to restart")
    try:
        backend.client.images.get(image)
    except docker.errors.ImageNotFound:
        raise NoPreviousRelease(f"image {image} of the previous release ({deployment}) is gone (pruned or removed); "
                                f"deploy that revision again instead") from None
    return image


def _record(store: state.Store, rid: str, outcome: str, seconds: float, live: str | None, target: str | None,
            cause: str | None = None) -> None:
    """Audit the rollback as one event and one deployment record; release the claim."""
    try:
        with store.update() as st:
            state.record_event(st, rid, ROLLBACK_EVENT, outcome, seconds, st.get("live") or live, target, cause)
            ip = st.get("in_progress")
            if ip and ip.get("id") == rid:
                state.record_deployment(st, ip, outcome, cause=cause)
    except HookError as exc:
        print(f"warning: could not record the rollback in the state file: {exc}", file=sys.stderr)
