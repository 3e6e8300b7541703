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

What clients got is logged for observe/clients.py. The upstream form writes its own JSON ``log_format``
(the include is at http level, where ``log_format`` may stand) and one access log, each attempt of a line
given to a colour by its port. The set form (server level: no ``log_format`` there) writes the canary's
per-colour ``combined`` logs (host/nginx_canary.py); with one address per request there is one attempt, and
its status says what it was. Both restate the user's own access_log lines as the canary does.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from bluegreen_hooks.config import Config
from bluegreen_hooks.host import nginx
from bluegreen_hooks.host.nginx_canary import _addr_regex, _logs, _targets, log_variable
from bluegreen_hooks.model import COLOURS, Colour, is_deployment_id
from bluegreen_hooks.observe import clients

NEXT_UPSTREAM_TIMEOUT = 10    # seconds: the bound on one request's attempts (proxy_next_upstream_timeout)
FAIL_TIMEOUT = 10             # seconds the new colour is left out after one failed attempt (max_fails=1)
_WATCH_RE = re.compile(r"^# bluegreen-hooks: app=(\S+) colour=(blue|green) deployment=\S+ watch=(blue|green)\b",
                       re.M)


def render(cfg: Config, new: Colour, old: Colour, deployment_id: str, restated: tuple[str, ...] = ()) -> str:
    """The include of the watch window: ``new`` serves (``old`` as the backup in the upstream form)."""
    if not is_deployment_id(deployment_id):
        raise ValueError(f"bad deployment id {deployment_id!r}")
    head = (f"{nginx.MARK} app={cfg.app} colour={new} deployment={deployment_id} watch={old}\n"
            f"# Written by bluegreen-hooks; edits are replaced at the next switch.\n")
    restate = "".join(f"{line}\n" for line in restated)
    cv = cfg.nginx.colour_variable
    if cfg.nginx.form == "set":
        body = "".join(f"set ${var} http://{t};\n" for var, t in _targets(cfg, new))
        body += f"set ${cv} {new};\nset ${log_variable(new)} 1;\nset ${log_variable(old)} \"\";\n"
        return head + body + _logs(cfg) + restate
    body = ""
    for (name, t_new), (_, t_old) in zip(_targets(cfg, new), _targets(cfg, old)):
        body += (f"upstream {name} {{\n    server {t_new} max_fails=1 fail_timeout={FAIL_TIMEOUT}s;\n"
                 f"    server {t_old} backup;\n}}\n")
    # the colour that gave the answer is the last address (the header says who answered)
    body += f"map $upstream_addr ${cv} {{\n    {_addr_regex(cfg, old)} {old};\n    default {new};\n}}\n"
    body += ("proxy_next_upstream error timeout http_502 http_503 http_504;\nproxy_next_upstream_tries 2;\n"
             f"proxy_next_upstream_timeout {NEXT_UPSTREAM_TIMEOUT}s;\n")
    fmt = format_name(cfg)
    body += f"{clients.log_format_directive(fmt)}\naccess_log {log_path(cfg)} {fmt};\n"
    return head + body + restate


def format_name(cfg: Config) -> str:
    return f"bluegreen_{cfg.app.replace('-', '_')}_watch"


def log_path(cfg: Config) -> Path:
    """The upstream form's JSON log of the watch window (in the state directory, like the canary's)."""
    return cfg.state_dir / f"{cfg.app}.watch.log"


def remove_logs(cfg: Config) -> None:
    from bluegreen_hooks.host import nginx_canary

    nginx_canary.remove_logs(cfg)
    log_path(cfg).unlink(missing_ok=True)


def colour_by_port(cfg: Config) -> Callable[[str], str | None]:
    """Which colour an attempt's address is, by its port (every routed service of each colour)."""
    return clients.colour_by_port({c: [p for _, p in _ports(cfg, c)] for c in COLOURS})


def _ports(cfg: Config, colour: Colour) -> list[tuple[str, int]]:
    return [("main", cfg.port(colour))] + [(r.service, r.ports[colour]) for r in cfg.extra_routes]


_FAILURE_OF_STATUS = {499: "gave_up", 502: "reset", 504: "timeout"}


def tally_set(cfg: Config, colour: Colour, start: int) -> clients.Tally:
    """The set form's window of ``colour`` as observe/clients counts it: one attempt per request, its kind
    from the status (499 gave_up, 502 reset or refused, 504 timeout, other 5xx 5xx); no latencies
    (``combined`` has none)."""
    from bluegreen_hooks.host import nginx_canary

    t = nginx_canary.tally(cfg, colour, start)
    out = clients.Tally(attempts=t.requests)
    for status, n in t.statuses.items():
        code = int(status)
        kind = _FAILURE_OF_STATUS.get(code) or ("5xx" if 500 <= code <= 599 else None)
        if kind is not None:
            out.failures[kind] = out.failures.get(kind, 0) + n
    return out


def include_watch(cfg: Config, text: str | None) -> tuple[Colour, Colour] | None:
    """(new, old) when the include is in watch form (for this app), else None."""
    m = _WATCH_RE.search(text or "")
    if not m or m.group(1) != cfg.app:
        return None
    new: Colour = "blue" if m.group(2) == "blue" else "green"
    old: Colour = "blue" if m.group(3) == "blue" else "green"
    return new, old
