"""Names shared by every part of the package: colours, lifecycle events, the deployment-id pattern (from names.py).

Pure and import-light (no docker, no tenacity): hooks, the local runner and the plan all start here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, get_args

from bluegreen_hooks.names import is_deployment_id, is_image

Colour = Literal["blue", "green"]
COLOURS: tuple[Colour, ...] = get_args(Colour)
Stage = Literal["BeforeInstall", "switched", "validated"]   # a deployment's last finished step (state: see below)
VerifyMode = Literal["header", "generation"]     # how a deployment's switches are proven (host/nginx_conf.py)
CanaryPhase = Literal["running", "promoted", "aborted"]
CanaryRequest = Literal["promote", "abort"]                 # an operator's `bluegreen-hooks canary promote|abort`
RetirePhase = Literal["draining", "stopping"]               # a background retire's (lifecycle/background.py)
Say = Callable[[str], None]   # how every step reports a line (the event's reporter, or print)

# the events bluegreen-hooks acts on, in the order the CodeDeploy agent runs them
EVENTS: tuple[str, ...] = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")
# every event an appspec may name (in-place deployments, with and without a load balancer)
AGENT_EVENTS: tuple[str, ...] = (
    "BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop", "BeforeInstall", "AfterInstall",
    "ApplicationStart", "ValidateService", "BeforeAllowTraffic", "AfterAllowTraffic")


def other(colour: Colour) -> Colour:
    """The colour that is not ``colour``."""
    return "green" if colour == "blue" else "blue"


# ---- the state: one app's state file, typed. The JSON keys are the file format (docs/operator.md); ``from_json``
# checks every type and raises BadState naming the key: a file that parses as JSON but has the wrong shape is
# treated like a corrupt one (quarantined and rebuilt), never half-trusted. A closed set (Colour, Stage...) holds
# every value any version has written: no file of an earlier version is refused.

SCHEMA = 1
Record = dict[str, Any]      # one history record (a deployment or an event run): plain JSON
_S = TypeVar("_S", bound=str)   # a value of one closed set (_one_of)


class BadState(ValueError):
    """The state file is not a state file of this app; ``str()`` names the first bad key."""


def _get(data: Mapping[str, Any], key: str, kinds: tuple[type, ...], optional: bool = True) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise BadState(f"{key}: should be {' or '.join(k.__name__ for k in kinds)}, not {value!r}")
    if not isinstance(value, kinds):
        raise BadState(f"{key}: should be {' or '.join(k.__name__ for k in kinds)}, not {value!r:.40}")
    return value


def _one_of(data: Mapping[str, Any], path: str, values: tuple[_S, ...], null: bool = True) -> _S | None:
    """The value of ``path``'s last key, one of ``values`` (None: absent, if ``null``); else BadState naming both."""
    value = data.get(path.rsplit("/", 1)[-1])
    found = next((v for v in values if v == value), None)
    if found is None and (value is not None or not null):
        should = f"{', '.join(values)} or null" if null else " or ".join(values)
        raise BadState(f"{path}: should be {should}, not {value!r:.40}")
    return found


def _workers(data: Mapping[str, Any], key: str) -> list[list[int]]:
    value = data.get(key) or []
    ok = isinstance(value, list) and all(
        isinstance(w, list) and len(w) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in w)
        for w in value)
    if not ok:
        raise BadState(f"{key}: should be a list of [pid, start time] pairs")
    return [list(w) for w in value]


def _records(data: Mapping[str, Any], key: str) -> list[Record]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise BadState(f"{key}: should be a list of records (objects)")
    return value


_NUM = (int, float)


@dataclass
class Canary:
    """A canary of the deployment in progress (lifecycle/canary.py): the share the new colour gets now,
    each finished step's figures, and an operator's request to end it early (``promote``/``abort``)."""

    old: Colour
    new: Colour
    share: int                            # percent of requests nginx sends to ``new`` now
    step: int = 0                         # index into the configured steps
    phase: CanaryPhase = "running"
    started: float = 0.0
    request: CanaryRequest | None = None  # set by `bluegreen-hooks canary`
    requested_by: str | None = None
    cause: str | None = None
    steps: list[Record] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> Canary:
        if not isinstance(data, dict):
            raise BadState("in_progress/canary: should be an object or null")
        old, new = _one_of(data, "old", COLOURS), _one_of(data, "new", COLOURS)
        if old is None or new is None:
            raise BadState("in_progress/canary: old and new should be colours")
        return cls(old=old, new=new, share=int(_get(data, "share", (int,), False)), cause=_get(data, "cause", (str,)),
                   step=int(_get(data, "step", (int,)) or 0), started=float(_get(data, "started", _NUM) or 0),
                   phase=_one_of(data, "in_progress/canary/phase", get_args(CanaryPhase)) or "running",
                   request=_one_of(data, "in_progress/canary/request", get_args(CanaryRequest)),
                   requested_by=_get(data, "requested_by", (str,)), steps=_records(data, "steps"))

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "share": self.share, "step": self.step, "phase": self.phase,
                "started": self.started, "request": self.request, "requested_by": self.requested_by,
                "cause": self.cause, "steps": self.steps}


