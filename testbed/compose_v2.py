"""docker-compose v2 (the Go program) for the tests and benches that run a compose app with it.

Debian 12 ships only docker-compose 1.29 (a Python program, ~0.5 s of CPU per run); many hosts (Ubuntu 24.04,
Amazon Linux with Docker's plugin, Docker Desktop) have v2. Debian 13 (trixie) packages v2 as a static Go
binary that runs on Debian 12 (it needs glibc >= 2.34). ``ensure`` fetches that package from the Debian mirror
apt uses, checks it against the SHA-256 the suite's Packages index gives, and keeps only the binary, in
``.venv/libexec/docker-compose-v2`` (per clone, so the host's `docker compose` detection is unchanged: tests
point compose/command at it).

    .venv/bin/python -m testbed.compose_v2     # fetches it if missing; prints its path and version
"""
from __future__ import annotations

import hashlib
import lzma
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from testbed.jvm import debian_mirror

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / ".venv" / "libexec" / "docker-compose-v2"
SUITE = "trixie"
PACKAGE = "docker-compose"
MEMBER = "./usr/libexec/docker/cli-plugins/docker-compose"


def package_entry(index: str, package: str = PACKAGE) -> dict[str, str]:
    """The ``Filename``, ``SHA256`` and ``Version`` of ``package`` in a Debian Packages index."""
    for stanza in index.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") == package:
            return fields
    raise RuntimeError(f"{package} is not in the Packages index")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as resp:   # the Debian mirror apt uses
        return resp.read()


def ensure(say=print) -> Path:
    """The v2 binary, fetched and checked if it is not there yet."""
    if BINARY.is_file() and os.access(BINARY, os.X_OK):
        return BINARY
    mirror = debian_mirror().rstrip("/")
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    index = lzma.decompress(_get(f"{mirror}/dists/{SUITE}/main/binary-{arch}/Packages.xz")).decode()
    entry = package_entry(index)
    deb = _get(f"{mirror}/{entry['Filename']}")
    digest = hashlib.sha256(deb).hexdigest()
    if digest != entry["SHA256"]:
        raise RuntimeError(f"{entry['Filename']}: SHA-256 {digest}, the index says {entry['SHA256']}")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "p.deb").write_bytes(deb)
        subprocess.run(["dpkg-deb", "-x", str(Path(tmp) / "p.deb"), str(Path(tmp) / "x")], check=True)
        part = BINARY.with_suffix(".part")
        os.replace(Path(tmp) / "x" / MEMBER, part)
        part.chmod(0o755)
        os.replace(part, BINARY)
    say(f"compose v2: {PACKAGE} {entry['Version']} from {SUITE} -> {BINARY}")
    return BINARY


def version(binary: Path) -> str:
    return subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True,
                          check=True).stdout.strip()


if __name__ == "__main__":
    path = ensure()
    print(path, version(path))
    sys.exit(0)
