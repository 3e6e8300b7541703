"""Run a container's own Docker HEALTHCHECK at once, instead of waiting for Docker's first scheduled run.

Docker runs the first check ``interval`` after the container starts (30 s by default; Docker 20.10 has
no ``start_interval``), and until then reports ``starting``. One passing check is all Docker needs to say
``healthy``, so running the same test now, the way Docker runs it (``CMD`` as argv, ``CMD-SHELL`` through
``/bin/sh -c``, inside the container, bounded by the check's ``timeout``), gives the same answer up to
``interval`` earlier. Used by the health wait (host/health.py) only while Docker says ``starting``; a
failing or hanging run changes nothing: the wait goes on with Docker's own status (and ``unhealthy``
from Docker still fails the wait's attempt).
"""
from __future__ import annotations

import threading
import time
from typing import Any

from bluegreen_hooks.host.health import STARTING
from bluegreen_hooks.host.wait import poll

MAX_TIMEOUT = 10.0       # seconds one early run may take, whatever the check's own timeout
DEFAULT_TIMEOUT = 30.0   # Docker's default healthcheck timeout


def argv(test: list[str] | None) -> list[str] | None:
    """The command Docker would run for a HEALTHCHECK ``Test``, or None when there is none to run."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD" and len(test) > 1:
        return list(test[1:])
    if test[0] == "CMD-SHELL" and len(test) == 2:
        return ["/bin/sh", "-c", test[1]]
    return None


class EarlyChecks:
    """The health wait's ``check_now``: runs a ``starting`` container's HEALTHCHECK (``run_now``) at each
    attempt until it passes; a container whose run took over a second (a check hanging on something) is
    left to Docker's own schedule after that one run.

    The routes' waits (one thread per routed port) share it: one run at a time, and a run that failed less
    than ``REUSE`` s ago is their answer too, so a starting container costs one exec per ~REUSE s however
    many routes wait for it (each exec costs Docker ~20-60 ms of CPU, taken from the JVMs still starting)."""

    REUSE = STARTING   # the health wait's step while a HEALTHCHECK says starting: one run per step

    def __init__(self, client: Any) -> None:
        self.client = client
        self.passed: set[str] = set()
        self.slow: set[str] = set()
        self.failed_at: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, attrs: dict[str, Any]) -> bool:
        key = f"{attrs.get('Id')}@{(attrs.get('State') or {}).get('StartedAt')}"
        with self.lock:
            if key in self.passed:
                return True
            if key in self.slow or time.monotonic() - self.failed_at.get(key, -self.REUSE) < self.REUSE:
                return False
            t0 = time.monotonic()
            ok = run_now(self.client, attrs)
            if ok:
                self.passed.add(key)
            elif time.monotonic() - t0 > 1.0:
                self.slow.add(key)
            else:
                self.failed_at[key] = time.monotonic()
            return ok


_shared: dict[int, tuple[Any, EarlyChecks]] = {}


def early_checks(client: Any) -> EarlyChecks:
    """One EarlyChecks per Docker client, shared by the health waits of one hook (the main route's and
    each compose route's): a container whose check passed once is not checked again for the next port."""
    if id(client) not in _shared:
        _shared[id(client)] = (client, EarlyChecks(client))   # the client is kept: its id is not reused
    return _shared[id(client)][1]


def run_now(client: Any, attrs: dict[str, Any]) -> bool:
    """Run the container's HEALTHCHECK test now; True when it exited 0 within its timeout."""
    hc = (attrs.get("Config") or {}).get("Healthcheck") or {}
    cmd = argv(hc.get("Test"))
    if cmd is None:
        return False
    timeout = min((hc.get("Timeout") or 0) / 1e9 or DEFAULT_TIMEOUT, MAX_TIMEOUT)
    api = client.api

    def finished() -> dict[str, Any] | None:
        info: dict[str, Any] = api.exec_inspect(exec_id)
        return None if info.get("Running") else info

    try:
        exec_id = api.exec_create(attrs["Id"], cmd, stdout=False, stderr=False)["Id"]
        api.exec_start(exec_id, detach=True)
        done = poll(finished, timeout, interval=0.01, max_interval=0.1)
    except Exception:   # the container stopped meanwhile, or exec is not allowed: Docker's status decides
        return False
    return done is not None and done.get("ExitCode") == 0
