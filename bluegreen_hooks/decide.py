"""The central decision, pure: given the state and what was observed, what is live and what to do.

``decide()`` is the one place that answers, for a deployment's BeforeInstall or ApplicationStart:
which colour is live, which is the target, which colour it replaces, whether another deployment holds
the app (refuse), whether a stale holder is taken over, and whether an interrupted switch must be
repaired; and for ApplicationStart, whether it already switched (``switched``), must refuse (``refused``)
or may go on with an early start (``confirmed``). The real events (through lifecycle/steps.claim) and
``--dry-run`` both call it on the same gathered ``World``; the events then commit ``Decision.state`` and
act on its fields, the plan only prints them.

Nothing here reads a file, the clock or /proc: the caller passes the time and how to tell whether a
holder's process is alive.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Optional

from bluegreen_hooks.model import COLOURS, Colour, InProgress, Running, State, Who, other, record_deployment

Alive = Callable[[Optional[int], Optional[int]], bool]   # (pid, start time) -> that process still runs
ENDED = ("failed", "abandoned", "unlocked")               # outcomes of a deployment that ended unsuccessfully


@dataclass(frozen=True)
class World:
    """What was observed before deciding: the include, what nginx answers, what runs."""

    include_colour: Colour | None          # the colour the nginx include names (None: no include / unknown)
    served: Colour | None                  # the colour nginx answers from (its colour header), None if unknown
    running: Mapping[Colour, Running | None]
    state_problem: str | None = None       # the state file was "missing" / "corrupt" / unreadable
    canary_old: Colour | None = None       # the include is in canary form: the colour it keeps the rest on


@dataclass(frozen=True)
class TakeOver:
    """A stale holder taken over by the claim: whose deployment, and why it was stale (``holder_status``)."""

    holder: str
    reason: str

    def text(self, would: bool = False) -> str:
        """The line the event says (``would``: the dry run's, which changes nothing)."""
        return f"{'would take' if would else 'took'} over from stale deployment {self.holder}: {self.reason}"


@dataclass(frozen=True)
class CanaryRepair:
    """An interrupted canary (its hook was killed): all traffic goes back to ``old``; ``how`` says what showed it."""

    old: Colour
    how: str

    def text(self, would: bool = False) -> str:
        verb, then = ("would go back", " before anything else") if would else ("goes back", "")
        return (f"an interrupted canary: {self.how}; all traffic {verb} to {self.old} (include rewritten, nginx "
                f"reloaded){then}")


@dataclass
class Decision:
    live: Colour | None
    target: Colour
    old: Colour | None                     # the colour this deployment replaces (stopped by ValidateService)
    done: bool = False                     # the deployment is already live: every event is a no-op
    busy: str | None = None                # another deployment holds the app: refuse with this reason
    takeover: TakeOver | None = None       # a stale holder was taken over
    repair: Colour | None = None           # an interrupted switch: rewrite the include for this colour
    resumed: str | None = None             # the deployment was already in progress (note)
    canary: CanaryRepair | None = None     # an interrupted canary: ``repair`` names the old colour (reload)
    switched: bool = False                 # this deployment already switched nginx to its target (ApplicationStart
                                           # again: validate through nginx, nothing else)
    refused: str | None = None             # ApplicationStart refuses with this: the target is live, not by its switch
    confirmed: Colour | None = None        # the target BeforeInstall chose, unchanged since (stage BeforeInstall, no
                                           # repair, not live): ApplicationStart's early start of it may go on
    notes: list[str] = field(default_factory=list)   # what reconcile() corrected
    state: State | None = None             # the state to commit (reconciled and claimed); None when busy/done


def holder_status(in_progress: InProgress, now: float, stale_after: float, this_host: str, alive: Alive,
                  ended: str | None = None, successor_group: str | None = None) -> tuple[str, str]:
    """Classify an ``in_progress`` record: ("busy" | "stale", human reason).

    * its event process is alive (pid and start time match) → busy;
    * its event process died without finishing (SIGKILL, a crash, the agent's timeout) → stale at once;
    * between events, when its deployment already ended (``ended``: the outcome the history records for
      it) → stale;
    * between events, when a new deployment of the same CodeDeploy deployment group starts
      (``successor_group``): CodeDeploy runs one deployment per group at a time, so this one is over
      (e.g. it failed outside our hooks) → stale;
    * its last event finished and the next has not started within ``stale_after`` seconds → stale;
    * otherwise (between two events, e.g. during Install) → busy.
    """
    age, idle = now - in_progress.started, now - (in_progress.updated or in_progress.started)
    event = in_progress.event or "?"
    if not in_progress.event_done:
        if in_progress.host not in (None, this_host):
            return "busy", f"{event} running on {in_progress.host}"
        if alive(in_progress.pid, in_progress.pid_start):
            return "busy", f"{event} running as pid {in_progress.pid}, started {age:.0f}s ago"
        return "stale", f"its {event} process (pid {in_progress.pid}) died without finishing"
    if ended:
        return "stale", f"it already ended ({ended}) after {event}"
    if successor_group and in_progress.group == successor_group:
        return "stale", (f"a new deployment of its deployment group {in_progress.group} started, and CodeDeploy "
                         f"runs one deployment per group at a time: it ended after {event} (e.g. failed outside "
                         f"our hooks)")
    if idle < stale_after:
        return "busy", f"between events (last: {event} finished {idle:.0f}s ago, started {age:.0f}s ago)"
    return "stale", f"idle for {idle:.0f}s after {event} (stale after {stale_after:.0f}s)"


def reconcile(state: State, include_colour: Colour | None, running: Mapping[Colour, Running | None],
              problem: str | None, now: float) -> list[str]:
    """Make ``st.live`` agree with reality; return what was corrected, one note per line.

    The include wins when its colour runs; else the recorded colour if it runs; else the only colour
    running.
    """
    notes = [f"state file was {problem}; rebuilt from the nginx include and the containers"] if problem else []
    recorded = state.live
    up = [c for c in COLOURS if running.get(c)]
    if include_colour and running.get(include_colour):
        live: Colour | None = include_colour
    elif recorded and running.get(recorded) and include_colour is None:
        live = recorded
    else:
        live = up[0] if len(up) == 1 else (recorded if recorded in up else None)
    if live != recorded:
        why = f"nginx include points at {include_colour}" if include_colour else "the nginx include names no colour"
        notes.append(f"state said live={recorded}, but {why} and running colours are {up or 'none'}: "
                     f"live is now {live}")
        info = running.get(live) if live else None
        if live is None or info is None:
            state.clear_live()
        else:
            state.record_switch(live, info.deployment, info.image, now, state.drain_workers)
    return notes


def same_id_running(in_progress: InProgress, who: Who, alive: Alive) -> bool:
    """Another live process (not ``who``) runs an event of the holder's deployment on this host."""
    return (not in_progress.event_done and (in_progress.pid, in_progress.pid_start) != (who.pid, who.pid_start)
            and in_progress.host in (None, who.host) and alive(in_progress.pid, in_progress.pid_start))


def ended_outcome(state: State, in_progress: InProgress) -> str | None:
    """The outcome the history records for the deployment ``in_progress`` when it ended without succeeding since it
    was claimed (a failure recorded by a process that could not clear the claim), else None."""
    for record in reversed(state.deployments):
        ended = record.get("ended")
        if (record.get("id") == in_progress.id and record.get("outcome") in ENDED and isinstance(ended, (int, float))
                and ended >= in_progress.started):
            return str(record["outcome"])
    return None


def claim(state: State, deployment_id: str, event: str, target: Colour | None, who: Who, now: float,
          stale_after: float, alive: Alive, group: str | None = None) -> tuple[str | None, TakeOver | None]:
    """Make ``deployment_id`` the holder of ``state`` for ``event``: (busy reason, the stale holder taken over).

    When another deployment is busy, or another live process already runs an event of this same
    deployment id, nothing changes and the reason is returned. ``group`` (the CodeDeploy deployment
    group id) lets the BeforeInstall of a new deployment take over one of the same group between events."""
    in_progress, note = state.in_progress, None
    if in_progress is not None and in_progress.id == deployment_id and same_id_running(in_progress, who, alive):
        return (f"deployment {deployment_id} is already running {in_progress.event or '?'} as pid {in_progress.pid} "
                f"(a second process with the same deployment id)"), None
    if in_progress is not None and in_progress.id != deployment_id:
        new = event == "BeforeInstall" and not any(r.get("id") == deployment_id for r in state.deployments)
        verdict, reason = holder_status(in_progress, now, stale_after, who.host, alive,
                                        ended_outcome(state, in_progress), group if new else None)
        if verdict == "busy":
            return f"deployment {in_progress.id} is in progress ({reason})", None
        note = TakeOver(in_progress.id, reason)
        record_deployment(state, in_progress, "abandoned", now, reason)
        in_progress = None
    if in_progress is None:
        in_progress = InProgress(id=deployment_id, target=target, started=now, group=group)
    in_progress.pid, in_progress.pid_start = who.pid, who.pid_start
    in_progress.host, in_progress.user = who.host, who.user
    in_progress.event, in_progress.event_done, in_progress.updated = event, False, now
    if target is not None:
        in_progress.target = target
    state.in_progress = in_progress
    return None, note


def locked_message(busy: str, app: str, retry: str) -> str:
    """THE line every refused claim ends with (a deployment's events, a rollback, maintenance on/off): who holds
    the app, and what to do; ``retry`` names what to run again (a deployment id, "the rollback", ...)."""
    return (f"{busy}; wait for it to finish, or, if it is no longer running, release it with "
            f"`bluegreen-hooks unlock --app {app}`, then retry {retry}")


def interrupted_switch(world: World) -> bool:
    """A switch killed between writing the include and reloading nginx leaves a file naming a colour
    nginx does not serve: then what nginx answers wins, when that colour runs here."""
    return bool(world.include_colour and world.served and world.served != world.include_colour
                and world.running.get(world.served))


def interrupted_canary(state: State, world: World) -> CanaryRepair | None:
    """A canary that did not finish (its hook was killed): the include still splits, or the state says a
    canary runs while this decision is taken. Traffic goes back to the old colour (when it runs)."""
    in_progress = state.in_progress
    held = in_progress.canary if in_progress is not None else None
    running = held if held is not None and held.phase == "running" else None
    old = world.canary_old or (running.old if running else None)
    if old is None or not world.running.get(old):
        return None
    how = (f"the nginx include still splits traffic ({world.canary_old} keeps the rest)" if world.canary_old
           else f"the state says the canary of {in_progress.id if in_progress else '?'} was running")
    return CanaryRepair(old, how)


def decide(state: State, world: World, deployment_id: str, event: str, who: Who, now: float,
           stale_after: float, alive: Alive, group: str | None = None) -> Decision:
    """Pure: what BeforeInstall/ApplicationStart of ``deployment_id`` decides (see the module docstring)."""
    state = copy.deepcopy(state)
    if state.completed(deployment_id):
        live = state.live or "blue"
        return Decision(state.live, live, None, done=True)
    canary = interrupted_canary(state, world)
    repair = canary.old if canary else (world.served if interrupted_switch(world) else None)
    notes = reconcile(state, repair or world.include_colour, world.running, world.state_problem, now)
    mine = state.holder(deployment_id)
    target: Colour = mine.target if mine and mine.target else (other(state.live) if state.live else "blue")
    resumed = (f"deployment {deployment_id} is in progress (stage {mine.stage}): it keeps target {target}"
               if mine and mine.target else None)
    held = state.in_progress.canary if state.in_progress is not None else None
    if canary is not None and held is not None and held.phase == "running":   # kept in history as interrupted
        held.phase, held.cause, held.share = "aborted", "interrupted (its hook died)", 0
    busy, takeover = claim(state, deployment_id, event, target, who, now, stale_after, alive, group)
    if busy:
        return Decision(state.live, target, None, busy=busy, notes=notes)
    in_progress = state.in_progress
    if in_progress is not None and (mine is None or mine.from_colour is None):
        in_progress.from_colour = state.live if state.live != target else state.previous
    stage = in_progress.stage if in_progress is not None else None
    switched = stage in ("switched", "validated") and state.live == target
    refused = (f"target colour {target} is live; refusing to replace it (run `bluegreen-hooks status`)"
               if target == state.live and not switched else None)
    confirmed = target if stage == "BeforeInstall" and not repair and target != state.live else None
    return Decision(state.live, target, in_progress.from_colour if in_progress else None, takeover=takeover,
                    repair=repair, resumed=resumed, notes=notes, state=state, canary=canary, switched=switched,
                    refused=refused, confirmed=confirmed)


def early_target(state: State, deployment_id: str, include_colour: Colour | None, served: Colour | None,
                 split: bool) -> Colour | None:
    """The colour ApplicationStart of ``deployment_id`` may start before it observes what runs (a compose
    app's ``up`` then overlaps connecting to Docker and the claim), or None.

    Only when nothing can have moved since BeforeInstall chose it: this deployment's BeforeInstall finished
    and still holds the app, nothing else is in flight (no background retire, no canary), its target is not
    the recorded live colour, and the nginx include names (and nginx serves) the recorded live colour, or
    no colour when none is live. ``decide()`` then runs as always, with the target left out of what runs."""
    in_progress = state.in_progress
    if (in_progress is None or in_progress.id != deployment_id or in_progress.event != "BeforeInstall"
            or not in_progress.event_done or in_progress.stage != "BeforeInstall" or in_progress.target is None
            or in_progress.canary is not None):
        return None
    if state.retiring is not None or split or in_progress.target == state.live:
        return None
    if include_colour != state.live or served not in (None, include_colour):
        return None
    return in_progress.target
