"""The maintenance include (pure rendering) and the check that nginx serves it.

In the ``set`` form the include sits inside the app's ``server`` block, so it may hold server-level
directives. During maintenance it keeps the colour's variables (operators who bypass the page still
reach that colour) and adds, in this order (rewrite directives run in order; ``return`` ends them)::

    set $bluegreen_maintenance 1;
    if ($http_x_maintenance_bypass = "<token>") { set $bluegreen_maintenance 0; }   # bypass header
    if ($cookie_maintenance_bypass = "<token>") { set $bluegreen_maintenance 0; }   # bypass cookie
    if ($remote_addr = "203.0.113.7") { set $bluegreen_maintenance 0; }              # bypass addresses
    if ($http_x_bluegreen_verify = "<marker>") { set $bluegreen_maintenance 1; }     # our own check
    set $bluegreen_maintenance_page @bluegreen_maintenance_html;
    if ($http_accept ~* "application/json") { set $bluegreen_maintenance_page @bluegreen_maintenance_json; }
    error_page 503 $bluegreen_maintenance_page;
    if ($bluegreen_maintenance) { return 503; }
    location @bluegreen_maintenance_html { ... add_header Retry-After 120 always; return 503 "<page>"; }
    location @bluegreen_maintenance_json { ... }

``return 503`` at server level answers before any location is chosen, so the server block's own
locations never see the request; ``error_page`` hands it to a named location that sets the headers
(``always``, as 503 is not a success) and the body. The message is checked against ``MESSAGE`` (no
``$``, ``\\``, ``"``, backtick or control characters) and then HTML- or JSON-escaped; the bypass token
against ``TOKEN``; addresses and names were checked by config/operability.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from urllib.parse import urlsplit

from bluegreen_hooks.config import Config
from bluegreen_hooks.config.operability import MESSAGE
from bluegreen_hooks.errors import ConfigError, NginxError
from bluegreen_hooks.host import files, nginx, procfs
from bluegreen_hooks.host.wait import poll
from bluegreen_hooks.model import Colour

MARKER_HEADER = "X-Bluegreen-Maintenance"     # on every maintenance page: the include's marker
VERIFY_HEADER = "X-Bluegreen-Verify"          # our check asks for the page even from a bypassed address
TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{12,256}")
_MARKER_RE = re.compile(r"^# bluegreen-hooks: app=\S+ colour=\S+ deployment=\S+ maintenance=([0-9a-f]{12})\b", re.M)


def check_message(message: str, what: str = "--message") -> str:
    """The message, or ConfigError (exit 2) when it holds what must not reach nginx."""
    if not isinstance(message, str) or not MESSAGE.fullmatch(message):
        raise ConfigError(f"{what}: should be printable text of at most 300 characters without $, \\, \" or `, "
                          f"not {message!r:.80}")
    return message


def check_retry_after(seconds: int, what: str = "--retry-after") -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= 86400:
        raise ConfigError(f"{what}: should be a number of seconds from 1 to 86400, not {seconds!r}")
    return seconds


def read_bypass_token(cfg: Config) -> str | None:
    """The secret the bypass header/cookie must carry (from its file or variable); None without a bypass.

    Never part of a message: errors name where it was read from."""
    m = cfg.maintenance
    if not (m.bypass_header or m.bypass_cookie):
        return None
    try:
        if m.bypass_token_file is not None:
            token: str | None = files.read_text(m.bypass_token_file, "maintenance/bypass_token_file", 4096).strip()
        else:
            if m.bypass_token_env not in os.environ:
                raise ConfigError(f"{m.bypass_token_source}: the variable is not set in this environment (the hooks "
                                  f"need the bypass token when deploy/during_maintenance = \"keep\")")
            token = os.environ.get(m.bypass_token_env or "", "").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{m.bypass_token_source}: cannot read the bypass token: {exc}") from exc
    if not token or not TOKEN.fullmatch(token):
        raise ConfigError(f"{m.bypass_token_source}: the bypass token should be 12-256 characters of letters, "
                          f"digits and . _ ~ + / = -")
    return token


def _quoted(text: str) -> str:
    """``text`` as an nginx double-quoted string (it holds no ``$`` and no control character but newlines,
    written as nginx's ``\\n`` escape)."""
    if "$" in text or re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text):
        raise ValueError("refusing to put $ or a control character into the nginx include")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def pages(message: str, retry_after: int) -> tuple[str, str]:
    """(HTML page, JSON document) for ``message`` (already checked)."""
    import html  # only when a page is made: every hook imports this module

    esc = html.escape(message, quote=True)
    page = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Maintenance</title></head>"
            f"<body><h1>Down for maintenance</h1><p>{esc}</p><p>Please retry in {retry_after} seconds.</p>"
            "</body></html>\n")
    doc = json.dumps({"status": "maintenance", "message": message, "retry_after": retry_after},
                     ensure_ascii=False) + "\n"
    return page, doc


def _location(name: str, content_type: str, body: str, retry_after: int, marker: str) -> str:
    return (f"location @{name} {{\n    types {{ }}\n    default_type \"{content_type}\";\n"
            f"    add_header Retry-After {retry_after} always;\n    add_header Cache-Control \"no-store\" always;\n"
            f"    add_header {MARKER_HEADER} {marker} always;\n    return 503 {_quoted(body)};\n}}\n")


