"""What clients experienced, per colour and per attempt, from nginx's own log lines (the judgement of a
window is observe/judgement.py).

Pure logic (no Docker, no nginx process): the canary (lifecycle/canary.py) and the watch window after a switch
use it the same way::

    from bluegreen_hooks.observe import clients

    fmt = clients.log_format_directive("bluegreen_shop")   # one line for nginx's http context
    # ... access_log /var/lib/bluegreen-hooks/shop.clients.log bluegreen_shop;
    reader = clients.LogReader(path)                       # remembers its offset, reads whole lines only
    entries = reader.read()                                # new Entry objects since the last read
    colour_of = clients.colour_by_port({"blue": [8081], "green": [8082]})
    tallies = clients.tally(entries, colour_of, probe_ids=ids_we_sent)
    verdict = judgement.judge(tallies["green"], tallies["blue"], judgement.Rules(max_error_rate=0.01, min_requests=50))
    verdict.outcome        # "ok" | "abort" | "wait" | "extend"
    verdict.reasons        # one sentence each, with the figures
    verdict.to_json()      # figures for the state file / receipt

**The log format** (``escape=json``, one JSON object a line, every value a string, only nginx's built-in
variables so the format is valid in any config)::

    {"msec":"$msec","status":"$status","method":"$request_method","request_time":"$request_time",
     "upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",
     "upstream_response_time":"$upstream_response_time","upstream_connect_time":"$upstream_connect_time",
     "agent":"$http_user_agent","probe":"$http_x_bluegreen_probe"}

``probe`` is the value of our probes' ``X-Bluegreen-Probe`` header: a per-request id (not the routing token,
which is never logged). A line counts as a probe only when its id is one the hook sent (``probe_ids``), so a
client cannot make its own requests look like probes.

**Attempts.** ``$upstream_addr``, ``$upstream_status``, ``$upstream_response_time`` and
``$upstream_connect_time`` hold one entry per attempt: ``a, b`` after a retry in the same upstream, ``a, b :
c`` after an internal redirect to another upstream; ``-`` where nginx has no value (no answer yet). They
are flattened in order and aligned by position. Each attempt is given to the colour whose port its address
names (``colour_by_port``); an address of no colour (an upstream group's name when no server was left,
another service) is counted in ``unattributed`` only.

**Failure kinds** of one attempt (``attempt_failure``), counted against that attempt's colour even when a
later attempt (a retry on the other colour) saved the request:

* ``refused``: upstream status 502 and no connect time (the connection was never made: refused, unreachable);
* ``reset``: upstream status 502 after a connection (reset, closed without answering, invalid answer);
* ``timeout``: upstream status 504 (connect, send or read timeout);
* ``5xx``: any other 5xx answer of the app;
* ``gave_up``: the request ended 499 (the client closed it) while this, its last attempt, had no answer;
* ``no_answer``: an attempt with no status that is not one of the above (nginx gave up on it, e.g. 500).

**Latency**: the attempt's ``$upstream_response_time`` (seconds, ms resolution), clients' requests only
(probes are left out: they ask for other paths), every attempt with a time, failed or not.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bluegreen_hooks.host import files
from bluegreen_hooks.observe.stats import percentile

FIELDS = {
    "msec": "$msec", "status": "$status", "method": "$request_method", "request_time": "$request_time",
    "upstream_addr": "$upstream_addr", "upstream_status": "$upstream_status",
    "upstream_response_time": "$upstream_response_time", "upstream_connect_time": "$upstream_connect_time",
    "agent": "$http_user_agent", "probe": "$http_x_bluegreen_probe",
}
PROBE_HEADER = "X-Bluegreen-Probe"          # per-request probe id, logged (the routing token is another header)
FAILURE_KINDS = ("5xx", "refused", "reset", "timeout", "gave_up", "no_answer")
MAX_LINE = 64 * 1024                        # a longer "line" without a newline is garbage: skipped


def log_format_directive(name: str) -> str:
    """The ``log_format`` line (http context only) that writes the lines ``parse_line`` reads."""
    body = ",".join(f'"{k}":"{v}"' for k, v in FIELDS.items())
    return f"log_format {name} escape=json '{{{body}}}';"


# ------------------------------------------------------------------------------------------------ parsing

@dataclass(frozen=True)
class Attempt:
    """One try of one upstream server: its address, status (None: no answer) and times (None: '-')."""

    addr: str
    status: int | None
    response_time: float | None
    connect_time: float | None


@dataclass(frozen=True)
class Entry:
    """One request as nginx logged it."""

    msec: float
    status: int
    method: str
    request_time: float | None
    attempts: tuple[Attempt, ...]
    agent: str = ""
    probe: str = ""


def _entries(value: str) -> list[str]:
    """``a, b : c`` → ``[a, b, c]`` (attempts across retries and internal redirects, in order)."""
    if not value or value == "-":
        return [] if not value else ["-"]
    return [part.strip() for group in value.split(" : ") for part in group.split(",")]


def _num(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) and v >= 0 else None


def _status(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) != 3:
        return None
    return int(text)


def parse_line(line: str | bytes) -> Entry | None:
    """One log line → Entry, or None when it is not one of ours (garbage, torn, wrong types)."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k, ""), str) for k in FIELDS):
        return None
    msec, status = _num(raw.get("msec")), _status(raw.get("status"))
    if msec is None or status is None:
        return None
    addrs = _entries(raw.get("upstream_addr", ""))
    if addrs == ["-"]:
        addrs = []
    statuses = _entries(raw.get("upstream_status", ""))
    times = _entries(raw.get("upstream_response_time", ""))
    connects = _entries(raw.get("upstream_connect_time", ""))

    def at(values: list[str], i: int) -> str | None:
        return values[i] if i < len(values) else None

    attempts = tuple(Attempt(a, _status(at(statuses, i)), _num(at(times, i)), _num(at(connects, i)))
                     for i, a in enumerate(addrs))
    return Entry(msec, status, str(raw.get("method", "")), _num(raw.get("request_time")), attempts,
                 str(raw.get("agent", "")), str(raw.get("probe", "")))


