"""Dry-run plans: what each lifecycle event WOULD do, computed without changing anything.

``gather()`` reads the world (the state file without taking the lock, the nginx include, the app's
containers and the nginx pids); ``plan_deployment()`` is pure and turns that into a ``Plan``;
``render()`` prints it for some events. Nothing here writes a file, takes a lock, runs ``nginx -t``
or talks to Docker other than to list containers and images.

The plan follows the decisions the events make (events.py): the target colour is the colour that is
not live (blue on the first deployment), after the same reconcile() of the state with the include
and the running containers; a deployment already in progress keeps its target; a completed one is
a no-op.
"""
from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable

from bluegreen_hooks import state
from bluegreen_hooks.config import COLOURS, Colour, Config

EVENT_ORDER = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")


@dataclass
class World:
    """What ``gather()`` saw: read-only inputs of a plan."""

    state: dict[str, Any]
    state_problem: str | None
    include_text: str | None
    running: dict[str, dict[str, Any] | None]
    containers: dict[str, list[str]]            # colour -> names of all its containers (running or not)
    nginx_master: int | None
    nginx_workers: list[int]
    image_exists: bool | None                   # the deployment's image tag exists already (None: unknown)
    docker_problem: str | None = None

    def master_pid_text(self) -> str:
        if self.nginx_master is None:
            return "none (nginx NOT running: BeforeInstall would fail)"
        return f"{self.nginx_master}, workers {', '.join(map(str, self.nginx_workers)) or 'none'}"


@dataclass
class Plan:
    cfg: Config
    deployment_id: str
    live: Colour | None
    target: Colour
    old: Colour | None
    done: bool                                   # the deployment is already live: every event is a no-op
    busy: str | None                             # another deployment holds the app (the run would exit 3)
    notes: list[str] = field(default_factory=list)
    world: World | None = None

    @property
    def image_tag(self) -> str:
        from bluegreen_hooks.containers import image_tag
        return image_tag(self.cfg, self.deployment_id)

    @property
    def include_text(self) -> str:
        from bluegreen_hooks.nginx import render_include
        return render_include(self.cfg, self.target, self.deployment_id)

    def run_kwargs(self) -> dict[str, Any]:
        from bluegreen_hooks.containers import run_kwargs
        return run_kwargs(self.cfg, self.target, self.image_tag, self.deployment_id)


# ---------------------------------------------------------------------------------------------- reading

def read_state(store: state.Store) -> tuple[dict[str, Any], str | None]:
    """The state file as ``Store.read()`` sees it, but strictly read-only (a corrupt file is not moved)."""
    from bluegreen_hooks.errors import StateError

    try:
        data = store.read(quarantine=False)
    except StateError as exc:
        return state.empty(store.app), f"unreadable ({exc})"
    return data, store.problem


def gather(cfg: Config, deployment_id: str, client=None) -> World:
    """Read the state, the include, the containers, the image and nginx's pids. Writes nothing."""
    from bluegreen_hooks import containers, nginx

    store = state.Store(cfg.state_dir, cfg.app, cfg.history)
    st, problem = read_state(store)
    try:
        include_text = nginx.read_include(cfg)
    except Exception as exc:  # noqa: BLE001 - a plan reports what it cannot read
        include_text, problem = None, f"{problem or ''} include unreadable: {exc}".strip()
    running: dict[str, dict[str, Any] | None] = {c: None for c in COLOURS}
    names: dict[str, list[str]] = {c: [] for c in COLOURS}
    image_exists: bool | None = None
    docker_problem = None
    close = client is None
    try:
        if client is None:
            client = containers.connect(timeout=30)
        if cfg.compose is not None:      # each colour is a compose project: list through its labels
            from bluegreen_hooks.compose import ComposeBackend
            be = ComposeBackend(cfg, client, cfg.compose.command or ("docker", "compose"))
            running = be.running()
            for colour in COLOURS:
                names[colour] = [f"{c.name} ({c.status})" for c in be.containers(colour)]
        else:
            running = containers.running(client, cfg)
            for cont in containers.containers(client, cfg):
                colour = cont.labels.get(containers.LABEL_COLOUR)
                if colour in names:
                    names[colour].append(f"{cont.name} ({cont.status})")
            import docker.errors
            try:
                client.images.get(containers.image_tag(cfg, deployment_id))
                image_exists = True
            except docker.errors.ImageNotFound:
                image_exists = False
    except Exception as exc:  # noqa: BLE001 - Docker unreachable: plan without it, and say so
        docker_problem = str(exc)
    finally:
        if close and client is not None:
            client.close()
    master = nginx.master_pid(cfg)
    workers = [pid for pid, _ in nginx.worker_pids(cfg)] if master else []
    return World(st, problem, include_text, running, names, master, workers, image_exists, docker_problem)


