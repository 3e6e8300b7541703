"""Compose stacks: each colour is a docker-compose project (``<app>-blue`` / ``<app>-green``).

Selected by a ``[compose]`` table in bluegreen.toml (docs/compose.md). Either one compose file per
colour (``files = { blue = ..., green = ... }``) or one file whose colour-specific values come from the
variables we set for every compose command (``variables()``: BLUEGREEN_COLOUR, BLUEGREEN_PORT, one
BLUEGREEN_PORT_<SERVICE> per routed service, ...).

``docker compose`` (v2) is used when ``docker compose version`` works, else ``docker-compose`` (v1)
(compose_exec.detect), always as argv lists. The argv builders are pure (``up_argv`` …) and tested on
their exact output.
Containers and their health are read through the docker SDK by the compose labels
``com.docker.compose.project`` / ``com.docker.compose.service``, never by parsing ``ps`` output.

``ComposeBackend`` implements runtime/base.Backend; its ``check`` (BeforeInstall) makes sure the files
parse, the services named in the config exist and a compose command is there.
"""
from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError, ContainerStartError, HealthCheckFailed
from bluegreen_hooks.host import health, wait
from bluegreen_hooks.model import COLOURS, Colour, Running
from bluegreen_hooks.runtime import sdk
from bluegreen_hooks.runtime.base import LABEL_DEPLOYMENT, DeclaredMemory, ReleaseImage, RunningMap, Say, guard_not_live
from bluegreen_hooks.runtime.compose_argv import (
    config_argv,
    detached_record,
    memory_override_path,
    project_name,
    pull_argv,
    up_argv,
    variables,
)
from bluegreen_hooks.runtime.compose_exec import V1 as V1  # V1, V2, child_env: the tests use them from here
from bluegreen_hooks.runtime.compose_exec import V2 as V2
from bluegreen_hooks.runtime.compose_exec import (
    ComposeUnavailable,
    Detached,
    Parallel,
    check_exit,
    detect,
    failure,
    run_compose,
)
from bluegreen_hooks.runtime.compose_exec import child_env as child_env
from bluegreen_hooks.runtime.healthcheck import early_checks

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_ONEOFF = "com.docker.compose.oneoff"
CHECK_TIMEOUT = 60.0
UP_TIMEOUT = 1800.0
DOWN_TIMEOUT = 300.0
SETTLE = 2.0   # after killing a running `up`: how long a container it asked Docker for may take to appear


# ------------------------------------------------------------------------------------------------ backend

