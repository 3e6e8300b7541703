"""The nginx side of the watch window (lifecycle/watch.py): the include that serves the new colour while the
old one stays ready, with per-colour access logs of what clients got.

* ``upstream`` form (http context): the failure-absorbing switch. The new colour is the upstream's server,
  the old colour its ``backup``; ``proxy_next_upstream error timeout http_502 http_503 http_504`` (methods
  that are not idempotent are never retried: ``non_idempotent`` is not listed), at most
  ``proxy_next_upstream_tries 2`` attempts within ``proxy_next_upstream_timeout``. A new colour that refuses,
  resets or answers 502/503/504 costs the client a retry on the old colour, not an error; after one failure
  (``max_fails=1``) nginx sends everything to the backup for ``fail_timeout`` while the watch switches back.
* ``set`` form (server context): the plain ``set`` lines, and the logs. No absorbing: ``proxy_pass`` with a
  variable holding a URL has one address, and an ``upstream`` block (the only place ``backup`` exists) cannot
  be written at server level (docs/nginx.md, "What the watch absorbs").

What clients got is logged as the canary logs it (host/nginx_canary.py): one access log in observe/clients.py's
JSON format, each attempt of a line given to a colour by its port. The upstream form's include holds the
``log_format`` (http level) and logs only the requests proxied to our upstream; the set form's ``log_format``
is in the canary's http-level file next to an include glob. Both restate the user's own access_log lines.
"""
from __future__ import annotations

import re
from typing import Callable

from bluegreen_hooks.config import Config
from bluegreen_hooks.host import nginx
from bluegreen_hooks.host.nginx_canary import (
    _addr_regex,
    _proxied_variable,
    _targets,
    clients_log,
    colour_ports,
    format_name,
)
from bluegreen_hooks.model import Colour, is_deployment_id
from bluegreen_hooks.observe import clients

NEXT_UPSTREAM_TIMEOUT = 10    # seconds: the bound on one request's attempts (proxy_next_upstream_timeout)
FAIL_TIMEOUT = 10             # seconds the new colour is left out after one failed attempt (max_fails=1)
NEXT_UPSTREAM = ("proxy_next_upstream error timeout http_502 http_503 http_504;\nproxy_next_upstream_tries 2;\n"
                 "proxy_next_upstream_timeout {timeout}s;\n")
_BASELINE_RE = re.compile(r"^# bluegreen-hooks: app=(\S+) colour=(blue|green) deployment=\S+ baseline=on\b", re.M)
_WATCH_RE = re.compile(r"^# bluegreen-hooks: app=(\S+) colour=(blue|green) deployment=\S+ watch=(blue|green)\b",
                       re.M)


def render(cfg: Config, new: Colour, old: Colour, deployment_id: str, restated: tuple[str, ...] = (),
           absorb: bool = False) -> str:
    """The include of the watch window: ``new`` serves, ``old`` as its backup in the upstream form, and in the
    set form with ``absorb`` (the upstream groups then live in our http-level file: ``format_file_text``)."""
    if not is_deployment_id(deployment_id):
        raise ValueError(f"bad deployment id {deployment_id!r}")
    head = (f"{nginx.MARK} app={cfg.app} colour={new} deployment={deployment_id} watch={old}\n"
            f"# Written by bluegreen-hooks; edits are replaced at the next switch.\n")
    restate = "".join(f"{line}\n" for line in restated)
    cv, log, fmt = cfg.nginx.colour_variable, clients_log(cfg), format_name(cfg)
    if cfg.nginx.form == "set":
        if absorb:   # the upstream groups are in our http-level file (format_file_text): proxy_pass finds them
            body = "".join(f"set ${var} http://{set_upstream(cfg, i)};\n"
                           for i, (var, _) in enumerate(_targets(cfg, new)))
            body += NEXT_UPSTREAM.format(timeout=NEXT_UPSTREAM_TIMEOUT)
        else:
            body = "".join(f"set ${var} http://{t};\n" for var, t in _targets(cfg, new))
        return head + body + f"set ${cv} {new};\naccess_log {log} {fmt};\n" + restate
    body = f"{clients.log_format_directive(fmt)}\n"
    for (name, t_new), (_, t_old) in zip(_targets(cfg, new), _targets(cfg, old)):
        body += (f"upstream {name} {{\n    server {t_new} max_fails=1 fail_timeout={FAIL_TIMEOUT}s;\n"
                 f"    server {t_old} backup;\n}}\n")
    # the colour that gave the answer is the last address (the header says who answered)
    body += f"map $upstream_addr ${cv} {{\n    {_addr_regex(cfg, old)} {old};\n    default {new};\n}}\n"
    body += _proxied_map(cfg, new)
    body += NEXT_UPSTREAM.format(timeout=NEXT_UPSTREAM_TIMEOUT)
    return head + body + f"access_log {log} {fmt} if=${_proxied_variable(cfg)};\n" + restate


