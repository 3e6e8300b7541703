"""The nginx side: render the include (pure), switch it safely, verify through nginx, wait for draining.

The include is the only file we write into nginx's configuration. In the default ``set`` form it is a
drop-in for the classic ``backend-url.inc``::

    # bluegreen-hooks: app=shop colour=green deployment=d-ABC123
    set $service_url http://127.0.0.1:8082;
    set $bluegreen_colour green;

and when the server block (docs/nginx.md) returns ``$bluegreen_colour`` as the ``X-Bluegreen-Colour``
header, ``verify()`` proves by it that nginx really serves the new colour ("verified by header"). A
server block without the header (the classic deploy.sh nginx.conf) is verified by the reload itself:
the master replaced its workers with a new generation, and public_url answers an accepted status
("verified by worker generation + HTTP 200"). Which one applies comes from ``nginx -T``
(host/nginx_conf.py). Every value in the include comes from a validated Config (ports are integers,
the host an IP or hostname).
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError, NginxError
from bluegreen_hooks.host import files, include_guard
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.host.procfs import children, command, process_alive, process_start_time
from bluegreen_hooks.host.wait import poll
from bluegreen_hooks.model import COLOURS, Colour, Say, VerifyMode, is_deployment_id

if TYPE_CHECKING:   # http.client and subprocess are imported where used: a no-op hook needs neither
    import subprocess

    from bluegreen_hooks.host.nginx_canary import Split

POLL_AFTER_RELOAD = 0.02   # the longest wait between two probes after a reload (verify, reloaded)
MARK = "# bluegreen-hooks:"
_MARK_RE = re.compile(r"^# bluegreen-hooks: app=(\S+) colour=(blue|green)\b", re.M)
_PORT_RE = re.compile(r"(?:https?://|server\s+)\[?[A-Za-z0-9.:-]*?\]?:(\d{1,5})\b")


def render_include(cfg: Config, colour: Colour, deployment_id: str, split: Split | None = None) -> str:
    """The include text that sends traffic to ``colour`` (with ``split``: a canary's share to ``split.new``;
    ``colour`` and ``deployment_id`` are then the old colour's, host/nginx_canary.py)."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}")
    if not is_deployment_id(deployment_id):
        raise ValueError(f"bad deployment id {deployment_id!r}")
    n = cfg.nginx
    canary = f" canary={split.new}:{split.share} canary-deployment={split.new_deployment}" if split else ""
    head = (f"{MARK} app={cfg.app} colour={colour} deployment={deployment_id}{canary}\n"
            f"# Written by bluegreen-hooks; edits are replaced at the next switch.\n")
    if split is not None:
        from bluegreen_hooks.host.nginx_canary import render_split
        return render_split(cfg, split, head)
    target = f"{cfg.host_for_url}:{cfg.port(colour)}"
    # compose stacks with several routed services: one more variable (or upstream) per extra service
    extra = [(r.variable, f"{cfg.host_for_url}:{r.ports[colour]}") for r in cfg.extra_routes]
    if n.form == "set":
        return (head + f"set ${n.variable} http://{target};\n"
                + "".join(f"set ${var} http://{t};\n" for var, t in extra)
                + f"set ${n.colour_variable} {colour};\n")
    return (head + f"upstream {n.upstream} {{\n    server {target};\n}}\n"
            + "".join(f"upstream {var} {{\n    server {t};\n}}\n" for var, t in extra)
            + f"map $pid ${n.colour_variable} {{\n    default {colour};\n}}\n")


def include_colour(cfg: Config, text: str | None) -> Colour | None:
    """Which colour an include sends traffic to: our marker line, else the port it names (legacy files)."""
    if not text:
        return None
    m = _MARK_RE.search(text)
    if m and m.group(1) == cfg.app:
        return "blue" if m.group(2) == "blue" else "green"
    ports = {int(p) for p in _PORT_RE.findall(text)}
    colours = {c for c in (cfg.colour_of_port(p) for p in ports) if c is not None}
    return colours.pop() if len(colours) == 1 else None


def read_include(cfg: Config) -> str | None:
    try:
        data = files.read_file(cfg.nginx.include, "nginx/include")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NginxError(f"cannot read the nginx include {cfg.nginx.include}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NginxError(f"the nginx include {cfg.nginx.include} is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                         f"offset {exc.start}): not an include bluegreen-hooks writes; check nginx/include") from None


def write_include(cfg: Config, text: str) -> None:
    """Replace the include (atomically, keeping its owner and mode); refused when the file there is not ours.

    A deploy user who owns the include but may not create files in its folder (``setup-host`` leaves
    /etc/nginx/conf.d alone) rewrites it in place: nginx reads it only at our test and reload."""
    include_guard.check(cfg)
    path = cfg.nginx.include
    if os.access(path.parent, os.W_OK | os.X_OK) or not os.access(path, os.W_OK):
        write_atomic(path, text)
        return
    with os.fdopen(files.open_file(path, "nginx/include", os.O_RDWR), "r+b") as f:
        f.write(text.encode("utf-8"))
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def run(argv: Sequence[str], what: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an nginx command (argv list, never a shell); raise NginxError with its first telling line."""
    import subprocess

    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        key = "nginx/test" if "test" in what else "nginx/reload"
        raise NginxError(f"{what}: command not found: {argv[0]} (check {key} in the config)") from exc
    except subprocess.TimeoutExpired as exc:
        raise NginxError(f"{what}: `{' '.join(argv)}` did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise NginxError(f"{what} failed: {first_error(proc.stderr + proc.stdout) or f'exit {proc.returncode}'}")
    return proc


def first_error(output: str) -> str:
    """The line of nginx's output that says what is wrong (an [emerg]/[error] line if there is one)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    found = next((ln for ln in lines if re.search(r"\[(emerg|error|alert|crit)\]", ln)), lines[0] if lines else "")
    return re.sub(r"^nginx: \[\w+\] ", "", found)[:220]


def master_pid(cfg: Config) -> int | None:
    try:
        pid = int(files.read_text(cfg.nginx.pid_file, "nginx/pid_file", limit=64).strip())
    except (OSError, ValueError, ConfigError):
        return None
    return pid if process_start_time(pid) is not None else None


def worker_pids(cfg: Config) -> list[list[int]]:
    """The nginx workers now running, as [pid, start time] pairs (children of the master in the pid file)."""
    master = master_pid(cfg)
    return children(master) if master is not None else []


def pid_file_problem(cfg: Config) -> str | None:
    """Why nginx/pid_file is no file nginx could have written (a FIFO…), or None: "not running" is said otherwise."""
    try:
        files.check_type(cfg.nginx.pid_file, "nginx/pid_file")
        return None
    except ConfigError as exc:
        return str(exc)


def check_running(cfg: Config) -> int:
    """The master pid; raise NginxError when nginx does not run (ConfigError when nginx/pid_file is not a file)."""
    pid = master_pid(cfg)
    if pid is None:
        if problem := pid_file_problem(cfg):
            raise ConfigError(problem)
        raise NginxError(f"nginx is not running (no live pid in {cfg.nginx.pid_file}); start nginx, "
                         f"or set nginx/pid_file, then retry")
    return pid


def test_config(cfg: Config) -> None:
    run(cfg.nginx.test, "nginx config test")


@dataclass
class Answer:
    status: int
    colour: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)   # names in lower case


def probe(cfg: Config, path: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> Answer:
    """One GET through nginx's public URL on a fresh connection; raises OSError on failure (an HTTP
    protocol error too, as ConnectionError)."""
    import http.client

    url = urlsplit(cfg.nginx.public_url)
    conn_cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    try:
        conn.request("GET", (url.path.rstrip("/") + path) or "/",
                     headers={"Connection": "close", "User-Agent": "bluegreen-hooks", **(headers or {})})
        resp = conn.getresponse()
        body = resp.read(4096).decode("utf-8", "replace")
        return Answer(resp.status, resp.getheader(cfg.nginx.colour_header, "") or "", body,
                      {k.lower(): v for k, v in resp.getheaders()})
    except http.client.HTTPException as exc:
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


def served_colour(cfg: Config, timeout: float = 2.0) -> Colour | None:
    """The colour nginx really serves now (its colour header on one request), or None when unknown."""
    try:
        a = probe(cfg, cfg.health.path, timeout=timeout)
    except OSError:
        return None
    return next((c for c in COLOURS if c == a.colour), None)


def verify(cfg: Config, colour: Colour, timeout: float | None = None, path: str | None = None) -> Answer:
    """Poll nginx until it answers ``path`` from ``colour`` with an accepted status; raise NginxError."""
    path = path or cfg.nginx.validate_path
    last: list[str] = ["no answer yet"]

    def attempt() -> Answer | None:
        try:
            a = probe(cfg, path)
        except OSError as exc:
            last[0] = f"{type(exc).__name__}: {exc}"
            return None
        last[0] = f"HTTP {a.status}, {cfg.nginx.colour_header}: {a.colour or '(none)'}"
        return a if a.colour == colour and a.status in cfg.health.statuses else None

    deadline = timeout if timeout is not None else cfg.nginx.verify_timeout
    # After a reload the old workers keep accepting for ~100 ms (nginx's master lets the new workers start
    # before it shuts the old ones down): a probe costs ~2 ms, so ask every 10-20 ms to see the switch
    # within 20 ms of it (a doubling backoff saw it ~150 ms after the reload).
    answer = poll(attempt, deadline, interval=0.01, max_interval=POLL_AFTER_RELOAD)
    if answer is None:
        raise NginxError(f"nginx at {cfg.nginx.public_url}{path} does not answer from {colour} "
                         f"(last: {last[0]})")
    return answer


def rolled(master: int, old_workers: list[list[int]]) -> str | None:
    """None when nginx runs a new worker generation and every old worker is gone or shutting down;
    else what is still missing."""
    fresh = [p for p, t in children(master) if [p, t] not in old_workers
             and "worker process" in command(p) and "shutting down" not in command(p)]
    if not fresh:
        return "no new nginx worker generation yet"
    busy = [p for p, t in old_workers if process_alive(p, t) and "shutting down" not in command(p)]
    return f"old nginx worker(s) {busy} still accept requests" if busy else None


def verify_generation(cfg: Config, colour: Colour, old_workers: list[list[int]], path: str,
                      timeout: float | None = None) -> Answer:
    """Prove a reload took without the colour header: a new worker generation of the same master, and
    ``public_url`` answering ``path`` with an accepted status (a colour header, if sent, must name ``colour``)."""
    master = check_running(cfg)
    last: list[str] = ["no answer yet"]

    def attempt() -> Answer | None:
        missing = rolled(master, old_workers)
        if missing:
            last[0] = missing
            return None
        try:
            a = probe(cfg, path)
        except OSError as exc:
            last[0] = f"{type(exc).__name__}: {exc}"
            return None
        last[0] = f"HTTP {a.status}" + (f", {cfg.nginx.colour_header}: {a.colour}" if a.colour else "")
        ok = a.status in cfg.health.statuses and a.colour in ("", colour)
        return a if ok else None

    answer = poll(attempt, timeout if timeout is not None else cfg.nginx.verify_timeout, interval=0.01,
                  max_interval=POLL_AFTER_RELOAD)
    if answer is None:
        raise NginxError(f"nginx at {cfg.nginx.public_url}{path} did not prove the switch to {colour} "
                         f"(worker generation + HTTP; last: {last[0]})")
    return answer


def verify_serving(cfg: Config, colour: Colour, mode: VerifyMode, path: str | None = None) -> tuple[Answer, str]:
    """After a switch (no reload now): nginx answers ``path`` from ``colour``; returns the answer and the proof.

    Without the header, the include must name ``colour`` (the reload that proved it ran at the switch)."""
    path = path or cfg.nginx.validate_path
    if mode == "header":
        return verify(cfg, colour, path=path), "verified by header"
    named = include_colour(cfg, read_include(cfg))
    if named != colour:
        raise NginxError(f"the nginx include {cfg.nginx.include} names {named or 'no colour'}, not {colour}")
    answer = verify_generation(cfg, colour, [], path)
    return answer, f"verified by HTTP {answer.status} (include names {colour}; nginx sends no colour header)"


@dataclass
class Switch:
    old_workers: list[list[int]]
    seconds: float
    old_text: str | None
    proof: str = "verified by header"


def switch(cfg: Config, colour: Colour, deployment_id: str, say: Say, mode: VerifyMode | None = None) -> Switch:
    """Point nginx at ``colour``: write the include, test, reload, verify. Undo everything on failure.

    The switch is proven by the colour header when the server block sends it, else by a new nginx worker generation
    plus an accepted answer: by ``mode`` (a deployment's: lifecycle/steps.verify_mode), else by ``verify_mode``."""
    mode = mode or verify_mode(cfg)

    def check(before: list[list[int]]) -> str:
        if mode == "header":
            verify(cfg, colour, path=cfg.health.path)
            return "verified by header"
        a = verify_generation(cfg, colour, before, cfg.health.path)
        return f"verified by worker generation + HTTP {a.status}"

    sw = apply(cfg, render_include(cfg, colour, deployment_id), check)
    say(f"nginx now sends traffic to {colour} (test + reload + verify in {sw.seconds * 1000:.0f} ms; {sw.proof})")
    return sw


def switch_to(cfg: Config, new_text: str, check: Callable[[], object]) -> Switch:
    """Make ``new_text`` the include (e.g. the maintenance page): ``apply`` with a ``check()`` that raises
    NginxError when nginx does not answer as the new text says."""
    return apply(cfg, new_text, lambda _before: check())


def apply(cfg: Config, new_text: str, check: Callable[[list[list[int]]], object]) -> Switch:
    """Write ``new_text`` as the include, test, reload, then ``check(workers before)`` (raises NginxError).

    If the config test fails, the previous include is put back and nginx is not reloaded. If the reload
    or the check fails, the previous include is put back and nginx reloaded with it.
    """
    t0 = time.monotonic()
    check_running(cfg)
    include_guard.check(cfg)    # never replace a file that is not an include of ours
    old_text = read_include(cfg)
    old_workers = worker_pids(cfg)
    write_include(cfg, new_text)
    try:
        test_config(cfg)
    except NginxError as exc:
        _restore(cfg, old_text)
        raise NginxError(f"{exc}; previous include restored, nginx not reloaded") from exc
    except BaseException:   # e.g. SIGTERM (the agent's timeout) during the test: never leave the new include
        _restore(cfg, old_text)
        raise
    try:
        run(cfg.nginx.reload, "nginx reload")
        result = check(old_workers)
    except BaseException as exc:   # NginxError, or SIGTERM while reloading/verifying: put the old include back
        _restore(cfg, old_text)
        with contextlib.suppress(NginxError):
            run(cfg.nginx.reload, "nginx reload (restoring)")
        if isinstance(exc, NginxError):
            raise NginxError(f"{exc}; previous include restored") from exc
        raise
    proof = result if isinstance(result, str) else "verified"
    return Switch(old_workers, time.monotonic() - t0, old_text, proof)


def reloaded(cfg: Config, before: list[list[int]], mode: VerifyMode | None = None) -> None:
    """Wait until nginx runs workers that were not there ``before`` (the reload took effect) and answers
    through its public URL with an accepted status (from either colour, when nginx sends the colour
    header: ``mode``, else ``verify_mode``); raise NginxError."""
    before_pids = {pid for pid, _ in before}
    header = (mode or verify_mode(cfg)) == "header"

    def ready() -> bool:
        if not ({pid for pid, _ in worker_pids(cfg)} - before_pids):
            return False
        try:
            a = probe(cfg, cfg.health.path)
        except OSError:
            return False
        return a.status in cfg.health.statuses and (a.colour in COLOURS or not header)

    if not poll(ready, cfg.nginx.verify_timeout, interval=0.01, max_interval=POLL_AFTER_RELOAD):
        raise NginxError(f"nginx at {cfg.nginx.public_url} did not answer from the new configuration")


def verify_mode(cfg: Config) -> VerifyMode:
    """How a switch is proven for this nginx config now (host/nginx_conf.py; an `nginx -T` each call)."""
    from bluegreen_hooks.host import nginx_conf

    return nginx_conf.verify_mode(cfg)


def _restore(cfg: Config, old_text: str | None) -> None:
    write_include(cfg, old_text if old_text is not None else "")


def wait_drained(workers: list[list[int]], timeout: float) -> tuple[bool, int]:
    """Wait until the given nginx workers (from before the switch) have exited: (drained, still alive)."""
    def gone() -> bool:
        return not any(process_alive(pid, start) for pid, start in workers)

    ok = poll(gone, timeout, interval=0.05, max_interval=0.5) if workers else True
    return bool(ok), sum(1 for pid, start in workers if process_alive(pid, start))
