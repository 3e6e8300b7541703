"""Health checks of a colour on its own port, retried with tenacity (host/wait.py).

``wait_healthy`` asks the target colour's own port (never through nginx) until it answers an accepted
status, the deadline passes, or the container exits or restarts (fail fast: no waiting out the
deadline for a dead container). When the image has a Docker HEALTHCHECK, Docker must also report it
``healthy``, or its check, run by us at once while Docker still says ``starting``, must pass. Waits
start at ``health/interval`` and double up to ``health/max_interval``, except after a refused connection
(``QUICK``) and while the app answers but a HEALTHCHECK still says starting (``STARTING``); a progress line
is printed every few seconds.
"""
from __future__ import annotations

import http.client
import queue
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import HealthCheckFailed
from bluegreen_hooks.host.wait import retrying
from bluegreen_hooks.model import Colour

if TYPE_CHECKING:
    from tenacity import RetryCallState

PROGRESS_EVERY = 5.0


class NotHealthyYet(Exception):
    """One attempt found the target not (yet) healthy; ``str()`` says what was seen."""


class Refused(NotHealthyYet):
    """Nothing listens on the port yet. Asking again costs the app nothing, so the next attempt comes after
    ``QUICK`` s, not the growing wait, and the containers are looked at only every ``WATCH_EVERY`` s meanwhile:
    a JVM that starts to listen is seen within ~50 ms."""


class Starting(NotHealthyYet):
    """The app answers, but a container's Docker HEALTHCHECK says starting and its early run (``check_now``)
    failed: typically a service nginx does not route to (a worker) that listens last. Its next look comes after
    ``STARTING`` s, not the growing wait (up to ``health/max_interval``): the early run is one exec in the
    container, shared by the routes' waits (runtime/healthcheck.EarlyChecks), so at most one every ~STARTING s."""


QUICK = 0.05          # the wait after a refused connection
WATCH_EVERY = 0.5     # while the port refuses, how often the containers are looked at (exits, Docker health)
STARTING = 0.2        # the wait while the app answers and a container's HEALTHCHECK still says starting


