"""The runtime a bundle carries: pinned pure-Python wheels (downloaded once into a cache) and their requirements.txt."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from bluegreen_hooks.errors import DeliveryError

# The runtime dependencies carried in a bundle: exact pins (reproducible), all pure-Python wheels that
# install on Python 3.9+ (tenacity 9.1.3+ needs 3.10; 9.1.2 is the last for 3.9). Update together.
RUNTIME_WHEELS: tuple[tuple[str, str, str], ...] = (
    ("certifi", "2026.10.19.post1", ""),
    ("charset-normalizer", "3.5.3", ""),
    ("crossplane", "0.5.8", ""),
    ("docker", "7.2.0", ""),
    ("idna", "3.20", ""),
    ("prometheus-client", "0.26.0", ""),
    ("requests", "2.32.5", ""),
    ("tenacity", "9.1.2", ""),
    ("tomli", "2.5.0", 'python_version < "3.11"'),
    ("urllib3", "2.6.3", ""),
)
WHEEL_CACHE_ENV = "BLUEGREEN_WHEEL_CACHE"
DEFAULT_WHEEL_CACHE = Path.home() / ".cache" / "bluegreen-hooks" / "wheels"


def _wheel_prefix(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _find_wheel(cache: Path, name: str, version: str) -> Path | None:
    prefix = _wheel_prefix(name, version)
    for p in sorted(cache.glob("*.whl")) if cache.is_dir() else ():
        if p.name.lower().startswith(prefix) and p.name.endswith("-none-any.whl"):
            return p
    return None


def wheel_cache(path: Path | str | None = None) -> Path:
    """The wheel cache: ``path``, else $BLUEGREEN_WHEEL_CACHE, else ~/.cache/bluegreen-hooks/wheels."""
    return Path(path or os.environ.get(WHEEL_CACHE_ENV) or DEFAULT_WHEEL_CACHE)


def _download(cache: Path, missing: Sequence[tuple[str, str]], out: TextIO) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    print(f"bundle: downloading {len(missing)} wheel(s) into {cache}", file=out, flush=True)
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--python-version", "3.9", "--implementation", "py", "--abi", "none", "--platform", "any",
            "--dest", str(cache), *(f"{n}=={v}" for n, v in missing)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        err = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
        raise DeliveryError(f"bundle: pip download of {', '.join(f'{n}=={v}' for n, v in missing)} failed: "
                            f"{err[-1] if err else proc.returncode}; check network access to PyPI, "
                            f"or put the wheels in {cache}")


def runtime_wheels(cache: Path, pins: Sequence[tuple[str, str, str]] = RUNTIME_WHEELS,
                   out: TextIO | None = None) -> list[tuple[Path, str]]:
    """The pinned runtime wheels as (file, marker), downloaded into ``cache`` once (pip, PyPI)."""
    missing = [(n, v) for n, v, _ in pins if _find_wheel(cache, n, v) is None]
    if missing:
        _download(cache, missing, out or sys.stderr)
    found = []
    for n, v, marker in pins:
        p = _find_wheel(cache, n, v)
        if p is None:
            raise DeliveryError(f"bundle: no pure-Python wheel for {n}=={v} in {cache}")
        found.append((p, marker))
    return found


def requirements_txt(wheels: Sequence[tuple[str, bytes, str]]) -> str:
    """wheels/requirements.txt: name==version ; marker --hash=sha256:… (pip's hash-checking mode)."""
    lines = ["# runtime of the bluegreen-hooks bundle; installed offline by hooks/launch"]
    for name, data, marker in sorted(wheels):
        dist, version = name.split("-")[:2]
        req = f"{dist}=={version}" + (f" ; {marker}" if marker else "")
        lines.append(f"{req} --hash=sha256:{hashlib.sha256(data).hexdigest()}")
    return "\n".join(lines) + "\n"