def _bypass_lines(cfg: Config, token: str | None) -> str:
    m, out = cfg.maintenance, ""
    if token is not None and not TOKEN.fullmatch(token):
        raise ValueError("bad bypass token")
    if m.bypass_header and token:
        var = "http_" + m.bypass_header.lower().replace("-", "_")
        out += f"if (${var} = {_quoted(token)}) {{ set $bluegreen_maintenance 0; }}\n"
    if m.bypass_cookie and token:
        out += f"if ($cookie_{m.bypass_cookie} = {_quoted(token)}) {{ set $bluegreen_maintenance 0; }}\n"
    for address in m.bypass_addresses:
        out += f"if ($remote_addr = {_quoted(address)}) {{ set $bluegreen_maintenance 0; }}\n"
    return out


def render(cfg: Config, colour: Colour, deployment_id: str, message: str, retry_after: int,
           token: str | None) -> tuple[str, str]:
    """(the maintenance include, its marker): the page for everyone but the bypass, ``colour`` behind it."""
    if cfg.nginx.form != "set":
        raise ConfigError("maintenance needs nginx/form = \"set\": the upstream form's include is read at the "
                          "http level, where nginx cannot answer requests itself")
    check_message(message)
    check_retry_after(retry_after)
    normal = nginx.render_include(cfg, colour, deployment_id).splitlines(keepends=True)
    variables = "".join(ln for ln in normal if not ln.startswith("#"))
    html_page, json_doc = pages(message, retry_after)
    # The parts are joined, never substituted into each other: the message (in both pages) may hold any
    # text, including "{json}" or "{verify}", and must reach nginx only as the escaped page.
    before = variables + "set $bluegreen_maintenance 1;\n" + _bypass_lines(cfg, token)
    after = ("set $bluegreen_maintenance_page @bluegreen_maintenance_html;\n"
             + "if ($http_accept ~* \"application/json\") { set $bluegreen_maintenance_page "
               "@bluegreen_maintenance_json; }\n"
             + "error_page 503 $bluegreen_maintenance_page;\n"
             + "if ($bluegreen_maintenance) { return 503; }\n")
    marker = hashlib.sha256(before.encode() + b"\0" + after.encode() + b"\0" + html_page.encode() + b"\0"
                            + json_doc.encode()).hexdigest()[:12]
    verify = f"if ($http_x_bluegreen_verify = \"{marker}\") {{ set $bluegreen_maintenance 1; }}\n"
    body = (before + verify + after
            + _location("bluegreen_maintenance_html", "text/html; charset=utf-8", html_page, retry_after, marker)
            + _location("bluegreen_maintenance_json", "application/json", json_doc, retry_after, marker))
    head = (f"{nginx.MARK} app={cfg.app} colour={colour} deployment={deployment_id} maintenance={marker}\n"
            f"# Written by `bluegreen-hooks maintenance on`; `bluegreen-hooks maintenance off` sends traffic to "
            f"the live colour again.\n")
    return head + body, marker


def marker_of(text: str | None) -> str | None:
    """The maintenance marker of an include (None: a normal include)."""
    m = _MARKER_RE.search(text or "")
    return m.group(1) if m else None


def verify(cfg: Config, marker: str, retry_after: int, timeout: float | None = None) -> nginx.Answer:
    """Poll nginx until it answers the maintenance page with ``marker`` (503 and Retry-After); NginxError."""
    last = ["no answer yet"]

    def attempt() -> nginx.Answer | None:
        try:
            a = nginx.probe(cfg, cfg.health.path, headers={VERIFY_HEADER: marker})
        except OSError as exc:   # nginx.probe raises HTTP protocol errors as ConnectionError
            last[0] = f"{type(exc).__name__}: {exc}"
            return None
        got = a.headers.get(MARKER_HEADER.lower(), "")
        last[0] = f"HTTP {a.status}, {MARKER_HEADER}: {got or '(none)'}"
        ok = a.status == 503 and got == marker and a.headers.get("retry-after") == str(retry_after)
        return a if ok else None

    answer = poll(attempt, timeout if timeout is not None else cfg.nginx.verify_timeout, interval=0.02,
                  max_interval=0.25)
    if answer is None:
        raise NginxError(f"nginx at {cfg.nginx.public_url}{cfg.health.path} does not answer the maintenance page "
                         f"(last: {last[0]})")
    return answer


def wait_old_workers_stop_accepting(cfg: Config, old_workers: list[list[int]], timeout: float = 10.0) -> bool:
    """Wait until no nginx worker from before a reload still holds the public port's listening socket.

    A reload starts new workers and asks the old ones to quit; until an old worker has closed its
    listening sockets it may still accept a new connection and answer it with the old include. The
    maintenance page is a promise to every request after ``on`` returns (and the app's answer after
    ``off``), so both wait for this (normally a few ms). False when the wait timed out."""
    url = urlsplit(cfg.nginx.public_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    old = [(pid, start) for pid, start in old_workers]

    def closed() -> bool:
        targets = {f"socket:[{i}]" for i in procfs.listening_inodes(port)}
        return not any(procfs.process_alive(pid, start) and _holds(pid, targets) for pid, start in old)

    return not old or bool(poll(closed, timeout, interval=0.01, max_interval=0.05))


def _holds(pid: int, targets: set[str]) -> bool:
    """``pid`` has one of the sockets ``targets`` (``socket:[inode]``) open (False when it cannot be read)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                return True
        except OSError:
            continue
    return False