def check_http(host: str, port: int, path: str, timeout: float, statuses: tuple[int, ...]) -> str:
    """One GET on a fresh connection; returns "HTTP 200" or raises NotHealthyYet with what was seen."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", "User-Agent": "bluegreen-hooks"})
        resp = conn.getresponse()
        resp.read(65536)
    except ConnectionRefusedError:
        raise Refused(f"connection refused by {host}:{port}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise NotHealthyYet(f"{type(exc).__name__} from {host}:{port}{path}: {exc}".rstrip(": ")) from None
    finally:
        conn.close()
    if resp.status not in statuses:
        raise NotHealthyYet(f"HTTP {resp.status} from {host}:{port}{path}")
    return f"HTTP {resp.status}"


def container_verdict(attrs: dict[str, Any]) -> tuple[str | None, str | None]:
    """From a container's inspect data: (fatal problem or None, Docker health status or None).

    Fatal: it exited, is dead, or restarted (a crash loop). Pure, so it is tested on synthetic input.
    """
    state = attrs.get("State", {})
    status = state.get("Status")
    restarts = attrs.get("RestartCount", 0) or 0
    if status in ("exited", "dead"):
        error = f" ({state.get('Error')})" if state.get("Error") else ""
        return f"container exited with code {state.get('ExitCode')}{error}", None
    if status == "paused":
        return "container is paused (frozen: it cannot answer)", None
    if status == "restarting" or restarts > 0:
        code = state.get("ExitCode")
        return f"container is crash-looping (restarted {restarts} time(s), last exit code {code})", None
    health = (state.get("Health") or {}).get("Status")
    return None, health


def _judge(colour: Colour, attrs_list: list[dict[str, Any]], check_now: Callable[[dict[str, Any]], bool] | None,
           seen: dict[str, str]) -> None:
    """The containers' part of a health attempt: HealthCheckFailed for none left or one that exited or
    restarts, NotHealthyYet while a Docker HEALTHCHECK says starting (and its early run fails) or unhealthy."""
    if not attrs_list:
        raise HealthCheckFailed(f"{colour} has no container any more (removed while starting?)")
    for attrs in attrs_list:
        fatal, docker_health = container_verdict(attrs)
        name = attrs.get("Name", "").lstrip("/") or colour
        if fatal:
            raise HealthCheckFailed(f"{colour} ({name}): {fatal} before it got healthy")
        if docker_health == "starting" and check_now is not None:
            if check_now(attrs):
                continue
            seen["last"] = f"Docker HEALTHCHECK of {name} says starting (and fails when run now)"
            raise Starting(seen["last"])
        if docker_health in ("starting", "unhealthy"):
            seen["last"] = f"Docker HEALTHCHECK of {name} says {docker_health}"
            raise NotHealthyYet(seen["last"])


def wait_healthy(cfg: Config, colour: Colour, watch: Callable[[], list[dict[str, Any]]] | None,
                 say: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep,
                 port: int | None = None, check_now: Callable[[dict[str, Any]], bool] | None = None) -> float:
    """Wait until ``colour`` is healthy; return the seconds it took. Raise HealthCheckFailed otherwise.

    ``watch`` returns fresh inspect data of the colour's containers: any that exited or restarted fails
    the check at once; any with a Docker HEALTHCHECK must report healthy. ``port`` defaults to the
    colour's port. ``check_now(attrs)`` runs a ``starting`` container's own HEALTHCHECK at once
    (runtime/healthcheck.py): its pass counts as Docker's.
    """
    h = cfg.health
    host, port = cfg.host, port or cfg.port(colour)
    t0 = time.monotonic()
    seen: dict[str, str] = {"last": "no attempt yet"}
    last_progress = [t0]
    looked_at = [-WATCH_EVERY]
    answered = [0.0]   # how long the accepted answer took: an app's first request is often its slowest

    def judge_containers() -> None:
        looked_at[0] = time.monotonic()
        if watch is not None:
            _judge(colour, watch(), check_now, seen)

    def attempt() -> str:
        # The port first: a JVM that listens gets its first (slow) request while another container is still
        # starting, not after. Then the containers: at every attempt, except while the port refuses (only
        # every WATCH_EVERY s then), and always before an answer counts.
        asked = time.monotonic()
        try:
            result = check_http(host, port, h.path, h.timeout, h.statuses)
        except NotHealthyYet as exc:
            if not isinstance(exc, Refused) or time.monotonic() - looked_at[0] >= WATCH_EVERY:
                judge_containers()   # a dead container fails the wait now; one still starting says so
            seen["last"] = str(exc)
            raise
        answered[0] = time.monotonic() - asked
        judge_containers()
        return result

    def progress(state: RetryCallState) -> None:
        now = time.monotonic()
        if now - last_progress[0] >= PROGRESS_EVERY:
            last_progress[0] = now
            say(f"waiting for {colour} to get healthy: {now - t0:.0f}s of {h.deadline:.0f}s, last: {seen['last']}")

    quick = ((Refused, min(QUICK, h.interval)), (Starting, min(STARTING, h.max_interval)))
    try:
        result = retrying(on=NotHealthyYet, timeout=h.deadline, interval=h.interval, max_interval=h.max_interval,
                          before_sleep=progress, sleep=sleep, quick=quick)(attempt)
    except NotHealthyYet as exc:
        raise HealthCheckFailed(f"{colour} not healthy after {time.monotonic() - t0:.0f}s "
                                f"(last: {exc}; health/deadline is {h.deadline:g}s)") from None
    seconds = time.monotonic() - t0
    say(f"{colour} is healthy ({result} from {host}:{port}{h.path} after {seconds:.1f}s; answered in "
        f"{answered[0]:.2f}s)")
    return seconds


class _Cancelled(Exception):
    """Another port's wait failed: this one ends at its next sleep (wait_all)."""


def wait_all(cfg: Config, colour: Colour, ports: Sequence[int], watch: Callable[[], list[dict[str, Any]]] | None,
             say: Callable[[str], None] = print, check_now: Callable[[dict[str, Any]], bool] | None = None) -> float:
    """``wait_healthy`` on each of ``ports`` (a compose colour's routed services) at the same time: the colour is
    healthy when every one is, so the routes' waits overlap instead of adding up (~0.1-0.2 s per route once
    the apps listen). The first failure ends the others at their next sleep and is raised; a SIGTERM ends them
    all (host/wait.request_stop). Returns the longest wait."""
    if len(ports) == 1:
        return wait_healthy(cfg, colour, watch, say, port=ports[0], check_now=check_now)
    failed = threading.Event()

    def sleep(seconds: float) -> None:
        if failed.wait(seconds):
            raise _Cancelled()

    def one(port: int) -> float:
        try:
            return wait_healthy(cfg, colour, watch, say, sleep=sleep, port=port, check_now=check_now)
        except BaseException:
            failed.set()
            raise

    done: queue.Queue[tuple[float | None, BaseException | None]] = queue.Queue()

    def run(port: int) -> None:
        try:
            done.put((one(port), None))
        except BaseException as exc:   # handed to the caller's thread
            done.put((None, exc))

    for port in ports:   # daemon threads: a hook that ends (SIGTERM) does not wait for a check in flight
        threading.Thread(target=run, args=(port,), name=f"health-{port}", daemon=True).start()
    longest, first = 0.0, None
    try:
        for _ in ports:
            seconds, exc = done.get()
            if exc is not None and (first is None or isinstance(first, _Cancelled)):
                first = exc
            longest = max(longest, seconds or 0.0)
    finally:
        failed.set()
    if first is not None:
        raise first
    return longest
