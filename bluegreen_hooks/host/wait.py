"""Waiting, the one way: tenacity policies bounded by time, with the real error surfacing.

``retrying(on=..., timeout=...)`` builds the policy every wait in the package uses (stamina-style: what
to retry is required; exponential waits from ``interval`` up to ``max_interval``; ``reraise``).
``poll(fn, timeout)`` waits until ``fn()`` returns something truthy. ``testing(True)`` makes every wait
skip its sleeps (attempts still run until the deadline), for unit tests of pure retry logic.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

if TYPE_CHECKING:
    from tenacity import RetryCallState, Retrying

T = TypeVar("T")
ExcTypes = Union[type, "tuple[type, ...]"]
_testing = {"on": False}


def testing(on: bool) -> None:
    """Turn sleeping off (``True``) or back on for every policy built afterwards."""
    _testing["on"] = on


def _no_sleep(seconds: float) -> None:
    return None


_stop = {"requested": False}


def request_stop() -> None:
    """SIGTERM arrived (lifecycle/runner.py): every wait ends at its next sleep with Interrupted, even when
    the handler's own exception was lost (raised inside a finalizer, Python only prints it and goes on)."""
    _stop["requested"] = True


def on_sigterm(signum: int, frame: object) -> None:
    """The SIGTERM handler of a hook (lifecycle/runner.py) and of the background retire: raise Interrupted
    (a BaseException: no ``except Exception`` swallows it); should it be lost, the next wait raises it again."""
    from bluegreen_hooks.errors import Interrupted

    request_stop()
    raise Interrupted()


def _guarded(sleep: Callable[[float], None]) -> Callable[[float], None]:
    def guarded(seconds: float) -> None:
        if _stop["requested"]:
            from bluegreen_hooks.errors import Interrupted
            raise Interrupted()
        sleep(seconds)
    return guarded


def retrying(*, on: ExcTypes, timeout: float, interval: float = 0.05, max_interval: float = 0.5,
             before_sleep: Callable[[RetryCallState], Any] | None = None,
             sleep: Callable[[float], None] = time.sleep,
             quick: Sequence[tuple[ExcTypes, float]] = ()) -> Retrying:
    """A tenacity policy: retry ``on`` these exceptions until ``timeout`` seconds; reraise the last one.

    ``quick``: (exception types, seconds) pairs, the first match wins: after an attempt that raised one of those,
    the wait is that fixed one instead of the exponential one (e.g. a refused connection: asking again costs the
    other side nothing)."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

    wait: Callable[[RetryCallState], float] = wait_exponential(multiplier=interval, max=max_interval)
    if quick:
        slow, pairs = wait, tuple(quick)

        def wait(state: RetryCallState) -> float:
            failed = state.outcome.exception() if state.outcome is not None else None
            for types, seconds in pairs:
                if isinstance(failed, types):
                    return seconds
            return slow(state)
    return Retrying(stop=stop_after_delay(timeout), wait=wait, retry=retry_if_exception_type(on),
                    before_sleep=before_sleep, reraise=True, sleep=_guarded(_no_sleep if _testing["on"] else sleep))


class _NotYet(Exception):
    pass


def poll(fn: Callable[[], T], timeout: float, interval: float = 0.05, max_interval: float = 0.5,
         sleep: Callable[[float], None] = time.sleep) -> T | None:
    """Call ``fn`` until it returns something truthy (returned) or ``timeout`` passes (None is returned)."""
    def attempt() -> T:
        value = fn()
        if not value:
            raise _NotYet()
        return value

    try:
        return retrying(on=_NotYet, timeout=timeout, interval=interval, max_interval=max_interval,
                        sleep=sleep)(attempt)
    except _NotYet:
        return None
