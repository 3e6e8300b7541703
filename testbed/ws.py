"""A WebSocket app for the long-lived connection tests: Debian's websocketd (with the libraries it links)
added to the busybox root filesystem, imported offline as ``bluegreen-base:websocketd``; the app in
example/ws-app is built on it.
"""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from testbed.images import busybox_binary, rootfs_tar

WS_BASE_TAG = "bluegreen-base:websocketd"
WS_APP_DIR = Path(__file__).resolve().parent.parent / "example" / "ws-app"


def websocketd_files() -> list[str]:
    """/usr/bin/websocketd and every shared library ``ldd`` says it needs (apt-get install websocketd)."""
    binary = "/usr/bin/websocketd"
    if not os.path.exists(binary):
        raise RuntimeError("websocketd is not installed: apt-get install websocketd")
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = [p for line in out.splitlines() for p in line.split() if p.startswith("/")]
    return [binary, *libs]


def ws_rootfs_tar() -> bytes:
    buf = io.BytesIO(rootfs_tar(busybox_binary()))
    with tarfile.open(fileobj=buf, mode="a") as tar:
        for path in websocketd_files():
            real = os.path.realpath(path)
            info = tar.gettarinfo(real, arcname=path.lstrip("/"))
            with open(real, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def ensure_ws_base(client) -> str:
    import docker.errors

    try:
        client.images.get(WS_BASE_TAG)
        return WS_BASE_TAG
    except docker.errors.ImageNotFound:
        pass
    repo, tag = WS_BASE_TAG.split(":")
    client.api.import_image_from_data(ws_rootfs_tar(), repository=repo, tag=tag)
    client.images.get(WS_BASE_TAG)
    return WS_BASE_TAG