def parse_lines(data: bytes) -> tuple[list[Entry], int, int]:
    """(entries, bytes consumed, lines skipped) of ``data``: whole lines only — a torn last line (nginx is
    still writing it) is not consumed, so the next read starts with it."""
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) > MAX_LINE:
        return [], len(data), 1
    out, bad = [], 0
    for raw in data[:end].split(b"\n")[:-1]:
        if not raw.strip():
            continue
        e = parse_line(raw)
        if e is None:
            bad += 1
        else:
            out.append(e)
    return out, end, bad


class LogReader:
    """Reads a log from an offset on, whole lines only; ``read()`` returns what is new since the last call.
    A log that shrank (rotated, recreated) is read again from its start."""

    def __init__(self, path: Path, offset: int | None = None) -> None:
        self.path = Path(path)
        self.offset = self._size() if offset is None else offset
        self.skipped = 0

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def read(self) -> list[Entry]:
        try:
            # never blocking on a FIFO, never through a symlink: a ConfigError naming the path (host/files.py)
            with os.fdopen(files.open_file(self.path, "deploy/state_dir", follow=False), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:
                    self.offset = 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        entries, used, bad = parse_lines(data)
        self.offset += used
        self.skipped += bad
        return entries


# ------------------------------------------------------------------------------------------------ counting

def attempt_failure(entry: Entry, index: int) -> str | None:
    """The failure kind of attempt ``index`` of ``entry`` (see the module doc), or None when it answered."""
    a = entry.attempts[index]
    last = index == len(entry.attempts) - 1
    if a.status is None:
        return "gave_up" if last and entry.status == 499 else "no_answer"
    if a.status == 502:
        return "refused" if a.connect_time is None else "reset"
    if a.status == 504:
        return "timeout"
    if 500 <= a.status <= 599:
        return "5xx"
    return None


def colour_by_port(ports: Mapping[str, Iterable[int]]) -> Callable[[str], str | None]:
    """``addr → colour`` by the address's port (``127.0.0.1:8082``, ``[::1]:8082``); None for other addresses
    (an upstream group's name, a unix socket, another service's port)."""
    by_port = {int(p): colour for colour, ps in ports.items() for p in ps}

    def colour_of(addr: str) -> str | None:
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit() or addr.startswith("unix:"):
            return None
        return by_port.get(int(port))

    return colour_of


@dataclass
class Tally:
    """What one colour's attempts did in a window."""

    attempts: int = 0                               # every attempt on this colour (probes included)
    probes: int = 0                                 # of which our probes
    failures: dict[str, int] = field(default_factory=dict)   # kind → count (probes included)
    probe_failures: int = 0
    saved: int = 0                                  # failed attempts whose request a later attempt saved
    latencies: list[float] = field(default_factory=list)     # clients' attempts only (seconds)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def share(self) -> float:
        return self.failed / self.attempts if self.attempts else 0.0

    def percentile(self, p: float) -> float | None:
        return percentile(self.latencies, p)

    def add(self, other: Tally) -> Tally:
        """This tally and ``other`` together (a window carried into the next step)."""
        failures = dict(self.failures)
        for k, v in other.failures.items():
            failures[k] = failures.get(k, 0) + v
        return Tally(self.attempts + other.attempts, self.probes + other.probes, failures,
                     self.probe_failures + other.probe_failures, self.saved + other.saved,
                     self.latencies + other.latencies)

    def to_json(self) -> dict[str, object]:
        p95, p99 = self.percentile(95), self.percentile(99)
        return {"requests": self.attempts, "probes": self.probes, "failed": self.failed,
                "failures": dict(sorted(self.failures.items())), "saved_by_retry": self.saved,
                "rate": round(self.share, 4), "5xx": self.failed,
                "p95": None if p95 is None else round(p95, 4), "p99": None if p99 is None else round(p99, 4)}

    def figures(self) -> str:
        """``54 requests (12 probes), failed 27.8 % (15: 5xx 15), p95 0.012s`` — for one output line."""
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items()))
        p95 = self.percentile(95)
        probes = f" ({self.probes} probes)" if self.probes else ""
        lat = f", p95 {p95:.3f}s" if p95 is not None else ""
        return (f"{self.attempts} requests{probes}, failed {self.share * 100:.1f} % ({self.failed}"
                f"{': ' + kinds if kinds else ''}){lat}")


