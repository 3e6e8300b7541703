"""The steps every path that moves traffic is made of: gather → decide → start checked → switch →
drain → retire. The events (lifecycle/events.py) and the operator's rollback share them.

* ``gather``      observe the include, what nginx answers and what runs (no lock held);
* ``claim``       THE claim, for every intent (a deployment, its early start, ValidateService, a rollback,
                  maintenance): lock, read the state, ``decide()`` / ``decide.claim``, refuse with the one
                  lock message, commit;
* ``take``        a deployment's claim: gather, ``claim(ctx, "deploy")``; repair an interrupted switch;
* ``bring_up``    start a colour, wait until it is healthy, switch nginx to it; on failure remove it again;
* ``switch``      point nginx at a colour (write, ``nginx -t``, reload, verify; during maintenance behind the
                  page), proven the way ``verify_mode`` decided once for the deployment;
* ``drain``       wait for nginx workers from before a switch to finish their requests;
* ``retire``      drain, then stop the colour that no longer serves.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, overload

from bluegreen_hooks.config import Config
from bluegreen_hooks.decide import Decision, TakeOver, World, decide, locked_message
from bluegreen_hooks.decide import claim as decide_claim
from bluegreen_hooks.errors import HealthCheckFailed, HookError, LockedError
from bluegreen_hooks.host import nginx, procfs
from bluegreen_hooks.host.store import Read, Store, me
from bluegreen_hooks.lifecycle.verify import decided_mode, record_mode, verify_mode
from bluegreen_hooks.model import Colour, Say, Stage, State, Who, finish_event, is_deployment_id
from bluegreen_hooks.runtime.base import Backend, RunningMap


@dataclass
class Context:
    """One run of one event (or of a rollback) for one app."""

    cfg: Config
    deployment_id: str
    event: str
    say: Say
    store: Store = field(init=False)
    who: Who = field(default_factory=me)
    log_tail: list[str] = field(default_factory=list)
    group: str | None = None              # the CodeDeploy deployment group id ($DEPLOYMENT_GROUP_ID)

    def __post_init__(self) -> None:
        self.store = Store(self.cfg.state_dir, self.cfg.app, self.cfg.history)

    def finish(self, stage: Stage, **extra: object) -> None:
        """Mark this event done in the state (the deployment stays in progress)."""
        with self.store.update() as state:
            finish_event(state, self.deployment_id, stage, time.time(), **extra)


def gather(cfg: Config, backend: Backend | None, state_problem: str | None = None,
           starting: Colour | None = None) -> World:
    """What ``decide()`` needs from the world: the include's colour, what nginx answers, what runs.

    ``be=None`` (Docker unreachable, dry runs only) observes nothing running; ``starting`` (a colour this
    event started before it observed, ``claim_early``) is observed as not running, as it was then."""
    running: RunningMap = backend.running() if backend is not None else {"blue": None, "green": None}
    if starting is not None:
        running[starting] = None
    # not probed again right after claim_early probed it under this event's claim (no switch since)
    include, split, served = observe_nginx(cfg, probe=starting is None)
    return World(include, served, running, state_problem, split[0] if split else None)


def observe_nginx(cfg: Config, probe: bool = True) -> tuple[Colour | None, tuple[Colour, Colour, int] | None,
                                                           Colour | None]:
    """(the include's colour, its canary split (old, new, share) or None, the colour nginx answers from).
    nginx is probed only when the include names a colour (then an interrupted switch is possible)."""
    from bluegreen_hooks.host.nginx_canary import include_split

    text = nginx.read_include(cfg)
    include = nginx.include_colour(cfg, text)
    split = include_split(cfg, text)
    served = nginx.served_colour(cfg) if probe and include and split is None else None
    return include, split, served


Intent = Literal["deploy", "early start", "validate", "rollback", "maintenance"]
"""Who claims the app: a deployment's BeforeInstall/ApplicationStart (``decide()``), ApplicationStart's early
start of a compose app (``claim_early``), ValidateService, an operator's rollback or maintenance on/off."""

RETRY: dict[Intent, str] = {"rollback": "the rollback", "maintenance": "the maintenance command"}
"""What the lock message says to run again, by intent (else the deployment id)."""


@dataclass(frozen=True)
class Hold:
    """What an intent other than "deploy" claims the app for: its target colour (None: keep the holder's), and
    for a rollback the colour it goes back from and the image it goes back to (recorded in the claim)."""

    target: Colour | None = None
    from_colour: Colour | None = None
    image: str | None = None


Prepare = Callable[[Read], Optional[Hold]]
"""Runs under the lock before the claim: the intent's own checks on the state as read (raise to refuse) and
what it claims; None: nothing is claimed (an early start that does not apply)."""


@overload
def claim(ctx: Context, intent: Literal["deploy"], *, world: World) -> Decision: ...


@overload
def claim(ctx: Context, intent: Literal["early start"], *, prepare: Prepare) -> State | None: ...


@overload
def claim(ctx: Context, intent: Literal["validate", "rollback", "maintenance"], *,
          prepare: Prepare | None = None) -> State: ...


def claim(ctx: Context, intent: Intent, *, world: World | None = None,
          prepare: Prepare | None = None) -> Decision | State | None:
    """THE claim: who may hold the app now, for every intent, under the app's lock (briefly).

    Reads the state; "deploy" decides with ``decide()`` on ``world`` (what ``gather`` observed) and returns the
    Decision; the other intents run ``prepare`` and claim with ``decide.claim``, returning the state as
    written. When another deployment holds the app: LockedError with ``decide.locked_message`` (an early start
    returns None instead: ``take`` then says what). Says what reconcile corrected and what was taken over."""
    d: Decision | None = None
    with ctx.store.locked():
        read = ctx.store.read()
        if intent == "deploy":
            assert world is not None
            d = decide(read.state, dataclasses.replace(world, state_problem=read.describe()), ctx.deployment_id,
                       ctx.event, ctx.who, time.time(), ctx.cfg.stale_after, procfs.process_alive, group=ctx.group)
            busy, takeover, state, notes = d.busy, d.takeover, d.state, d.notes
        else:
            hold = prepare(read) if prepare is not None else Hold()
            if hold is None:
                return None
            state, notes = read.state, []
            busy, takeover = _hold(ctx, state, hold)
        if busy:
            if intent == "early start":
                return None
            raise LockedError(locked_message(busy, ctx.cfg.app, RETRY.get(intent, ctx.deployment_id)))
        if state is not None:
            ctx.store.write(state)
    for note in notes:
        ctx.say(f"reconciled: {note}")
    if takeover is not None:
        ctx.say(takeover.text())
    return d if d is not None else state


def _hold(ctx: Context, state: State, hold: Hold) -> tuple[str | None, TakeOver | None]:
    """``decide.claim`` of ``state`` (changed in place) for ``hold``: (busy reason, the stale holder taken over)."""
    busy, takeover = decide_claim(state, ctx.deployment_id, ctx.event, hold.target, ctx.who, time.time(),
                                  ctx.cfg.stale_after, procfs.process_alive, ctx.group)
    if not busy and state.in_progress is not None and hold.from_colour is not None:
        state.in_progress.from_colour, state.in_progress.image = hold.from_colour, hold.image
    return busy, takeover


def take(ctx: Context, backend: Backend, starting: Colour | None = None) -> Decision:
    """Claim the app for this deployment: observe, then decide and commit under the lock (``claim``)."""
    world = gather(ctx.cfg, backend, starting=starting)
    d = claim(ctx, "deploy", world=world)
    if d.resumed is not None:
        ctx.say(d.resumed)
    if d.repair and d.state is not None and d.canary:
        _repair_canary(ctx, d.repair, d.state, d.canary.text())
    elif d.repair and d.state is not None:
        _repair_include(ctx, d.repair, d.state, world)
    return d


def claim_early(ctx: Context) -> Colour | None:
    """ApplicationStart: the target BeforeInstall chose, claimed for this event before Docker is connected, when
    ``decide.early_target`` allows it and nothing answers on the target's ports; else None (nothing changed).
    The caller may start it at once and must then ``take(..., starting=target)``."""
    from bluegreen_hooks.decide import early_target
    from bluegreen_hooks.host import ports
    from bluegreen_hooks.runtime.compose_argv import detached_record
    from bluegreen_hooks.runtime.compose_exec import Detached

    cfg = ctx.cfg
    include, split, served = observe_nginx(cfg)

    def still_chosen(read: Read) -> Hold | None:
        target = None if read.describe() else early_target(read.state, ctx.deployment_id, include, served,
                                                             split is not None)
        if target is None:
            return None
        up = Detached.find(detached_record(cfg, target)) if cfg.compose is not None else None
        if up is not None and (up.deployment_id, up.colour) == (ctx.deployment_id, target):
            return Hold(target)   # BeforeInstall started it (lifecycle/early_start): its containers may answer
        if any(ports.answers(cfg.host, port) for port in cfg.colour_ports(target)):   # take() and the checks say what
            return None
        return Hold(target)

    state = claim(ctx, "early start", prepare=still_chosen)
    in_progress = state.holder(ctx.deployment_id) if state is not None else None
    return in_progress.target if in_progress is not None else None


def _repair_canary(ctx: Context, old: Colour, state: State, note: str) -> None:
    """An interrupted canary: nginx may still split (its include was in canary form, or the promote was
    written but not reloaded): the old colour's include goes through the whole switch (test, reload, verify),
    then the canary's nginx workers finish their requests to the new colour before anything removes it."""
    from bluegreen_hooks.host import nginx_canary

    ctx.say(note)
    dep = state.live_deployment or ""
    sw = nginx.switch(ctx.cfg, old, dep if is_deployment_id(dep) else "unknown", ctx.say, verify_mode(ctx))
    nginx_canary.remove_logs(ctx.cfg)
    drained, left = nginx.wait_drained(sw.old_workers, ctx.cfg.drain_timeout)
    ctx.say("the canary's nginx workers finished their requests" if drained else
            f"drain timeout ({ctx.cfg.drain_timeout:g}s) reached with {left} canary nginx worker(s) still busy")


def _repair_include(ctx: Context, served: Colour, state: State, world: World) -> None:
    """An interrupted switch: make the include say what nginx serves again (no reload needed)."""
    ctx.say(f"nginx serves {served} but {ctx.cfg.nginx.include} names {world.include_colour} (an interrupted "
            f"switch): include rewritten for {served}")
    from bluegreen_hooks.lifecycle import during_maintenance

    running = world.running.get(served)
    dep = (running.deployment if running else None) or state.live_deployment or ""
    deployment = dep if is_deployment_id(dep) else "unknown"
    text, _ = during_maintenance.include_for(ctx.cfg, state.maintenance, served, deployment)
    nginx.write_include(ctx.cfg, text)


def check_nginx_config(ctx: Context) -> None:
    """Read nginx's effective config (`nginx -T`) before anything changes: refuse a server block that does
    not include our include or does not proxy through its variable, naming the lines to add."""
    from bluegreen_hooks.host import nginx_conf

    found = nginx_conf.check(ctx.cfg, ctx.say)
    ctx.say(f"nginx config: {found.describe()}; switches will be {nginx_conf.mode_text(found, ctx.cfg)}")


def check_target_ports(cfg: Config, target: Colour) -> None:
    """Refuse when something that is not our container answers on the target colour's port(s): it would
    make our container fail to bind, or answer the health check in its place (host/ports.py)."""
    from bluegreen_hooks.host import ports
    from bluegreen_hooks.runtime import owner

    ports.check_free(cfg.host, cfg.colour_port_keys(target), target, owner=owner.describe)


def check_ports_owned(cfg: Config, backend: Backend, colour: Colour) -> None:
    """Refuse to send traffic to ``colour`` when a process that is not one of its containers holds one of
    its ports (a squatter answering in its place): every path that switches nginx checks this first."""
    backend.check_ports_held(colour)


@dataclass
class BroughtUp:
    """A colour made live by ``bring_up``: how long it took to get healthy, and the switch."""

    healthy_seconds: float
    healthy_to_serving_ms: float
    switch: nginx.Switch


def bring_up(ctx: Context, backend: Backend, colour: Colour, artifact: str | None, deployment_id: str,
             live: Colour | None, include_id: str, route: Callable[[], nginx.Switch] | None = None,
             restore: bool = False, before_switch: Callable[[], None] | None = None,
             on_failure: Callable[[BaseException], None] | None = None) -> BroughtUp:
    """Start ``colour`` from ``artifact`` (None: it already runs; ``restore``: bring back its recorded
    release), wait until it is healthy on its own port, check its ports are held by its containers, run
    ``before_switch`` (release tasks), then switch nginx to it (or ``route()`` it, e.g. a canary). On
    failure ``on_failure`` runs, a colour this call started is removed again (``live`` keeps serving) and
    the error is re-raised as it is: the caller says what keeps serving."""
    try:
        if restore:
            backend.restore(colour, deployment_id, live, ctx.say)
        elif artifact is not None:
            backend.start(colour, artifact, deployment_id, live, ctx.say)
        healthy = backend.wait_healthy(colour, ctx.say)
        check_ports_owned(ctx.cfg, backend, colour)
        if before_switch is not None:
            before_switch()
        t_healthy = time.monotonic()
        sw = route() if route is not None else switch(ctx, colour, include_id)
        return BroughtUp(healthy, round((time.monotonic() - t_healthy) * 1000, 1), sw)
    except BaseException as exc:
        if isinstance(exc, HealthCheckFailed):
            ctx.log_tail = backend.logs_tail(colour)
        if on_failure is not None:
            on_failure(exc)
        if artifact is not None or restore:
            ctx.say(f"{'stopping' if restore else 'removing'} {colour}: {live or 'nothing'} keeps serving")
            try:
                if restore:   # the recorded release stays as it was: stopped, restorable
                    backend.stop_colour(colour, live, ctx.say, grace=0)
                else:
                    backend.remove_colour(colour, live, ctx.say, grace=0)
            except Exception as cleanup:
                ctx.say(f"warning: could not remove {colour}: {cleanup}")
        raise


def with_serving(exc: HookError, live: Colour | None, see_output: bool, next_step: str = "") -> HookError:
    """The same error, its message ending with what keeps serving (and what to do)."""
    serving = f"{live} keeps serving" if live else "nothing was serving"
    step = "; see the output above, fix the app and deploy again" if see_output else\
        (f"; {next_step}" if next_step else "")
    return type(exc)(f"{exc}; {serving}{step}")


def switch(ctx: Context, colour: Colour, include_id: str) -> nginx.Switch:
    """Point nginx at ``colour`` through the validated switch (host/nginx.py: write, test, reload, verify, the
    deployment's ``verify_mode``); during maintenance behind the maintenance page, which stays up (its include
    for the new colour, same message and Retry-After; the check looks for the page, not for the colour)."""
    from bluegreen_hooks.host import maintenance as page
    from bluegreen_hooks.lifecycle import during_maintenance

    cfg, m = ctx.cfg, during_maintenance.current(ctx.store)
    if m is None:
        mode, unrecorded = decided_mode(ctx)
        sw = nginx.switch(cfg, colour, include_id, ctx.say, mode)
        if unrecorded:   # after the switch: the state write is not on its path
            record_mode(ctx, mode)
        return sw
    text, marker = during_maintenance.include_for(cfg, m, colour, include_id)
    sw = nginx.switch_to(cfg, text, lambda: page.verify(cfg, marker or "", m.retry_after))
    page.wait_old_workers_stop_accepting(cfg, sw.old_workers)
    ctx.say(f"nginx now has {colour} behind the maintenance page ({during_maintenance.describe(m)}; test + reload "
            f"+ check in {sw.seconds * 1000:.0f} ms); `bluegreen-hooks maintenance off` sends traffic to it")
    return sw


def drain(ctx: Context, workers: list[list[int]], done: str) -> bool:
    """Wait (at most deploy/drain_timeout) until nginx ``workers`` from before a switch have exited; the
    seconds it took are kept in the deployment's timings ("drain", for the metrics). True when drained."""
    t0 = time.monotonic()
    drained, left = nginx.wait_drained(workers, ctx.cfg.drain_timeout)
    try:
        with ctx.store.update() as state:
            in_progress = state.holder(ctx.deployment_id)
            if in_progress is not None:
                in_progress.timings["drain"] = round(time.monotonic() - t0, 3)
    except (HookError, OSError) as exc:   # only a figure for the metrics: never a reason to stop here
        ctx.say(f"warning: could not record the drain time: {exc}")
    ctx.say(done if drained else
            f"drain timeout ({ctx.cfg.drain_timeout:g}s) reached with {left} nginx worker(s) still busy")
    return drained


def retire(ctx: Context, backend: Backend, colour: Colour, live: Colour, workers: list[list[int]], done: str,
           keep: bool = False, before_stop: Callable[[], bool] | None = None) -> bool:
    """Drain the nginx workers that may still proxy to ``colour``, then stop and remove it (``keep``: stop
    it only, so that its release can be started again at once by a rollback); long-lived connections still
    open then are closed by the stop (lifecycle/long_lived.py). ``before_stop`` (the background retire)
    may call the stop off after the drain: False is returned then, True when the colour was stopped."""
    from bluegreen_hooks.lifecycle import long_lived

    drained = drain(ctx, workers, done)
    if before_stop is not None and not before_stop():
        return False
    open_before = 0 if drained else long_lived.still_open(ctx.cfg, colour)
    if keep:
        backend.stop_colour(colour, live, ctx.say)
    else:
        backend.remove_colour(colour, live, ctx.say)
    if not drained:
        long_lived.report(ctx.cfg, ctx.store, ctx.say, ctx.deployment_id, colour, live, workers, open_before)
    return True


def prune(ctx: Context, backend: Backend) -> None:
    """Remove old release artifacts beyond deploy/keep_images, never the live or the previous release's."""
    state = ctx.store.read().state
    backend.prune({i for i in (state.live_image, state.previous_image) if i}, ctx.say)
