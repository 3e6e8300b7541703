"""Offline images: a busybox base made with ``docker import``, and the example app built on it.

Run ``.venv/bin/python -m testbed.images`` to create the base tag by hand (it needs Debian's busybox-static).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BASE_TAG = "bluegreen-base:busybox"
EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example" / "app"


def busybox_binary() -> str:
    """Path of a statically linked busybox (Debian's busybox-static installs /bin/busybox)."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox") or ""):
        if candidate and os.path.exists(candidate):
            out = subprocess.run(["file", "-L", candidate], capture_output=True, text=True).stdout \
                if shutil.which("file") else "statically linked"
            if "dynamically" not in out:
                return candidate
    raise RuntimeError("no static busybox found: apt-get install busybox-static")


def rootfs_tar(busybox: str) -> bytes:
    """A minimal root filesystem: /bin/busybox plus a symlink per applet, /tmp, /etc/passwd."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "root", "usr", "usr/bin", "usr/sbin", "sbin"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def ensure_base_image(client) -> str:
    """Create BASE_TAG with ``docker import`` unless it exists; return the tag."""
    import docker.errors

    try:
        client.images.get(BASE_TAG)
        return BASE_TAG
    except docker.errors.ImageNotFound:
        pass
    repo, tag = BASE_TAG.split(":")
    client.api.import_image_from_data(rootfs_tar(busybox_binary()), repository=repo, tag=tag)
    client.images.get(BASE_TAG)
    return BASE_TAG


def build_example(client, version: str, tag: str | None = None) -> str:
    """Build the example app at ``version`` (tag ``bluegreen-example:<version>``); return the tag."""
    ensure_base_image(client)
    tag = tag or f"bluegreen-example:{version}"
    client.images.build(path=str(EXAMPLE_DIR), tag=tag, buildargs={"APP_VERSION": version}, rm=True,
                        network_mode="host")
    return tag


if __name__ == "__main__":
    import docker

    print(ensure_base_image(docker.from_env()))
    sys.exit(0)


def remove_app_images(client, app: str) -> None:
    """The images the app's deployments built or tagged (``bluegreen-<app>:<id>``, compose's per-release
    ``bluegreen-<app>/<service>:<id>``, and ``bluegreen-<app>-<service>:<id>`` of releases recorded before):
    left behind, they pile up in the daemon (thousands over a few runs), and listing or building gets slower
    for everything after. The list call, not ``images.list()``,
    which inspects every image."""
    from docker.errors import APIError

    for pattern in (f"bluegreen-{app}", f"bluegreen-{app}-*", f"bluegreen-{app}/*"):
        for img in client.api.images(filters={"reference": pattern}):
            for tag in img.get("RepoTags") or []:
                if tag.startswith((f"bluegreen-{app}:", f"bluegreen-{app}-", f"bluegreen-{app}/")):
                    with contextlib.suppress(APIError):   # gone meanwhile
                        client.api.remove_image(tag, force=True)