@dataclass
class Tallies:
    """Per colour, plus what could not be given to a colour."""

    colours: dict[str, Tally] = field(default_factory=dict)
    unattributed: int = 0            # attempts on an address of no colour
    requests: int = 0                # log lines (client requests and probes)

    def __getitem__(self, colour: str) -> Tally:
        return self.colours.setdefault(colour, Tally())


def tally(entries: Iterable[Entry], colour_of: Callable[[str], str | None],
          probe_ids: Iterable[str] | None = None, since: float | None = None) -> Tallies:
    """Count every attempt of every entry (with ``msec >= since``) against its colour. An entry is a probe
    when its probe id is in ``probe_ids`` (None: any non-empty id)."""
    ids = None if probe_ids is None else set(probe_ids)
    out = Tallies()
    for e in entries:
        if since is not None and e.msec < since:
            continue
        out.requests += 1
        probe = bool(e.probe) and (ids is None or e.probe in ids)
        for i, a in enumerate(e.attempts):
            colour = colour_of(a.addr)
            if colour is None:
                out.unattributed += 1
                continue
            t = out[colour]
            t.attempts += 1
            t.probes += probe
            kind = attempt_failure(e, i)
            if kind is not None:
                t.failures[kind] = t.failures.get(kind, 0) + 1
                t.probe_failures += probe
                t.saved += i < len(e.attempts) - 1 and e.status < 500 and e.status != 499
            if not probe and a.response_time is not None:
                t.latencies.append(a.response_time)
    return out
