"""Dry-run plans: what each lifecycle event WOULD do, computed without changing anything.

``gather()`` reads the world the way the events do (lifecycle/steps.gather: the include, what nginx
answers, what runs) plus the state file without taking the lock, the app's containers and nginx's
pids; ``plan_deployment()`` calls the same ``decide()`` as the events and keeps its Decision;
``render()`` prints it. Nothing here writes a file, takes a lock, runs ``nginx -t`` or talks to
Docker other than to list containers and images.
"""
from __future__ import annotations

import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.decide import Decision, World, decide
from bluegreen_hooks.errors import StateError
from bluegreen_hooks.host import procfs
from bluegreen_hooks.host.store import Store, me
from bluegreen_hooks.model import COLOURS, Colour, State
from bluegreen_hooks.runtime.base import Backend


@dataclass
class Seen:
    """What ``gather()`` saw: read-only inputs of a plan."""

    state: State
    world: World
    include_text: str | None
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
class DryRunPlan:
    cfg: Config
    deployment_id: str
    decision: Decision
    notes: list[str] = field(default_factory=list)
    world: Seen | None = None

    @property
    def live(self) -> Colour | None:
        return self.decision.live

    @property
    def target(self) -> Colour:
        return self.decision.target

    @property
    def old(self) -> Colour | None:
        return self.decision.old

    @property
    def done(self) -> bool:
        return self.decision.done

    @property
    def busy(self) -> str | None:
        return self.decision.busy

    @property
    def image_tag(self) -> str:
        from bluegreen_hooks.runtime.docker_args import image_tag
        return image_tag(self.cfg, self.deployment_id)

    @property
    def include_text(self) -> str:
        from bluegreen_hooks.host.nginx import render_include
        return render_include(self.cfg, self.target, self.deployment_id)

    def run_kwargs(self) -> dict[str, Any]:
        from bluegreen_hooks.runtime.docker_args import run_kwargs
        return run_kwargs(self.cfg, self.target, self.image_tag, self.deployment_id)


# ---------------------------------------------------------------------------------------------- reading

def _containers(backend: Backend) -> dict[str, list[str]]:
    return {c: [f"{x.name} ({x.status})" for x in backend.containers(c)] for c in COLOURS}


def gather(cfg: Config, deployment_id: str, client: Any = None) -> Seen:
    """Read the state, the include, the containers, the image and nginx's pids. Writes nothing."""
    from bluegreen_hooks import runtime
    from bluegreen_hooks.host import nginx
    from bluegreen_hooks.lifecycle.steps import gather as observe
    from bluegreen_hooks.runtime.sdk import connect

    store = Store(cfg.state_dir, cfg.app, cfg.history)
    try:
        read = store.read(quarantine=False)
        state, problem = read.state, read.describe()
    except StateError as exc:
        state, problem = State(cfg.app), f"unreadable ({exc})"
    names: dict[str, list[str]] = {c: [] for c in COLOURS}
    image_exists, docker_problem, backend = None, None, None
    close = client is None
    try:
        if client is None:
            client = connect()
        backend = runtime.backend(cfg, client)
        names, image_exists = _containers(backend), backend.artifact_exists(deployment_id)
    except Exception as exc:
        docker_problem, backend = str(exc), None
    try:
        world = observe(cfg, backend, problem)
        include_text = nginx.read_include(cfg)
    except Exception as exc:
        world = World(None, None, {c: None for c in COLOURS}, f"{problem or ''} include unreadable: {exc}".strip())
        include_text = None
    finally:
        if close and client is not None:
            client.close()
    master = nginx.master_pid(cfg)
    workers = [pid for pid, _ in nginx.worker_pids(cfg)] if master else []
    return Seen(state, world, include_text, names, master, workers, image_exists, docker_problem)


# ---------------------------------------------------------------------------------------------- planning

def plan_deployment(cfg: Config, deployment_id: str, seen: Seen, now: float | None = None,
                    event: str = "BeforeInstall", group: str | None = None) -> DryRunPlan:
    """The decision the events would take for ``deployment_id`` given ``seen``: the same ``decide()`` with the
    same arguments, the deployment group (``$DEPLOYMENT_GROUP_ID``) included."""
    d = decide(seen.state, seen.world, deployment_id, event, me(), time.time() if now is None else now,
               cfg.stale_after, procfs.process_alive, group=group)
    notes = list(d.notes)
    if d.busy is None:
        notes += [n for n in (d.takeover.text(would=True) if d.takeover else None, d.resumed) if n]
    if d.canary:
        notes.append(d.canary.text(would=True))
    elif d.repair:
        notes.append(f"an interrupted switch: nginx serves {d.repair} but the include names "
                     f"{seen.world.include_colour}; the include would be rewritten for {d.repair}")
    if seen.docker_problem:
        notes.append(f"Docker not reachable, containers unknown: {seen.docker_problem}")
    return DryRunPlan(cfg, deployment_id, d, notes, seen)


# ---------------------------------------------------------------------------------------------- printing

