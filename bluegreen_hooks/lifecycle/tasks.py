"""Release tasks (``[[tasks]]``, config/tasks.py) run inside the new colour's container (Backend.exec_task).

``TaskRunner(ctx, be, colour, old, deployment_id).run("before_switch")`` runs that stage's tasks in
order, each as ``docker exec`` (runtime/sdk.exec_in; compose: in its service's container) with the
BLUEGREEN_* variables, killed at its timeout. A task that exits non-zero (or times out) raises TaskFailed
naming the task, its exit code and the tail of its output; the caller decides what keeps serving. Their
seconds are returned as ``task_<name>`` timings (recorded in the deployment's history).
"""
from __future__ import annotations

from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.config.tasks import Task
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.model import Colour
from bluegreen_hooks.runtime.base import Backend, Container


class TaskFailed(HookError):
    """A release task exited non-zero, timed out or could not start."""


def variables(cfg: Config, task: Task, colour: Colour, old: Colour | None, deployment_id: str) -> dict[str, str]:
    """What every task gets: the task's env, then ours (ours win)."""
    env = dict(task.env)
    env.update(BLUEGREEN_APP=cfg.app, BLUEGREEN_COLOUR=colour, BLUEGREEN_OLD_COLOUR=old or "",
               BLUEGREEN_DEPLOYMENT=deployment_id, BLUEGREEN_PORT=str(cfg.port(colour)),
               BLUEGREEN_OLD_PORT=str(cfg.port(old)) if old else "", BLUEGREEN_TASK=task.name,
               BLUEGREEN_WHEN=task.when)
    for r in cfg.extra_routes:
        env[r.port_env] = str(r.ports[colour])
    return env


class TaskRunner:
    """Runs the release tasks of one deployment in ``colour`` (``old``: the colour that was live)."""

    def __init__(self, ctx: Any, backend: Backend, colour: Colour, old: Colour | None, deployment_id: str) -> None:
        self.ctx, self.backend, self.colour, self.old, self.dep = ctx, backend, colour, old, deployment_id
        self.timings: dict[str, float] = {}

    def _container(self, task: Task) -> Container:
        cfg = self.ctx.cfg
        service = task.service or (cfg.compose.routed[0].service if cfg.compose and cfg.compose.routed else None)
        conts = [c for c in self.backend.containers(self.colour) if c.status == "running"]
        if service and cfg.compose is not None:
            conts = [c for c in conts if c.service == service]
        if not conts:
            where = f"service {service} of " if service and cfg.compose is not None else ""
            raise TaskFailed(f"task {task.name} ({task.when}): no running container of {where}{self.colour} to run in")
        return conts[0]

    def run(self, when: str) -> None:
        """Run every task of stage ``when``; raise TaskFailed at the first that fails."""
        for task in (t for t in self.ctx.cfg.tasks if t.when == when):
            cont = self._container(task)
            self.ctx.say(f"running {task.describe()} in {cont.name}")
            env = variables(self.ctx.cfg, task, self.colour, self.old, self.dep)
            try:
                ran = self.backend.exec_task(cont.id, task.run, env, task.timeout)
            except Exception as exc:   # docker's APIError: e.g. the executable is not in the image
                raise TaskFailed(f"task {task.name} ({when}) could not run in {cont.name}: "
                                 f"{getattr(exc, 'explanation', None) or exc}") from exc
            code, tail, seconds = ran.code, ran.tail, ran.seconds
            self.timings[f"task_{task.name}"] = round(seconds, 3)
            if code is None:
                raise TaskFailed(f"task {task.name} ({when}) did not finish within its timeout of "
                                 f"{task.timeout:g}s (killed); output: {tail or '(none)'}")
            if code != 0:
                raise TaskFailed(f"task {task.name} ({when}) failed with exit code {code} after {seconds:.1f}s; "
                                 f"output: {tail or '(none)'}")
            self.ctx.say(f"task {task.name} ({when}) succeeded in {seconds:.1f}s" + (f": {tail}" if tail else ""))

    def before_switch(self) -> None:
        self.run("before_switch")

    def on_failure(self, exc: BaseException) -> None:
        """The on_failure tasks (their own failure is reported, never raised over the first error)."""
        if not any(t.when == "on_failure" for t in self.ctx.cfg.tasks):
            return
        try:
            self.run("on_failure")
        except HookError as failed:
            self.ctx.say(f"warning: {failed}")