def _proxied_map(cfg: Config, colour: Colour) -> str:
    """The upstream form's access_log condition: log only what is proxied to our upstream(s) of ``colour``."""
    names = [name for name, _ in _targets(cfg, colour)]
    return (f"map $proxy_host ${_proxied_variable(cfg)} {{\n" + "".join(f"    {n} 1;\n" for n in names)
            + "    default \"\";\n}\n")

def render_baseline(cfg: Config, live: Colour, deployment_id: str, restated: tuple[str, ...] = ()) -> str:
    """ApplicationStart's include while the new colour starts (the watch is on): the plain include of ``live``
    (nothing routed differently) and the clients log, so the switch finds ``live``'s latency as clients saw
    it just before (observe/baseline.py). The set form's ``log_format`` is in our http-level file
    (nginx_canary.write_format_file)."""
    head, _, body = nginx.render_include(cfg, live, deployment_id).partition("\n")
    head += " baseline=on\n"
    restate = "".join(f"{line}\n" for line in restated)
    log, fmt = clients_log(cfg), format_name(cfg)
    if cfg.nginx.form == "set":
        return head + body + f"access_log {log} {fmt};\n" + restate
    body += f"{clients.log_format_directive(fmt)}\n" + _proxied_map(cfg, live)
    return head + body + f"access_log {log} {fmt} if=${_proxied_variable(cfg)};\n" + restate


def plain_again(cfg: Config, live: Colour, deployment_id: str) -> bool:
    """The plain include of ``live`` instead of its baseline form (a start that failed, or was killed, before the
    switch), the clients log removed; False (nothing done) when the include is not in ``live``'s baseline form."""
    if include_baseline(cfg, nginx.read_include(cfg)) != live:
        return False
    try:
        nginx.apply(cfg, nginx.render_include(cfg, live, deployment_id), lambda before: "routing unchanged")
    finally:
        remove_logs(cfg)
    return True


def include_baseline(cfg: Config, text: str | None) -> Colour | None:
    """The live colour when the include is in baseline form (for this app), else None."""
    m = _BASELINE_RE.search(text or "")
    if not m or m.group(1) != cfg.app:
        return None
    return "blue" if m.group(2) == "blue" else "green"


def set_upstream(cfg: Config, i: int) -> str:
    """The set form's upstream group for routed service ``i`` during the watch (in our http-level file)."""
    return f"{format_name(cfg)}_watch" + (f"_{i}" if i else "")


def format_file_text(cfg: Config, new: Colour, old: Colour) -> str:
    """The set form's http-level file during the watch: the log format, and one upstream group per routed
    service with ``new`` as its server and ``old`` as the backup (a set-form include is at server level,
    where no ``upstream`` may stand; ``proxy_pass $var`` uses a group whose name the variable holds)."""
    from bluegreen_hooks.host.nginx_canary import format_text

    text = format_text(cfg)
    for i, ((_, t_new), (_, t_old)) in enumerate(zip(_targets(cfg, new), _targets(cfg, old))):
        text += (f"upstream {set_upstream(cfg, i)} {{\n    server {t_new} max_fails=1 fail_timeout={FAIL_TIMEOUT}s;\n"
                 f"    server {t_old} backup;\n}}\n")
    return text


def remove_logs(cfg: Config) -> None:
    from bluegreen_hooks.host import nginx_canary

    nginx_canary.remove_logs(cfg)


def colour_by_port(cfg: Config) -> Callable[[str], str | None]:
    """Which colour an attempt's address is, by its port (every routed service of each colour)."""
    return clients.colour_by_port(colour_ports(cfg))




def include_watch(cfg: Config, text: str | None) -> tuple[Colour, Colour] | None:
    """(new, old) when the include is in watch form (for this app), else None."""
    m = _WATCH_RE.search(text or "")
    if not m or m.group(1) != cfg.app:
        return None
    new: Colour = "blue" if m.group(2) == "blue" else "green"
    old: Colour = "blue" if m.group(3) == "blue" else "green"
    return new, old