@dataclass
class InProgress:
    """The deployment (or rollback) holding the app: who runs which event, and how far it got."""

    id: str
    target: Colour | None
    started: float
    stage: Stage | None = None            # the last finished step
    event: str | None = None
    event_done: bool = False              # the event finished; the next has not started
    updated: float = 0.0
    pid: int | None = None
    pid_start: int | None = None
    host: str | None = None
    user: str | None = None
    from_colour: Colour | None = None     # JSON "from": the colour live before this deployment
    image: str | None = None
    old_workers: list[list[int]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)   # keys this version does not know: kept as they are
    canary: Canary | None = None          # a canary of this deployment (running, or how it ended)
    group: str | None = None              # the CodeDeploy deployment group id (DEPLOYMENT_GROUP_ID), if any
    verify_mode: VerifyMode | None = None  # decided at the deployment's first switch (lifecycle/steps.verify_mode)

    @classmethod
    def from_json(cls, data: Any) -> InProgress:
        if not isinstance(data, dict):
            raise BadState("in_progress: should be an object or null")
        ident = data.get("id")
        if not isinstance(ident, str) or not is_deployment_id(ident):
            raise BadState(f"in_progress/id: should be a deployment id, not {ident!r:.40}")
        timings = data.get("timings") or {}
        if not isinstance(timings, dict) or not all(isinstance(v, _NUM) for v in timings.values()):
            raise BadState("in_progress/timings: should be an object of numbers")
        known = {f.name for f in fields(cls)} | {"from"}
        return cls(
            id=ident, target=_one_of(data, "target", COLOURS), started=float(_get(data, "started", _NUM, False)),
            stage=_one_of(data, "in_progress/stage", get_args(Stage)), event=_get(data, "event", (str,)),
            event_done=bool(_get(data, "event_done", (bool,))), updated=float(_get(data, "updated", _NUM) or 0),
            pid=_get(data, "pid", (int,)), pid_start=_get(data, "pid_start", (int,)), host=_get(data, "host", (str,)),
            user=_get(data, "user", (str,)), from_colour=_one_of(data, "from", COLOURS), timings=dict(timings),
            old_workers=_workers(data, "old_workers"), image=_get(data, "image", (str,)),
            extra={k: v for k, v in data.items() if k not in known}, group=_get(data, "group", (str,)),
            canary=None if data.get("canary") is None else Canary.from_json(data["canary"]),
            verify_mode=_one_of(data, "in_progress/verify_mode", get_args(VerifyMode)))

    def to_json(self) -> dict[str, Any]:
        out = {**self.extra, "id": self.id, "target": self.target, "started": self.started, "stage": self.stage,
               "event": self.event, "event_done": self.event_done, "updated": self.updated, "pid": self.pid,
               "pid_start": self.pid_start, "host": self.host, "user": self.user, "from": self.from_colour,
               "image": self.image, "old_workers": self.old_workers, "timings": self.timings}
        if self.canary is not None:
            out["canary"] = self.canary.to_json()
        out.update({k: v for k, v in (("group", self.group), ("verify_mode", self.verify_mode)) if v is not None})
        return out


def _check_names(data: Mapping[str, Any]) -> None:
    """The state's ids and images reach the include header, labels and Docker: whole ids and image references
    only (names.py), never a string with a newline or a ``;``."""
    raw_ip = data.get("in_progress")
    in_progress: Mapping[str, Any] = raw_ip if isinstance(raw_ip, dict) else {}
    for where, key, check in (("", "live_deployment", is_deployment_id), ("", "previous_deployment", is_deployment_id),
                              ("", "live_image", is_image), ("", "previous_image", is_image),
                              ("in_progress/", "image", is_image)):
        value = (in_progress if where else data).get(key)
        if value is not None and not (isinstance(value, str) and check(value)):
            raise BadState(f"{where}{key}: should be {'an image' if check is is_image else 'a deployment id'}, "
                           f"not {value!r:.40}")


