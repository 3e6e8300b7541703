"""Is a zip whole? A truncated or corrupted zip must be reported as damaged, never read as something else.

``zipfile`` looks for the last "end of central directory" record in the file's last 64 KiB; when a
bundle is cut short inside an embedded wheel (stored, not compressed), it finds the *wheel's* record and
happily lists the wheel's files, as if the bundle had data prepended. So besides ``BadZipFile`` we
check that the archive starts at byte 0 (every zip we or ``zip`` write does) and the CRC of every
member (``testzip``). Stdlib only; imported by the local runner and by delivery.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

LOCAL_HEADER = b"PK\x03\x04"


def looks_like_zip(path: Path) -> bool:
    """True when ``path`` starts like a zip (a local file header), whole or not."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == LOCAL_HEADER
    except OSError:
        return False


def damage(path: Path) -> str | None:
    """Why the zip at ``path`` is damaged (one phrase), or None when it is whole. Reads every member."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not infos:
                return "it has no entries" if looks_like_zip(path) else None
            first = min(i.header_offset for i in infos)
            if first != 0:
                return (f"its end is missing (truncated?): the directory found describes {len(infos)} entries "
                        f"starting at byte {first}, not the bundle")
            bad = zf.testzip()
            if bad is not None:
                return f"entry {bad!r} fails its CRC check"
    except zipfile.BadZipFile as exc:
        return str(exc)
    except (EOFError, zlib.error, ValueError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