# ---------------------------------------------------------------------------------------------- planning

def plan_deployment(cfg: Config, deployment_id: str, world: World, now: float | None = None) -> Plan:
    """Pure: the decisions the events would take for ``deployment_id`` given ``world``."""
    from bluegreen_hooks.nginx import include_colour

    st = copy.deepcopy(world.state)
    notes = state.reconcile(st, include_colour(cfg, world.include_text), world.running, world.state_problem)
    ip = st.get("in_progress")
    live = st.get("live")
    done = st.get("live_deployment") == deployment_id and not (ip and ip.get("id") == deployment_id)
    mine = ip if ip and ip.get("id") == deployment_id else None
    busy = None
    if ip and not mine:
        import time
        status, reason = state.holder_status(ip, time.time() if now is None else now, cfg.stale_after)
        if status == "busy":
            busy = f"deployment {ip.get('id')} is in progress ({reason})"
        else:
            notes.append(f"would take over from stale deployment {ip.get('id')}: {reason}")
    if mine and mine.get("target"):
        target = mine["target"]
        notes.append(f"deployment {deployment_id} is in progress (stage {mine.get('stage')}): it keeps target {target}")
    else:
        target = Config.other(live) if live else "blue"
    old = mine.get("from") if mine and "from" in mine else (live if live != target else st.get("previous"))
    if done:
        target = live
    if world.docker_problem:
        notes.append(f"Docker not reachable, containers unknown: {world.docker_problem}")
    return Plan(cfg, deployment_id, live, target, old, done, busy, notes, world)


# ---------------------------------------------------------------------------------------------- printing

