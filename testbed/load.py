"""A small threaded HTTP load generator on loopback, to prove zero downtime.

    with Load("http://127.0.0.1:8080/", threads=4) as load:
        deploy()
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_seen == {"v1", "v2"}

Each thread sends GET requests back to back until the block ends, over a new connection per request
(``keepalive=False``) or over one persistent connection (``keepalive=True``). An answer counts as ok when
its status is 2xx; anything else is a failure, counted by cause: ``http_<status>``, ``refused``,
``reset``, ``timeout``, ``closed`` (connection closed with no answer) or ``error:<ExceptionName>``.
The body, stripped, is taken as the version that answered. As browsers and urllib3 do (RFC 9112
§9.3.1), a request that fails on a *reused* keep-alive connection before any byte of an answer arrives
is retried once on a fresh connection; those retries are counted in ``stale_retries``.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Sample:
    t: float          # seconds since the load started
    ok: bool
    cause: str        # "ok" or the failure cause
    version: str      # body of an ok answer ("" otherwise)
    header: str       # X-Bluegreen-Colour of the answer, if any (or the header Load(header=...) names)


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    stale_retries: int = 0
    duration: float = 0.0

    @property
    def total(self) -> int:
        return len(self.samples)

    @property
    def ok(self) -> int:
        return sum(1 for s in self.samples if s.ok)

    @property
    def failed(self) -> int:
        return self.total - self.ok

    @property
    def failures(self) -> Counter:
        """Failure count by cause, e.g. ``Counter({"http_502": 3, "refused": 1})``."""
        return Counter(s.cause for s in self.samples if not s.ok)

    @property
    def versions_seen(self) -> set[str]:
        return {s.version for s in self.samples if s.ok}

    @property
    def version_timeline(self) -> list[tuple[float, str]]:
        """(time of first answer, version) each time the answering version changes, in time order."""
        out: list[tuple[float, str]] = []
        for s in sorted((s for s in self.samples if s.ok), key=lambda s: s.t):
            if not out or out[-1][1] != s.version:
                out.append((s.t, s.version))
        return out

    @property
    def versions_in_order(self) -> list[str]:
        """Each version once, in the order it first answered (both colours answer for a few ms at a switch)."""
        out: list[str] = []
        for _, v in self.version_timeline:
            if v not in out:
                out.append(v)
        return out

    def last_seen(self, version: str) -> float | None:
        """Time of the last ok answer from ``version`` (None if it never answered)."""
        return max((s.t for s in self.samples if s.ok and s.version == version), default=None)

    def summary(self) -> str:
        causes = ", ".join(f"{k}={v}" for k, v in sorted(self.failures.items())) or "none"
        return (f"{self.total} requests in {self.duration:.1f}s, {self.ok} ok, {self.failed} failed "
                f"({causes}); versions {' -> '.join(self.versions_in_order) or '-'} "
                f"({len(self.version_timeline)} changes of answering version)")


class Load:
    """Send requests to ``url`` from ``threads`` threads while the ``with`` block runs."""

    def __init__(self, url: str, threads: int = 4, keepalive: bool = False, timeout: float = 10.0,
                 min_requests: int = 1, header: str = "X-Bluegreen-Colour") -> None:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1") and not (parts.hostname or "").startswith("127."):
            raise ValueError(f"the load generator only targets loopback, not {parts.hostname}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.threads, self.keepalive, self.timeout = threads, keepalive, timeout
        self.min_requests = min_requests
        self.header = header
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0

    def __enter__(self) -> Load:
        self._t0 = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        # make sure some requests were made, even when the block was very short
        end = time.monotonic() + 30
        while len(self.result.samples) < self.min_requests and time.monotonic() < end:
            time.sleep(0.01)
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)
        self.result.duration = time.monotonic() - self._t0
        return self.result

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.result.samples.append(sample)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None or not self.keepalive:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                fresh = True
            else:
                fresh = False
            sample, reusable = self._one(conn, fresh)
            if sample is None:      # stale keep-alive connection: retry once, fresh
                with self._lock:
                    self.result.stale_retries += 1
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                sample, reusable = self._one(conn, True)
            self._record(sample)
            if not (self.keepalive and reusable):
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _one(self, conn: http.client.HTTPConnection, fresh: bool) -> tuple[Sample | None, bool]:
        """One request. Returns (None, False) when a reused connection closed before any answer byte."""
        t = time.monotonic() - self._t0
        try:
            conn.request("GET", self.path, headers={} if self.keepalive else {"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace").strip()
        except ConnectionRefusedError:
            return Sample(t, False, "refused", "", ""), False
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            if not fresh:
                return None, False
            cause = "closed" if isinstance(exc, http.client.RemoteDisconnected) else "reset"
            return Sample(t, False, cause, "", ""), False
        except (socket.timeout, TimeoutError):
            return Sample(t, False, "timeout", "", ""), False
        except (OSError, http.client.HTTPException) as exc:
            return Sample(t, False, f"error:{type(exc).__name__}", "", ""), False
        header = resp.getheader(self.header, "") or ""
        reusable = not resp.will_close
        if 200 <= resp.status < 300:
            return Sample(t, True, "ok", body.splitlines()[0] if body else "", header), reusable
        return Sample(t, False, f"http_{resp.status}", "", header), reusable
