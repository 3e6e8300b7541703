"""The effective nginx configuration as files: ``nginx -T`` (nginx/dump, run by host/nginx_conf.dump)
names the main file, crossplane parses the tree from there with its includes followed — what the canary
needs to restate the user's access_log lines, and doctor to read ``worker_shutdown_timeout``.
(host/nginx_conf.py analyses the same dump as one tree, for the routing checks.)
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import NginxError


def main_file(cfg: Config) -> Path | str:
    """The main configuration file nginx reads (from ``nginx -T``), or a string saying why it is unknown."""
    from bluegreen_hooks.host import nginx_conf

    try:
        out = nginx_conf.dump(cfg)
    except NginxError as exc:
        return str(exc)
    m = re.search(r"^# configuration file (\S+):$", out, re.M)
    return Path(m.group(1)) if m else "nginx -T printed no configuration file"


def parse(main: Path) -> list[dict[str, Any]]:
    """crossplane's parse of the tree rooted at ``main``: one entry per file, with ``parsed`` directives."""
    import crossplane

    payload = crossplane.parse(str(main), catch_errors=True, comments=False, check_ctx=False, check_args=False)
    return list(payload.get("config", []))


def main_directive(cfg: Config, name: str) -> list[str] | str | None:
    """The args of directive ``name`` in the main context (``None`` when unset; a string: why unknown)."""
    main = main_file(cfg)
    if isinstance(main, str):
        return main
    files = parse(main)
    block = files[0].get("parsed", []) if files else []
    for d in block:
        if d["directive"] == name:
            return list(d.get("args", []))
        for i in d.get("includes") or []:
            for inner in files[i].get("parsed", []):
                if inner["directive"] == name:
                    return list(inner.get("args", []))
    return None
