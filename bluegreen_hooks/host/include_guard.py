"""Which file may ``nginx/include`` name? Only one that is ours to replace.

Every switch replaces the include whole (and a failed verify puts the old text back). So the path must
name a file that is absent, empty, or already an include we understand:

* one we wrote: its first line is our header ``# bluegreen-hooks: app=<this app> colour=…``;
* the legacy ``backend-url.inc`` of deploy.sh: only ``set $var http://host:port;`` lines (one per routed
  service; blank and ``#`` comment lines allowed around them).

Anything else (``/etc/passwd``, another app's include, a server block, a folder, a device) is refused
before anything changes, naming the key and the path.
"""
from __future__ import annotations

import os
import re
import stat

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import files

MAX_INCLUDE_BYTES = 64 * 1024
# our header, with the attributes a canary step or the maintenance page add (canary=…, maintenance=…)
_HEADER_RE = re.compile(r"# bluegreen-hooks: app=(\S+) colour=(?:blue|green)(?: deployment=\S+)?(?: [a-z-]+=\S+)*")
_LEGACY_RE = re.compile(r"set \$[A-Za-z_][A-Za-z0-9_]* https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5};")


def not_ours(cfg: Config, text: str) -> str | None:
    """Why ``text`` is not an include we may replace (None: empty, ours, or the legacy one-line form)."""
    lines = [ln.strip() for ln in text.splitlines()]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body and not any(lines):
        return None
    first = next((ln for ln in lines if ln), "")
    header = _HEADER_RE.fullmatch(first)
    if header:
        if header.group(1) != cfg.app:
            return f"it is the include of app {header.group(1)!r}, not of {cfg.app!r}"
        return None
    if body and len(body) <= 16 and all(_LEGACY_RE.fullmatch(ln) for ln in body):
        return None
    if not body:
        return "it holds only comments, none of them our header"
    return f"it is not an include bluegreen-hooks wrote (first line: {body[0][:40]!r})"


def check(cfg: Config) -> None:
    """Refuse (ConfigError, exit 2) an ``nginx/include`` path whose file we must not replace."""
    path = cfg.nginx.include
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"nginx/include: cannot read {path}: {exc.strerror}") from exc
    why = None
    if not stat.S_ISREG(st.st_mode):
        why = "it is not a regular file"
    elif st.st_size > MAX_INCLUDE_BYTES:
        why = f"it is {st.st_size} bytes, far larger than an include bluegreen-hooks writes"
    else:
        try:
            why = not_ours(cfg, files.read_text(path, "nginx/include", MAX_INCLUDE_BYTES))
        except UnicodeDecodeError:
            why = "it is not UTF-8 text"
        except OSError as exc:
            raise ConfigError(f"nginx/include: cannot read {path}: {exc.strerror}") from exc
    if why:
        raise ConfigError(f"nginx/include: {path} is not ours to replace: {why}; name a new or empty file "
                          f"(see docs/nginx.md)")