@dataclass
class Maintenance:
    """Maintenance mode is on (operator/maintenance.py): since when, by whom, what the page says."""

    since: float
    id: str                               # the maintenance-… id it is recorded under in the audit log
    user: str | None = None
    host: str | None = None
    message: str | None = None
    retry_after: int = 120
    colour: Colour | None = None          # the colour live when it was turned on

    @classmethod
    def from_json(cls, data: Any) -> Maintenance:
        if not isinstance(data, dict):
            raise BadState("maintenance: should be an object or null")
        ident = data.get("id")
        if not is_deployment_id(ident):
            raise BadState(f"maintenance/id: should be an id, not {ident!r:.40}")
        return cls(since=float(_get(data, "since", _NUM, False)), id=str(ident), user=_get(data, "user", (str,)),
                   host=_get(data, "host", (str,)), message=_get(data, "message", (str,)),
                   retry_after=int(_get(data, "retry_after", (int,)) or 120), colour=_one_of(data, "colour", COLOURS))

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "id": self.id, "user": self.user, "host": self.host, "message": self.message,
                "retry_after": self.retry_after, "colour": self.colour}


@dataclass
class Retiring:
    """deploy/retire = "background": a detached process drains and stops the old colour (lifecycle/background.py)."""

    colour: Colour                        # the colour being retired
    live: Colour                          # the colour that replaced it
    deployment: str                       # the deployment whose ValidateService handed it over
    since: float
    workers: list[list[int]] = field(default_factory=list)   # the nginx workers it waits for
    pid: int | None = None
    pid_start: int | None = None
    phase: RetirePhase = "draining"       # then "stopping": from there on it is never interrupted
    cancelled: bool = False               # a deployment or rollback took over while it drained

    @classmethod
    def from_json(cls, data: Any) -> Retiring:
        if not isinstance(data, dict):
            raise BadState("retiring: should be an object or null")
        colour, live, ident = _one_of(data, "colour", COLOURS), _one_of(data, "live", COLOURS), data.get("deployment")
        if colour is None or live is None or colour == live or not is_deployment_id(ident):
            raise BadState("retiring: should name two colours and a deployment id")
        return cls(colour=colour, live=live, deployment=str(ident), since=float(_get(data, "since", _NUM, False)),
                   workers=_workers(data, "workers"), pid=_get(data, "pid", (int,)),
                   pid_start=_get(data, "pid_start", (int,)), cancelled=data.get("cancelled") is True,
                   phase=_one_of(data, "retiring/phase", get_args(RetirePhase), null=False) or "draining")

    def to_json(self) -> dict[str, Any]:
        return {"colour": self.colour, "live": self.live, "deployment": self.deployment, "since": self.since,
                "workers": self.workers, "pid": self.pid, "pid_start": self.pid_start, "phase": self.phase,
                "cancelled": self.cancelled}


def _counters(data: Mapping[str, Any]) -> dict[str, int]:
    value = data.get("counters") or {}
    if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        raise BadState("counters: should be an object of integers")
    return dict(value)


