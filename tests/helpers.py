"""Small helpers for tests: poll a condition with a deadline (never a bare sleep)."""
from __future__ import annotations

import time
import urllib.error
import urllib.request


def wait_for(cond, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    """Call ``cond()`` until it returns something truthy; return that value or fail after ``timeout``."""
    end = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < end:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may raise while not yet true
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def get(url: str, timeout: float = 5) -> tuple[int, str, dict]:
    """GET ``url``; return (status, body, headers). HTTP errors are returned, not raised."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)
