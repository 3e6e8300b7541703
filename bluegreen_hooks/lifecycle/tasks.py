"""Release tasks (``[[tasks]]``, config/tasks.py) run inside the new colour's container through the SDK.

``TaskRunner(ctx, be, colour, old, deployment_id).run("before_switch")`` runs that stage's tasks in
order, each as ``docker exec`` (compose: in its service's container) with the BLUEGREEN_* variables,
killed at its timeout. A task that exits non-zero (or times out) raises TaskFailed naming the task, its
exit code and the tail of its output; the caller decides what keeps serving. Their seconds are returned
as ``task_<name>`` timings (recorded in the deployment's history).
"""
from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.config.tasks import Task
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.model import Colour

OUTPUT_TAIL = 120     # characters of a failed task's output: the last line (runner.LAST_LINE_MAX) keeps it


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


def _tail(chunks: collections.deque[bytes]) -> str:
    text = b"".join(chunks).decode("utf-8", "replace")
    text = " / ".join(ln.strip() for ln in text.splitlines() if ln.strip())
    return text[-OUTPUT_TAIL:]


def exec_in(client: Any, container_id: str, argv: tuple[str, ...], env: dict[str, str],
            timeout: float) -> tuple[int | None, str, float]:
    """Run ``argv`` in the container; return (exit code, None on timeout; output tail; seconds)."""
    api = client.api
    t0 = time.monotonic()
    ex = api.exec_create(container_id, list(argv), environment=env, stdout=True, stderr=True)
    chunks: collections.deque[bytes] = collections.deque(maxlen=64)

    def read() -> None:
        with contextlib.suppress(Exception):
            for chunk in api.exec_start(ex["Id"], stream=True):
                chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():   # its timeout: kill the process (its host pid) and what it started
        pid = api.exec_inspect(ex["Id"]).get("Pid") or 0
        if pid > 0:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        reader.join(10)
        return None, _tail(chunks), time.monotonic() - t0
    return api.exec_inspect(ex["Id"]).get("ExitCode"), _tail(chunks), time.monotonic() - t0


class TaskRunner:
    """Runs the release tasks of one deployment in ``colour`` (``old``: the colour that was live)."""

    def __init__(self, ctx: Any, be: Any, colour: Colour, old: Colour | None, deployment_id: str) -> None:
        self.ctx, self.be, self.colour, self.old, self.dep = ctx, be, colour, old, deployment_id
        self.timings: dict[str, float] = {}

    def _container(self, task: Task) -> Any:
        cfg = self.ctx.cfg
        service = task.service or (cfg.compose.routed[0].service if cfg.compose and cfg.compose.routed else None)
        conts = [c for c in self.be.containers(self.colour) if c.status == "running"]
        if service and cfg.compose is not None:
            conts = [c for c in conts if c.labels.get("com.docker.compose.service") == service]
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
                code, tail, seconds = exec_in(self.be.client, cont.id, task.run, env, task.timeout)
            except Exception as exc:   # docker's APIError: e.g. the executable is not in the image
                raise TaskFailed(f"task {task.name} ({when}) could not run in {cont.name}: "
                                 f"{getattr(exc, 'explanation', None) or exc}") from exc
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
