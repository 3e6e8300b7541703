"""The effective nginx configuration, read the way nginx reads it: ``nginx -T`` (with the options of
nginx/test) names the main file, crossplane parses the tree from there (includes followed).

A small reader of its own for the canary's access logs and doctor's ``worker_shutdown_timeout`` check;
issue 13 adds host/nginx_conf.py for the same purpose (the lead may unify them).
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bluegreen_hooks.config import Config


def dump_argv(test: Sequence[str]) -> list[str]:
    """``nginx -T`` with the same binary and options as nginx/test (``-t`` → ``-T``, ``-q`` dropped)."""
    argv = [a for a in test if a != "-q"]
    return [("-T" if a == "-t" else a) for a in argv] if "-t" in argv else [argv[0], "-T"]


def main_file(cfg: Config) -> Path | str:
    """The main configuration file nginx reads (from ``nginx -T``), or a string saying why it is unknown."""
    try:
        out = subprocess.run(dump_argv(cfg.nginx.test), capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nginx -T failed: {exc}"
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