def _argv(argv: Iterable[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def event_lines(plan: Plan, event: str) -> list[str]:
    """What ``event`` would do, one line per step."""
    cfg, w = plan.cfg, plan.world
    n = cfg.nginx
    if event == "ApplicationStop":
        return [f"nothing to stop: the live colour ({plan.live or 'none'}) is never stopped here"]
    if plan.done:
        return [f"deployment {plan.deployment_id} is already live on {plan.live}: nothing to do"]
    if plan.busy and event in ("BeforeInstall", "ApplicationStart"):
        return [f"would refuse (exit 3): {plan.busy}"]
    if event == "BeforeInstall":
        out = [f"check config {cfg.path.name}: app {cfg.app}, blue :{cfg.port('blue')}, green :{cfg.port('green')}",
               "check Docker is reachable" + (f" (now: NOT reachable: {w.docker_problem})" if w and w.docker_problem else ""),
               f"check nginx runs: master pid {w.master_pid_text() if w else '?'} (from {n.pid_file})",
               f"nginx test: {_argv(n.test)}"]
        if w is not None and w.include_text is None:
            out.append(f"create an empty include {n.include} (first deployment)")
        out.append(f"claim {cfg.state_dir / (cfg.app + '.json')} for {plan.deployment_id}: "
                   f"live colour {plan.live or 'none'}, target colour {plan.target}")
        left = w.containers.get(plan.target, []) if w else []
        out.append(f"remove leftover containers of {plan.target}: {', '.join(left) if left else 'none'}")
        return out
    if event == "ApplicationStart" and cfg.compose is not None:
        from bluegreen_hooks import compose
        cmd = _compose_cmd(cfg)
        env = ", ".join(f"{k}={v}" for k, v in sorted(compose.variables(cfg, plan.target, plan.deployment_id).items()))
        out = [f"target colour: {plan.target} (live: {plan.live or 'none'})"]
        if cfg.compose.pull:
            out.append(f"pull: {_argv(compose.pull_argv(cmd, cfg, plan.target))}")
        out += [f"start project {compose.project_name(cfg, plan.target)}: {_argv(compose.up_argv(cmd, cfg, plan.target))}",
                f"  with {env}",
                f"health: GET {cfg.health_url(plan.target)} until HTTP {'/'.join(map(str, cfg.health.statuses))}, "
                f"deadline {cfg.health.deadline:g}s" + "".join(f"; and :{r.ports[plan.target]}" for r in cfg.extra_routes)]
        return out + _switch_lines(plan)
    if event == "ApplicationStart":
        c = cfg.container
        kw = plan.run_kwargs()
        have = "" if not w or w.image_exists is None else (" (tag exists: rebuilt/retagged)" if w.image_exists else "")
        if c.build is not None:
            image = f"build {plan.image_tag} from {c.build}/{c.dockerfile}" + (
                f" (build args {', '.join(f'{k}={v}' for k, v in sorted(c.build_args.items()))})" if c.build_args else "")
        else:
            image = f"pull {c.image}, tag it {plan.image_tag}"
        where = (f"host network, port {cfg.port(plan.target)}" if c.network == "host"
                 else f"bridge, {cfg.host}:{cfg.port(plan.target)} -> {c.port}/tcp")
        env = ", ".join(f"{k}={v}" for k, v in sorted(kw["environment"].items())) or "none"
        out = [f"target colour: {plan.target} (live: {plan.live or 'none'})",
               f"image: {image}{have}",
               f"start container {kw['name']} from {plan.image_tag} ({where}; env {env}; labels "
               f"{', '.join(f'{k}={v}' for k, v in kw['labels'].items())})",
               f"health: GET {cfg.health_url(plan.target)} until HTTP {'/'.join(map(str, cfg.health.statuses))}, "
               f"deadline {cfg.health.deadline:g}s"]
        return out + _switch_lines(plan)
    if event == "ValidateService":
        out = [f"validate: GET {n.public_url}{n.validate_path} answers HTTP "
               f"{'/'.join(map(str, cfg.health.statuses))} with {n.colour_header}: {plan.target}"]
        if plan.old and plan.old != plan.target:
            olds = w.containers.get(plan.old, []) if w else []
            if cfg.compose is not None:
                from bluegreen_hooks import compose
                stop = f"then: stop {', '.join(olds) or 'nothing running'}: " + _argv(
                    compose.down_argv(_compose_cmd(cfg), cfg, plan.old, cfg.compose.stop_grace_period))
            else:
                stop = (f"then: stop containers of {plan.old} (grace {cfg.container.stop_grace_period:g}s): "
                        f"{', '.join(olds) if olds else cfg.container_name(plan.old)}")
            out += [f"then: wait up to {cfg.drain_timeout:g}s for the old nginx workers "
                    f"({', '.join(map(str, w.nginx_workers)) if w and w.nginx_workers else 'none'}) to finish",
                    stop,
                    f"on failure: switch nginx back to {plan.old} and remove {plan.target}"]
        else:
            out.append("no old colour to stop")
        out.append(f"prune images of {cfg.image_repo} beyond the newest {cfg.keep_images}")
        return out
    return [f"no bluegreen-hooks step for {event}"]


def _compose_cmd(cfg: Config) -> tuple[str, ...]:
    """compose/command, else what the events detect at run time (shown as ``docker compose``)."""
    assert cfg.compose is not None
    return cfg.compose.command or ("docker", "compose")


def _switch_lines(plan: Plan) -> list[str]:
    cfg, n = plan.cfg, plan.cfg.nginx
    out = [f"write {n.include}:"] + [f"  | {ln}" for ln in plan.include_text.splitlines()]
    return out + [f"nginx test: {_argv(n.test)}", f"nginx reload: {_argv(n.reload)}",
                  f"verify: GET {n.public_url}{cfg.health.path} answers {n.colour_header}: {plan.target}",
                  f"keep running: {plan.live or 'nothing'} (stopped by ValidateService)"]


def render(plan: Plan, events: Iterable[str]) -> list[str]:
    """The plan as text: a header, notes, then each event's steps."""
    out = [f"DRY RUN (nothing is changed): deployment {plan.deployment_id} of {plan.cfg.app}; "
           f"live {plan.live or 'none'}, target {plan.target}"]
    out += [f"note: {n}" for n in plan.notes]
    for event in events:
        out.append(f"{event}:")
        out += [f"  {ln}" for ln in event_lines(plan, event)]
    return out


def describe(cfg: Config, deployment_id: str, events: Iterable[str], client=None) -> list[str]:
    """Gather, plan and render (the whole dry run for the given events)."""
    return render(plan_deployment(cfg, deployment_id, gather(cfg, deployment_id, client)), events)
