"""How the operator commands write times, errors and JSON."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any


def utc(ts: float | None) -> str:
    """``2026-11-26 07:09:48Z``, or ``-`` for no time."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(ts: float | None, now: float | None = None) -> str:
    """``42s ago``, ``3m ago``, ``5h07m ago``, ``2d ago``, or ``-`` for no time."""
    if not ts:
        return "-"
    s = max(0, int((time.time() if now is None else now) - ts))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m ago"
    return f"{s // 86400}d ago"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none), at most 200 characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def dump(obj: Any) -> None:
    """Print ``obj`` as indented JSON with sorted keys."""
    print(json.dumps(obj, indent=2, sort_keys=True))
