"""Parsing ``[[tasks]]``: release tasks run inside the new colour's container (docs/tasks.md).

    [[tasks]]
    name = "migrate"
    when = "before_switch"      # before_switch | after_switch | after_validate | on_failure
    run = ["bin/rails", "db:migrate"]
    service = "api"             # compose: the service whose container runs it (default: the first routed)
    timeout = 300               # seconds (default 300); counts in the event's appspec timeout
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bluegreen_hooks.config.reader import Reader

WHEN = ("before_switch", "after_switch", "after_validate", "on_failure")
TASK_KEYS = ("name", "when", "run", "service", "timeout", "env")
DEFAULT_TASK_TIMEOUT = 300.0
MAX_EVENT_SECONDS = 3600      # CodeDeploy's limit for one event: every task of an event must fit in it
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_SERVICE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}")
# the event each kind of task runs in
EVENT_OF = {"before_switch": "ApplicationStart", "after_switch": "ApplicationStart",
            "on_failure": "ApplicationStart", "after_validate": "ValidateService"}


@dataclass(frozen=True)
class Task:
    """One release task: a command run inside the new colour's container at ``when``."""

    name: str
    when: str
    run: tuple[str, ...]
    service: str | None
    timeout: float
    env: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        where = f" in service {self.service}" if self.service else ""
        return f"task {self.name} ({self.when}{where}, timeout {self.timeout:g}s): {' '.join(self.run)}"


def parse_tasks(file: str, raw: Any, compose: bool) -> tuple[Task, ...]:
    """The ``[[tasks]]`` array: each one validated; names unique; each event's timeouts fit in 3600 s."""
    if raw is None:
        return ()
    top = Reader(file, {"tasks": raw}, "", ("tasks",))
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        top.fail("tasks", "should be an array of tables: [[tasks]] name = \"migrate\" ...")
    out: list[Task] = []
    for i, table in enumerate(raw):
        r = Reader(file, table, f"tasks/{i + 1}/", TASK_KEYS)
        name = r.string("name", None, _NAME, "a name of letters, digits, '.', '_' or '-'")
        if name is None:
            r.fail("name", "is required (e.g. \"migrate\")")
        if any(t.name == name for t in out):
            r.fail("name", f"{name!r} is used by another task")
        when = r.string("when", "before_switch")
        if when not in WHEN:
            r.fail("when", f"should be one of {', '.join(WHEN)}, not {when!r}")
        service = r.string("service", None, _SERVICE, "a compose service name")
        if service is not None and not compose:
            r.fail("service", "is only for compose apps (a [compose] table); leave it out")
        out.append(Task(name, when, r.argv("run", ()), service,
                        r.number("timeout", DEFAULT_TASK_TIMEOUT, 1, MAX_EVENT_SECONDS),
                        tuple(sorted(r.mapping("env").items()))))
    for event in set(EVENT_OF.values()):
        total = sum(t.timeout for t in out if EVENT_OF[t.when] == event and t.when != "on_failure")
        if total > MAX_EVENT_SECONDS:
            top.fail("tasks", f"the timeouts of the tasks run in {event} add up to {total:g}s; "
                              f"CodeDeploy allows at most {MAX_EVENT_SECONDS}s per event")
    return tuple(out)