@dataclass
class State:
    """What is live, what is in progress, and what happened, for one app (see host/store.py)."""

    app: str
    live: Colour | None = None
    live_since: float | None = None
    live_deployment: str | None = None
    live_image: str | None = None
    previous: Colour | None = None
    previous_deployment: str | None = None
    previous_image: str | None = None
    in_progress: InProgress | None = None
    drain_workers: list[list[int]] = field(default_factory=list)   # nginx workers alive at the last switch
    config: str | None = None                                      # the copy of the live bluegreen.toml
    deployments: list[Record] = field(default_factory=list)
    events: list[Record] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    long_lived: Record | None = None     # the last drain that closed long-lived connections: {at, open, colour}
    maintenance: Maintenance | None = None                         # maintenance mode is on
    counters: dict[str, int] = field(default_factory=dict)         # totals that outlive the bounded history
    retiring: Retiring | None = None      # deploy/retire = "background": the old colour's drain and stop

    @classmethod
    def from_json(cls, data: Any, app: str) -> State:
        if not isinstance(data, dict):
            raise BadState("the file should hold one JSON object")
        if data.get("app") != app:
            raise BadState(f"app: should be {app!r}, not {data.get('app')!r:.40}")
        _check_names(data)
        in_progress = data.get("in_progress")
        known = {f.name for f in fields(cls)} | {"schema"}
        return cls(
            app=app, live=_one_of(data, "live", COLOURS), live_since=_get(data, "live_since", _NUM),
            live_deployment=_get(data, "live_deployment", (str,)), live_image=_get(data, "live_image", (str,)),
            previous=_one_of(data, "previous", COLOURS), previous_deployment=_get(data, "previous_deployment", (str,)),
            previous_image=_get(data, "previous_image", (str,)),
            in_progress=None if in_progress is None else InProgress.from_json(in_progress),
            drain_workers=_workers(data, "drain_workers"), config=_get(data, "config", (str,)),
            deployments=_records(data, "deployments"), events=_records(data, "events"),
            extra={k: v for k, v in data.items() if k not in known},
            long_lived=_get(data, "long_lived", (dict,)),
            maintenance=None if data.get("maintenance") is None else Maintenance.from_json(data["maintenance"]),
            counters=_counters(data),
            retiring=None if data.get("retiring") is None else Retiring.from_json(data["retiring"]))

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "schema": SCHEMA, "app": self.app, "live": self.live, "live_since": self.live_since,
                "live_deployment": self.live_deployment, "live_image": self.live_image, "previous": self.previous,
                "previous_deployment": self.previous_deployment, "previous_image": self.previous_image,
                "in_progress": self.in_progress.to_json() if self.in_progress else None,
                "drain_workers": self.drain_workers, "config": self.config,
                "deployments": self.deployments, "events": self.events,
                **({"long_lived": self.long_lived} if self.long_lived is not None else {}),
                "maintenance": self.maintenance.to_json() if self.maintenance else None, "counters": self.counters,
                **({"retiring": self.retiring.to_json()} if self.retiring is not None else {})}

    def holder(self, deployment_id: str) -> InProgress | None:
        """The in-progress record when ``deployment_id`` holds the app, else None."""
        in_progress = self.in_progress
        return in_progress if in_progress is not None and in_progress.id == deployment_id else None

    def completed(self, deployment_id: str) -> bool:
        """``deployment_id`` is live and no longer in progress: every event of it is a no-op."""
        return self.live_deployment == deployment_id and self.holder(deployment_id) is None

    def record_switch(self, colour: Colour, deployment_id: str | None, image: str | None, now: float,
                      old_workers: list[list[int]]) -> None:
        """Record ``colour`` as live (the colour live before it becomes ``previous``) and, after a switch, the
        nginx workers from before it (``old_workers``: they may still proxy to the colour that was live)."""
        if self.live != colour:
            self.previous, self.previous_deployment, self.previous_image = (
                self.live, self.live_deployment, self.live_image)
            self.live_since = now
        self.live, self.live_deployment, self.live_image, self.drain_workers = colour, deployment_id, image, old_workers

    def clear_live(self) -> None:
        self.live = self.live_since = self.live_deployment = self.live_image = None


@dataclass(frozen=True)
class Running:
    """What runs as one colour: the deployment, image and container name from its labels."""

    deployment: str | None
    image: str | None
    name: str
    id: str = ""


@dataclass(frozen=True)
class Who:
    """The process that runs an event: recorded with the claim and in the audit log."""

    pid: int
    pid_start: int | None
    host: str
    user: str


def finish_event(state: State, deployment_id: str, stage: Stage, now: float, **extra: Any) -> None:
    """Mark the holder's current event as done (the deployment stays in progress); ``extra``: image, old_workers
    or timings of the deployment."""
    in_progress = state.holder(deployment_id)
    if in_progress is None:
        return
    for key, value in extra.items():
        if key not in ("image", "old_workers", "timings"):
            raise TypeError(f"finish_event: unknown field {key}")
        setattr(in_progress, key, value)
    in_progress.stage, in_progress.event_done, in_progress.updated = stage, True, now


def record_deployment(state: State, in_progress: InProgress, outcome: str, now: float,
                      cause: str | None = None) -> None:
    """Close the deployment ``in_progress`` in the history (and clear in_progress if it is the holder)."""
    state.deployments.append({
        "id": in_progress.id, "target": in_progress.target, "from": in_progress.from_colour, "outcome": outcome,
        "cause": cause, "started": in_progress.started, "ended": now, "seconds": round(now - in_progress.started, 3),
        "stage": in_progress.stage, "image": in_progress.image, "timings": in_progress.timings,
        **({"canary": in_progress.canary.to_json()} if in_progress.canary is not None else {}),
        **({"receipt": in_progress.extra["receipt"]} if "receipt" in in_progress.extra else {})})   # lifecycle/watch.py
    count(state, f"{'rollbacks' if in_progress.id.startswith('rollback-') else 'deployments'}_{outcome}")
    if state.in_progress is not None and state.in_progress.id == in_progress.id:
        state.in_progress = None


def record_event(state: State, who: Who, deployment_id: str, event: str, outcome: str, seconds: float,
                 target: str | None, now: float, cause: str | None = None) -> None:
    """Append one event run to the audit log."""
    state.events.append({"at": now, "deployment": deployment_id, "event": event, "outcome": outcome,
                      "seconds": round(seconds, 3), "live": state.live, "target": target, "cause": cause,
                      "host": who.host, "user": who.user, "pid": who.pid})


def count(state: State, name: str, n: int = 1) -> None:
    """Add ``n`` to the total ``name`` (e.g. deployments_failed, notify_failed): metrics read them."""
    state.counters[name] = state.counters.get(name, 0) + n
