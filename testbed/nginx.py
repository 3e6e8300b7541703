"""A real nginx (Debian's) on loopback with its own prefix, config, include directory and pid file.

One instance serves a whole test session; each test adds a *site* (a server block on its own free
port) that includes the test's blue/green include file, exactly like the snippet in docs/nginx.md.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bluegreen_hooks.host.procfs import children, process_start_time
from testbed.ports import free_port

MAIN_CONF = """\
# bluegreen-hooks test bed: a private nginx on loopback
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    keepalive_timeout 30s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "test bed nginx\\n"; }}
    }}
    include {prefix}/sites/*.conf;
}}
"""

# The server block users put in their nginx config (docs/nginx.md), with the include path filled in.
SITE_CONF = """\
server {{
    listen 127.0.0.1:{port};
    set $service_url "";
    set $bluegreen_colour "";
    include {include};
    location / {{
        proxy_pass $service_url;
        proxy_read_timeout 120s;
        add_header X-Bluegreen-Colour $bluegreen_colour always;
    }}
}}
"""


@dataclass
class Site:
    name: str
    port: int
    include: Path
    conf: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Nginx:
    """nginx started with ``-p PREFIX -c PREFIX/nginx.conf -e PREFIX/error.log``."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)
        self.conf = self.prefix / "nginx.conf"
        self.pid_file = self.prefix / "nginx.pid"
        self.error_log = self.prefix / "error.log"
        self.sites_dir = self.prefix / "sites"
        self.port = 0
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"

    # argv lists, as a deploy config takes them
    def argv(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.error_log), *extra]

    @property
    def test_argv(self) -> list[str]:
        return self.argv("-t", "-q")

    @property
    def reload_argv(self) -> list[str]:
        return self.argv("-s", "reload")

    def start(self) -> Nginx:
        for d in (self.prefix, self.sites_dir, self.prefix / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf.write_text(MAIN_CONF.format(prefix=self.prefix, port=self.port))
        subprocess.run(self.argv(), check=True, capture_output=True, text=True)
        self._wait(lambda: self.master_pid() is not None, "nginx to write its pid file")
        return self

    def reload(self) -> None:
        subprocess.run(self.reload_argv, check=True, capture_output=True, text=True)

    def stop(self, timeout: float = 15) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        subprocess.run(self.argv("-s", "quit"), capture_output=True, text=True)
        self._wait(lambda: process_start_time(pid) is None, "nginx to exit", timeout)

    def master_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_start_time(pid) is not None else None

    def worker_pids(self) -> set[int]:
        master = self.master_pid()
        return {pid for pid, _ in children(master)} if master else set()

    def add_site(self, name: str, include: Path, initial: str = "", template: str = SITE_CONF) -> Site:
        """Add a server block on a free port including ``include`` (created with ``initial`` text).

        ``template`` is the server block, formatted with ``port`` and ``include``.
        """
        include = Path(include)
        include.parent.mkdir(parents=True, exist_ok=True)
        if not include.exists():
            include.write_text(initial)
        site = Site(name, free_port(), include, self.sites_dir / f"{name}.conf")
        site.conf.write_text(template.format(port=site.port, include=include))
        self.reload_and_wait()
        return site

    def remove_site(self, site: Site) -> None:
        site.conf.unlink(missing_ok=True)
        self.reload()

    def reload_and_wait(self, timeout: float = 15) -> None:
        """Reload and wait until the workers of the new configuration run (all old ones gone)."""
        old = self.worker_pids()
        self.reload()
        self._wait(lambda: not (old & self.worker_pids()) and self.worker_pids(), "nginx workers to roll", timeout)

    @staticmethod
    def _wait(cond, what: str, timeout: float = 15) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}")