def _argv(argv: Iterable[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def event_lines(plan: DryRunPlan, event: str) -> list[str]:
    """What ``event`` would do, one line per step."""
    if event == "ApplicationStop":
        return [f"nothing to stop: the live colour ({plan.live or 'none'}) is never stopped here"]
    if plan.done:
        return [f"deployment {plan.deployment_id} is already live on {plan.live}: nothing to do"]
    if plan.busy and event in ("BeforeInstall", "ApplicationStart"):
        return [f"would refuse (exit 3): {plan.busy}"]
    if event == "BeforeInstall":
        return _before_install_lines(plan)
    if event == "ApplicationStart" and plan.decision.switched:
        return [f"deployment {plan.deployment_id} already switched nginx to {plan.target}: validate through nginx, "
                f"nothing else to do"]
    if event == "ApplicationStart" and plan.decision.refused:
        return [f"would fail (exit 1): {plan.decision.refused}"]
    if event == "ApplicationStart":
        start = _compose_start_lines(plan) if plan.cfg.compose is not None else _container_start_lines(plan)
        return start + _task_lines(plan, "before_switch") + _switch_lines(plan) + _task_lines(plan, "after_switch")
    if event == "ValidateService":
        return _task_lines(plan, "after_validate") + _validate_lines(plan)
    return [f"no bluegreen-hooks step for {event}"]


def _task_lines(plan: DryRunPlan, when: str) -> list[str]:
    """The release tasks of stage ``when`` (config/tasks.py), each run inside the target colour."""
    return [f"{t.describe()} in {plan.target}" for t in plan.cfg.tasks if t.when == when]


def _before_install_lines(plan: DryRunPlan) -> list[str]:
    cfg, w, n = plan.cfg, plan.world, plan.cfg.nginx
    out = [f"check config {cfg.path.name}: app {cfg.app}, blue :{cfg.port('blue')}, green :{cfg.port('green')}",
           "check Docker is reachable"
           + (f" (now: NOT reachable: {w.docker_problem})" if w and w.docker_problem else ""),
           f"check nginx runs: master pid {w.master_pid_text() if w else '?'} (from {n.pid_file})",
           f"nginx test: {_argv(n.test)}"]
    if w is not None and w.include_text is None:
        out.append(f"create an empty include {n.include} (first deployment)")
    out.append(f"claim {cfg.state_dir / (cfg.app + '.json')} for {plan.deployment_id}: "
               f"live colour {plan.live or 'none'}, target colour {plan.target}")
    left = w.containers.get(plan.target, []) if w else []
    out.append(f"remove leftover containers of {plan.target}: {', '.join(left) if left else 'none'}")
    if cfg.compose is not None and cfg.compose.start_in == "BeforeInstall":
        from bluegreen_hooks.lifecycle.early_start import start_blocker

        why = start_blocker(cfg)
        out.append(f"start {plan.target}'s `up` now, detached: ApplicationStart waits for it" if why is None else
                   f"{plan.target} starts in ApplicationStart: {why}")
    if cfg.canary is not None and plan.live is not None:
        from bluegreen_hooks.lifecycle.canary import plan_seconds

        out.append(f"check the canary fits ApplicationStart's timeout in appspec.yml (needs up to "
                   f"{plan_seconds(cfg):.0f}s) and that nginx can log answers per colour (nginx -T)")
    return out


def _health_line(cfg: Config, colour: Colour) -> str:
    return (f"health: GET {cfg.health_url(colour)} until HTTP {'/'.join(map(str, cfg.health.statuses))}, "
            f"deadline {cfg.health.deadline:g}s" + "".join(f"; and :{r.ports[colour]}" for r in cfg.extra_routes))


def _compose_start_lines(plan: DryRunPlan) -> list[str]:
    from bluegreen_hooks.runtime import compose_argv as compose

    cfg, target = plan.cfg, plan.target
    cmd = _compose_cmd(cfg)
    env = ", ".join(f"{k}={v}" for k, v in sorted(compose.variables(cfg, target, plan.deployment_id).items()))
    out = [f"target colour: {target} (live: {plan.live or 'none'})"]
    if cfg.compose is not None and cfg.compose.pull:
        out.append(f"pull: {_argv(compose.pull_argv(cmd, cfg, target))}")
    start = f"start project {compose.project_name(cfg, target)}: {_argv(compose.up_argv(cmd, cfg, target))}"
    if _starts_in_before_install(cfg):
        start = f"collect the `up` BeforeInstall started (or, if it was killed, {start})"
    return [*out, start, f"  with {env}", _health_line(cfg, target)]


def _starts_in_before_install(cfg: Config) -> bool:
    from bluegreen_hooks.lifecycle.early_start import start_blocker

    return cfg.compose is not None and cfg.compose.start_in == "BeforeInstall" and start_blocker(cfg) is None


def _container_start_lines(plan: DryRunPlan) -> list[str]:
    cfg, w, c = plan.cfg, plan.world, plan.cfg.container
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
    return [f"target colour: {plan.target} (live: {plan.live or 'none'})",
            f"image: {image}{have}",
            f"start container {kw['name']} from {plan.image_tag} ({where}; env {env}; labels "
            f"{', '.join(f'{k}={v}' for k, v in kw['labels'].items())})",
            _health_line(cfg, plan.target)]


def _validate_lines(plan: DryRunPlan) -> list[str]:
    cfg, w, n = plan.cfg, plan.world, plan.cfg.nginx
    out = [f"validate: GET {n.public_url}{n.validate_path} answers HTTP "
           f"{'/'.join(map(str, cfg.health.statuses))} with {n.colour_header}: {plan.target}"]
    if plan.old and plan.old != plan.target:
        olds = w.containers.get(plan.old, []) if w else []
        if cfg.compose is not None:
            from bluegreen_hooks.runtime import compose_argv as compose
            stop = (f"then: stop (keep, for a rollback) the containers of {compose.project_name(cfg, plan.old)}: "
                    f"{', '.join(olds) or 'nothing running'} (grace {cfg.compose.stop_grace_period:g}s)")
        else:
            stop = (f"then: stop (keep, for a rollback) containers of {plan.old} "
                    f"(grace {cfg.container.stop_grace_period:g}s): "
                    f"{', '.join(olds) if olds else cfg.container_name(plan.old)}")
        out += [f"then: wait up to {cfg.drain_timeout:g}s for the old nginx workers "
                f"({', '.join(map(str, w.nginx_workers)) if w and w.nginx_workers else 'none'}) to finish",
                stop,
                f"on failure: switch nginx back to {plan.old} and remove {plan.target}"]
    else:
        out.append("no old colour to stop")
    out.append(f"prune images of {cfg.image_repo} beyond the newest {cfg.keep_images}")
    return out


def _compose_cmd(cfg: Config) -> tuple[str, ...]:
    """compose/command, else what the events detect at run time (shown as ``docker compose``)."""
    return (cfg.compose.command if cfg.compose else None) or ("docker", "compose")


def _canary_lines(plan: DryRunPlan) -> list[str]:
    """The canary's steps (lifecycle/canary.py), shown before the promote (the switch below)."""
    from bluegreen_hooks.host.nginx_canary import clients_log, real_share

    cfg, cc, live = plan.cfg, plan.cfg.canary, plan.live
    if cc is None or live is None:
        return []
    steps = ", ".join(f"{s} %" + (f" ({real_share(s):.1f} % exactly)" if cfg.nginx.form == "set" else "")
                      for s in cc.steps)
    return [f"canary: {steps} of requests to {plan.target}, then 100 %; each step through write, nginx test, "
            f"reload, check (form {cfg.nginx.form})",
            f"  each step watched {cc.step_seconds:g}s, extended up to {cc.step_limit:g}s while {plan.target} has "
            f"fewer than {cc.min_requests} requests (then on_too_few = \"{cc.on_too_few}\"); every attempt counted "
            f"per colour from {clients_log(cfg)}; probes of "
            f"{', '.join(cc.probe_paths or (cfg.nginx.validate_path,))} forced to {plan.target} "
            + (f"every {cc.probe_interval:g}s (timeout {cc.probe_timeout:g}s)" if cc.probe_interval else "(off)"),
            f"  abort when {plan.target}'s failed share (5xx, refused, reset, timeout, client gave up) is above "
            f"{cc.max_error_rate * 100:g} % (95 % Wilson lower bound) and above {live}'s, or its p95/p99 is more "
            f"than {cc.latency_factor:g}x and {cc.latency_margin * 1000:g} ms above {live}'s: back to 0 % at "
            f"once, {plan.target} removed, ApplicationStart fails",
            "  promote (100 %):"]


def _switch_lines(plan: DryRunPlan) -> list[str]:
    cfg, n = plan.cfg, plan.cfg.nginx
    out = _canary_lines(plan) + [f"write {n.include}:"] + [f"  | {ln}" for ln in plan.include_text.splitlines()]
    return [*out, f"nginx test: {_argv(n.test)}", f"nginx reload: {_argv(n.reload)}",
            f"verify: GET {n.public_url}{cfg.health.path} answers {n.colour_header}: {plan.target}",
            f"keep running: {plan.live or 'nothing'} (stopped by ValidateService)"]


def render(plan: DryRunPlan, events: Iterable[str]) -> list[str]:
    """The plan as text: a header, notes, then each event's steps."""
    out = [f"DRY RUN (nothing is changed): deployment {plan.deployment_id} of {plan.cfg.app}; "
           f"live {plan.live or 'none'}, target {plan.target}"]
    out += [f"note: {n}" for n in plan.notes]
    for event in events:
        out.append(f"{event}:")
        out += [f"  {ln}" for ln in event_lines(plan, event)]
    return out


def describe(cfg: Config, deployment_id: str, events: Iterable[str], group: str | None = None,
             client: Any = None) -> list[str]:
    """Gather, plan and render (the whole dry run for the given events, in deployment group ``group``). It decides
    as the first of ``events`` that decides does (BeforeInstall, or the hook's own ApplicationStart)."""
    events = list(events)
    event = next((e for e in events if e in ("BeforeInstall", "ApplicationStart")), "BeforeInstall")
    return render(plan_deployment(cfg, deployment_id, gather(cfg, deployment_id, client), event=event, group=group),
                  events)