class ComposeBackend(sdk.SdkParts):
    """Runs each colour as a compose project (see runtime/base.Backend)."""

    kind = "compose"
    release_per_colour = False   # running() names a project, not the release its containers run

    def __init__(self, cfg: Config, client: Any, command: Sequence[str] | None = None) -> None:
        if cfg.compose is None:
            raise ValueError("ComposeBackend needs a config with a [compose] table")
        self.cfg, self.client, self.cc = cfg, client, cfg.compose
        self._command = tuple(command) if command else (tuple(self.cc.command) if self.cc.command else None)
        self._rendering: tuple[tuple[Colour, ...], str | None, Parallel] | None = None
        self._starting: tuple[Colour, str, Parallel | Detached, float] | None = None   # start_early's `up`
        self.labelling: Any = None   # compose_release.EarlyTags of the colour `start` brought up
        self._cut_short = False      # an `up` was killed while it ran: a container may still appear

    @property
    def command(self) -> tuple[str, ...]:
        if self._command is None:
            self._command = detect()
        return self._command

    def _rel(self, colour: Colour) -> str:
        f = self.cc.files[colour]
        try:
            return str(f.relative_to(self.cfg.root))
        except ValueError:
            return str(f)

    def _up_line(self, colour: Colour, when: str = "") -> str:
        return (f"starting {project_name(self.cfg, colour)} from {self._rel(colour)}{when}: {' '.join(self.command)} "
                f"up -d --remove-orphans" + (" --build" if self.cc.build else ""))

    def _key(self, colour: Colour) -> str:
        return "compose/file" if self.cc.single else f"compose/files/{colour}"

    def _run(self, argv: list[str], colour: Colour, what: str, timeout: float, deployment_id: str | None = None,
             error: type = ContainerStartError, check: bool = True) -> subprocess.CompletedProcess:
        return run_compose(argv, variables(self.cfg, colour, deployment_id), self.cc.files[colour].parent, what,
                           timeout, error, check)

    # -- BeforeInstall: refuse bad input before anything changes
    def check(self, say: Say, deployment_id: str | None = None, colours: Sequence[Colour] = COLOURS) -> None:
        self.services(say, deployment_id, colours)

    def _cache(self, colour: Colour, deployment_id: str | None) -> Path:
        from bluegreen_hooks.runtime import compose_release as rel

        key = rel.cache_key(sorted({self.cc.files[c] for c in COLOURS}), variables(self.cfg, colour, deployment_id))
        return rel.cache_path(self.cfg.state_dir, self.cfg.app, colour, key)

    def rendered(self, colour: Colour, deployment_id: str) -> str:
        """The colour's compose config as BeforeInstall rendered it (cached), else rendered now."""
        with contextlib.suppress(OSError):
            return self._cache(colour, deployment_id).read_text(encoding="utf-8")
        return self._run(config_argv(self.command, self.cfg, colour, render=True), colour,
                         f"compose config of {project_name(self.cfg, colour)}", CHECK_TIMEOUT, deployment_id,
                         ConfigError).stdout

    def start_check(self, deployment_id: str | None, colours: Sequence[Colour]) -> None:
        """Start rendering the compose files of ``colours`` now; ``check`` collects them. Read-only: runtime.backend
        starts them before it connects to Docker. Anything wrong is left for ``check`` to report in its order."""
        if all(self.cc.files[c].is_file() for c in colours):
            with contextlib.suppress(ComposeUnavailable):
                self._rendering = (tuple(colours), deployment_id, Parallel(self._render_jobs(deployment_id, colours),
                                                                           CHECK_TIMEOUT))

    def cancel_pending(self) -> None:
        """End what ``start_check`` / ``start_early`` started (the hook failed before it needed it)."""
        for pending in (self._rendering, self._starting):
            if pending is not None and pending[2].kill() and pending is self._starting:
                self._cut_short = True   # remove_colour then waits for what Docker was still creating
        self._rendering = self._starting = None

    def start_soon(self, colour: Colour, deployment_id: str, say: Say) -> bool:
        """BeforeInstall, its checks passed: start ``up`` of ``colour`` in its own session (compose_exec.Detached),
        so that it runs on while the agent installs the revision and ApplicationStart's interpreter starts;
        ApplicationStart's ``start_early`` collects it. False (nothing started) with compose/pull."""
        if self.cc.pull:
            return False
        self.write_memory_override(colour, deployment_id)
        up = Detached.spawn(detached_record(self.cfg, colour), up_argv(self.command, self.cfg, colour),
                            variables(self.cfg, colour, deployment_id), self.cc.files[colour].parent, deployment_id,
                            colour, UP_TIMEOUT)
        say(self._up_line(colour, f" now (pid {up.data['pid']}; ApplicationStart waits for it)"))
        return True

    def start_early(self, colour: Colour, deployment_id: str, say: Say) -> None:
        """ApplicationStart: the ``up`` of ``colour`` BeforeInstall started for this deployment (``start_soon``),
        else start it now, before Docker is connected (steps.claim_early chose it); ``start`` collects it. The
        SDK's import and the claim then overlap compose's own start."""
        up = Detached.find(detached_record(self.cfg, colour))
        if up is not None and up.deployment_id == deployment_id and up.colour == colour:
            say(f"{project_name(self.cfg, colour)}: `up` started by BeforeInstall {time.time() - up.started:.1f}s ago "
                f"(pid {up.data.get('pid')}); waiting for it while Docker is connected")
            self._starting = (colour, deployment_id, up, time.monotonic() - max(0.0, time.time() - up.started))
            return
        if up is not None:   # another deployment's (it ended before ApplicationStart): never two `up` at once
            up.kill()
        say(self._up_line(colour, " while Docker is connected"))
        self.write_memory_override(colour, deployment_id)
        job = (up_argv(self.command, self.cfg, colour), variables(self.cfg, colour, deployment_id),
               self.cc.files[colour].parent)
        self._starting = (colour, deployment_id, Parallel([job], UP_TIMEOUT), time.monotonic())

    def write_memory_override(self, colour: Colour, deployment_id: str) -> None:
        """The override ``up`` applies on top of the user's file, for the services of the colour's rendered config."""
        from bluegreen_hooks.runtime import compose_release as rel

        path = memory_override_path(self.cfg, colour)
        rel.write_memory_override(self.cfg, path, self.rendered(colour, deployment_id))

    def _render_jobs(self, deployment_id: str | None, colours: Sequence[Colour]) -> list:
        # `config` renders each colour's file with its variables, validating it as `config -q` does (bad
        # YAML, unknown options, a `${VAR:?}` left unset all fail it); the services are read from it and the
        # rendering is cached for ApplicationStart's release record (compose runs once per deployment).
        # Both run at once (docker-compose v1 spends ~0.2 s of CPU starting up).
        return [(config_argv(self.command, self.cfg, colour, render=True), variables(self.cfg, colour, deployment_id),
                 self.cc.files[colour].parent) for colour in colours]

    def _renders(self, deployment_id: str | None, colours: Sequence[Colour]) -> list[subprocess.CompletedProcess]:
        """The ``config`` runs of ``colours``: the ones ``start_check`` started, else started now."""
        started, self._rendering = self._rendering, None
        if started and started[:2] == (tuple(colours), deployment_id):
            return started[2].results()
        if started:
            started[2].kill()
        return Parallel(self._render_jobs(deployment_id, colours), CHECK_TIMEOUT).results()

    def services(self, say: Say, deployment_id: str | None = None,
                 colours: Sequence[Colour] = COLOURS) -> dict[str, list[str]]:
        """The files of ``colours`` parse with our variables and have every service the config names; return
        the services."""
        for colour in colours:
            if not self.cc.files[colour].is_file():
                self.cancel_pending()
                raise ConfigError(f"{self.cfg.path.name}: {self._key(colour)}: compose file {self._rel(colour)!r} "
                                  f"not found next to {self.cfg.path.name}")
        cmd = self.command
        from bluegreen_hooks.runtime import compose_release as rel

        procs = self._renders(deployment_id, colours)
        out: dict[str, list[str]] = {}
        for colour, proc in zip(colours, procs):
            if proc.returncode != 0:
                where = f"{self.cfg.path.name}: {self._key(colour)}: {self._rel(colour)}"
                raise ConfigError(f"{where} is invalid for {colour}: {failure(proc)}")
            out[colour] = rel.services_of(proc.stdout)
            if deployment_id:
                with contextlib.suppress(OSError):
                    rel.cache_put(self._cache(colour, deployment_id), proc.stdout)
        for colour in colours:
            for key, names in (("services", self.cc.services or ()), ("routed", [r.service for r in self.cc.routed])):
                for name in names:
                    if name not in out[colour]:
                        raise ConfigError(f"{self.cfg.path.name}: compose/{key}: service {name!r} is not in "
                                          f"{self._rel(colour)} (its services: {', '.join(out[colour]) or 'none'})")
        files = sorted({self._rel(c) for c in colours})
        say(f"compose ok ({' '.join(cmd)}): {', '.join(files)}; projects "
            f"{project_name(self.cfg, 'blue')} / {project_name(self.cfg, 'green')}; services "
            f"{', '.join(out[colours[0]])}")
        return out

    # -- the rest of the Backend protocol
    def prepare(self, deployment_id: str, say: Say) -> str:
        """Find the compose command; building/pulling happens per colour in ``start``."""
        say(f"compose command: {' '.join(self.command)}")
        return f"compose:{deployment_id}"

    def sdk_containers(self, colour: Colour, services: Sequence[str] | None = None) -> list[Any]:
        """The project's containers (not one-off `run` containers), optionally of some services only."""
        label = f"{LABEL_PROJECT}={project_name(self.cfg, colour)}"
        conts = self.client.containers.list(all=True, filters={"label": [label]}, ignore_removed=True)
        conts = [c for c in conts if c.labels.get(LABEL_ONEOFF, "False") != "True"]
        if services:
            conts = [c for c in conts if c.labels.get(LABEL_SERVICE) in services]
        return sorted(conts, key=lambda c: (c.labels.get(LABEL_SERVICE, ""), c.name))

    def start(self, colour: Colour, artifact: str, deployment_id: str, live: Colour | None,
              say: Say) -> None:
        """(pull,) ``up -d --remove-orphans`` (--build); the events then wait for every routed service
        (``wait_healthy``)."""
        guard_not_live(colour, live, "replace")
        project = project_name(self.cfg, colour)
        early, self._starting = self._starting, None
        result = None
        if early is not None and early[:2] == (colour, deployment_id):
            t0 = early[3]
            result = early[2].results()[0]
            if result is None:
                say(f"the `up` BeforeInstall started for {colour} was killed before it ended: running it again")
            else:
                check_exit(result, f"compose up of {project}")
        elif early is not None:
            early[2].kill()
        if result is None:
            if self.cc.pull:
                t0 = time.monotonic()
                self._run(pull_argv(self.command, self.cfg, colour), colour, f"compose pull of {project}",
                          UP_TIMEOUT, deployment_id)
                say(f"pulled the images of {project} in {time.monotonic() - t0:.1f}s")
            t0 = time.monotonic()
            say(self._up_line(colour))
            self.write_memory_override(colour, deployment_id)
            self._run(up_argv(self.command, self.cfg, colour), colour, f"compose up of {project}", UP_TIMEOUT,
                      deployment_id)
        from bluegreen_hooks.runtime import compose_release as rel

        listed = rel.listed(self.client, project)
        names = [(c.get("Labels") or {}).get(LABEL_SERVICE, "?") for c in listed]
        say(f"{project} is up in {time.monotonic() - t0:.1f}s: {', '.join(names) or 'no containers'}")
        self.labelling = rel.EarlyTags(self.client, self.cfg.app, colour, deployment_id, listed)   # overlaps health

    def wait_healthy(self, colour: Colour, say: Say) -> float:
        """Every routed service's port at the same time (host/health.wait_all): the colour's own port first."""
        ports = [self.cfg.port(colour)] + [r.ports[colour] for r in self.cfg.extra_routes]
        return health.wait_all(self.cfg, colour, ports, lambda: self.watch(colour), say,
                               check_now=early_checks(self.client))

    def watch(self, colour: Colour) -> list[dict[str, Any]]:
        """Fresh inspect data of the containers to wait for (compose/services, default all)."""
        wanted = self.cc.services
        conts = self.sdk_containers(colour, wanted)
        if wanted:
            missing = sorted(set(wanted) - {c.labels.get(LABEL_SERVICE) for c in conts})
            if missing:
                raise HealthCheckFailed(f"{project_name(self.cfg, colour)} has no container for "
                                        f"service(s) {', '.join(missing)}")
        waiting = [c.name for c in conts if c.status == "created"]
        if waiting:   # created but not started yet (e.g. still behind a depends_on)
            raise health.NotHealthyYet(f"{', '.join(waiting)} not started yet")
        return [c.attrs for c in conts]

    def declared_memory(self, colour: Colour, deployment_id: str) -> dict[str, DeclaredMemory]:
        """Per service, the memory limit its compose file declares (BeforeInstall's render, cached)."""
        from bluegreen_hooks.runtime import compose_release as rel

        return rel.declared_memory(self.rendered(colour, deployment_id))

    def logs_tail(self, colour: Colour, lines: int = 15) -> list[str]:
        """The last output lines of the project's containers, prefixed by service; failing ones last."""
        def failing(c: Any) -> bool:
            fatal, docker_health = health.container_verdict(c.attrs)
            return bool(fatal) or docker_health == "unhealthy"

        out: list[str] = []
        try:
            conts = self.sdk_containers(colour)
        except Exception:
            return []
        for c in sorted(conts, key=failing):
            svc = c.labels.get(LABEL_SERVICE, c.name)
            out += [f"{svc}: {ln}" for ln in sdk.logs_tail(c, max(3, lines // max(1, len(conts))))]
        return out[-lines:]

    def remove_colour(self, colour: Colour, live: Colour | None, say: Say,
                      grace: float | None = None) -> int:
        """What ``down`` does, through the SDK by project label (volumes kept unless compose/remove_volumes);
        never the live colour."""
        from bluegreen_hooks.runtime import compose_release as rel

        guard_not_live(colour, live, "remove")
        self.end_detached(colour)
        if self.labelling is not None and self.labelling.colour == colour:   # a start that failed: its tags go too
            self.labelling.undo()
            self.labelling = None
        grace = self.cc.stop_grace_period if grace is None else grace
        project = project_name(self.cfg, colour)
        conts = self.sdk_containers(colour)
        nets = self.client.networks.list(filters={"label": f"{LABEL_PROJECT}={project}"})
        if conts or nets:
            say(f"taking {project} down: {len(conts)} container(s), grace {grace:g}s, volumes "
                + ("removed" if self.cc.remove_volumes else "kept"))
            rel.remove(self.client, project, conts, grace, self.cc.remove_volumes)
        if self._cut_short:   # a create or start the killed `up` had sent may still complete: remove that too
            self._cut_short = False
            late = wait.poll(lambda: self.sdk_containers(colour), timeout=SETTLE, interval=0.1, max_interval=0.2)
            if late:
                say(f"removing {len(late)} container(s) of {project} created as its `up` was ended")
                rel.remove(self.client, project, self.sdk_containers(colour), 0, self.cc.remove_volumes)
                conts = [*conts, *late]
        return len(conts)

    def end_detached(self, colour: Colour) -> None:
        """End an ``up`` of ``colour`` BeforeInstall started that nobody collected: never two `up` at once."""
        up = Detached.find(detached_record(self.cfg, colour))
        if up is not None and up.kill():
            self._cut_short = True

    def stop_colour(self, colour: Colour, live: Colour | None, say: Say, grace: float | None = None) -> int:
        """Stop the colour's containers, keeping them (and its release) for a rollback; never the live colour."""
        from bluegreen_hooks.runtime import compose_release as rel

        guard_not_live(colour, live, "stop")
        grace = self.cc.stop_grace_period if grace is None else grace
        conts = [c for c in self.sdk_containers(colour) if c.status in ("running", "restarting", "paused")]
        if conts:
            say(f"stopping {project_name(self.cfg, colour)}: {len(conts)} container(s), grace {grace:g}s "
                f"(kept for a rollback until the next deployment)")
            rel.stop(conts, grace)
        return len(conts)

    def running(self) -> RunningMap:
        """For each colour: its project when some container of it runs, else None."""
        from bluegreen_hooks.runtime import compose_release as rel

        out: RunningMap = {c: None for c in COLOURS}
        for colour in COLOURS:
            up = rel.listed(self.client, project_name(self.cfg, colour), running=True)
            if up:
                out[colour] = Running((up[0].get("Labels") or {}).get(LABEL_DEPLOYMENT), None,
                                      project_name(self.cfg, colour), up[0]["Id"][:12])
        return out

    def can_restart(self, colour: Colour, artifact: str | None, deployment: str | None) -> str | None:
        from bluegreen_hooks.runtime import compose_restore

        return compose_restore.can_restore(self, colour, deployment)

    def record(self, colour: Colour, deployment_id: str, say: Say) -> dict[str, ReleaseImage]:
        from bluegreen_hooks.runtime import compose_restore

        return compose_restore.record(self, colour, deployment_id, say)

    def restore(self, colour: Colour, deployment_id: str, live: Colour | None, say: Say) -> None:
        from bluegreen_hooks.runtime import compose_restore

        compose_restore.restore(self, colour, deployment_id, live, say)

    def prune(self, in_use: set[str], say: Say) -> int:
        """deploy/keep_images: releases (per-release tags, builds) beyond the kept ones (runtime/compose_release)."""
        from bluegreen_hooks.runtime import compose_release as rel

        needed = {i.split(":", 1)[1] for i in in_use if i.startswith("compose:")}
        return rel.prune(self.client, self.cfg.state_dir, self.cfg.app, self.cfg.keep_images, needed, say)
