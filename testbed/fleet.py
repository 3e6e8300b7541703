"""A fleet of hosts on one machine, for CodeDeploy fleet tests (run as root).

Each host is a network namespace with its own loopback and, in it:
* its own Docker daemon (own data root, exec root, socket; ``--bridge=none --iptables=false --ip-masq=false``),
  started with ``nsenter --net`` (``ip netns exec`` would remount /sys and hide the cgroups from dockerd),
  with the busybox base image imported from a rootfs (testbed.images: nothing shared with other daemons);
* its own nginx, listening on 127.0.0.1 inside the namespace and on a unix socket in a shared folder
  (the balancer's way in: no address outside loopback is ever used);
* its own state dir (``BLUEGREEN_STATE_DIR`` in its agent's environment).

Every host sees the same paths: the agent of host N runs under
``ip netns exec NS unshare --uts sh -c 'hostname hostN; mount --bind <host dir> <view>; exec …'``, so one
bluegreen.toml (nginx include, pid file, ports) is right on every host, as one revision must be. The
balancer (testbed.balancer) runs in the root namespace; its ``deregister``/``register`` are the instances'
``block``/``allow`` commands.

    fleet = Fleet(Path(tempfile.mkdtemp(prefix="bghf-", dir="/tmp")), n=3).start()
    instances = {"web": fleet.instances()}        # the emulator's CDEMU_INSTANCES entry for a group
    ...
    assert fleet.stop() == []                      # the leftovers (namespaces, daemons, mounts, processes)
"""
from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed import dockerd, images
from testbed.balancer import Balancer
from testbed.bundle import ROOT
from testbed.nginx import Nginx

SITE_PORT, PORTS = 8080, (8081, 8082)   # the same on every host: each has its own loopback
HOST_CONF = """\
# bluegreen-hooks fleet test bed: the nginx of {name} (its own network namespace)
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    server {{
        listen 127.0.0.1:{port};
        listen unix:{sock};
        set $service_url "";
        set $bluegreen_colour "";
        include {include};
        location / {{
            proxy_pass $service_url;
            proxy_read_timeout 60s;
            add_header X-Bluegreen-Colour $bluegreen_colour always;
            add_header X-Fleet-Host {name} always;
        }}
    }}
}}
"""


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket (the way the balancer reaches a host)."""

    def __init__(self, path: str, timeout: float = 5) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


@dataclass
class Host:
    name: str                    # host1 … (its hostname inside its UTS namespace)
    netns: str                   # the network namespace (unique on this machine)
    dir: Path                    # everything of this host; bound onto the fleet's view for its agent
    view: Path
    sock: Path                   # its nginx's unix socket, in the shared folder
    daemon: subprocess.Popen | None = None
    nginx: Nginx | None = None

    @property
    def instance_id(self) -> str:
        return f"i-{self.name}"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    def nsenter(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *argv]

    def prefix(self) -> list[str]:
        """The agent's command prefix: this host's network, hostname and files (the view)."""
        script = f'hostname {self.name} && mount --bind {self.dir} {self.view} && exec "$0" "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "/bin/sh", "-c", script]

    def get(self, path: str = "/", timeout: float = 5) -> tuple[int, str, str]:
        """(status, body, X-Bluegreen-Colour) of a request to this host's nginx, through its unix socket."""
        conn = UnixHTTPConnection(str(self.sock), timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode().strip(), resp.getheader("X-Bluegreen-Colour", "")
        finally:
            conn.close()

    def version(self) -> str:
        status, body, _ = self.get()
        return body if status == 200 else f"HTTP {status}"

    def client(self, timeout: int = 120) -> Any:
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)


@dataclass
class Fleet:
    root: Path                   # short (unix socket paths): e.g. /tmp/bghf-XXXX
    n: int = 3
    tag: str = ""                # namespace names: bgh<tag>h<N> (default: this process's pid)
    hosts: list[Host] = field(default_factory=list)
    balancer: Balancer | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.tag = self.tag or str(os.getpid())
        self.view = self.root / "view"
        self.shared = self.root / "sockets"
        self.hosts = [Host(f"host{i}", f"bgh{self.tag}h{i}", self.root / f"host{i}", self.view,
                           self.shared / f"host{i}.sock") for i in range(1, self.n + 1)]

    # ----------------------------------------------------------------------------------------- start/stop
    def start(self, registered: int | None = None) -> Fleet:
        """Start every host and the balancer (the first ``registered`` hosts in it; default all)."""
        if os.geteuid() != 0:
            raise RuntimeError("a fleet needs root (network namespaces, dockerd, mounts)")
        for d in (self.root, self.view, self.shared):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)               # nginx workers (nobody) reach the sockets through these
        try:
            for h in self.hosts:
                self._start_host(h)
            for h in self.hosts:
                self._await_host(h)
            socks = {h.instance_id: h.sock for h in self.hosts}
            first = self.hosts[:self.n if registered is None else registered]
            self.balancer = Balancer(self.root / "lb").start_with(socks, [h.instance_id for h in first])
        except BaseException:
            self.stop()
            raise
        return self

    def _start_host(self, h: Host) -> None:
        subprocess.run(["ip", "netns", "add", h.netns], check=True, capture_output=True, text=True)
        subprocess.run(["ip", "netns", "exec", h.netns, "ip", "link", "set", "lo", "up"], check=True)
        for d in (h.dir, h.state_dir, h.dir / "conf.d"):
            d.mkdir(parents=True, exist_ok=True)
        h.dir.chmod(0o755)
        (h.dir / "conf.d" / "backend.inc").touch()
        argv = h.nsenter("dockerd", "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
                         f"--data-root={h.dir}/docker", f"--exec-root={h.dir}/x", f"--pidfile={h.dir}/docker.pid",
                         "-H", h.docker_host, "--containerd-namespace", h.netns,
                         "--containerd-plugins-namespace", f"{h.netns}p")
        with open(h.dir / "dockerd.log", "ab") as log:
            h.daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        ngx = Nginx(h.dir / "nginx")
        (ngx.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        ngx.port = SITE_PORT
        ngx.conf.write_text(HOST_CONF.format(name=h.name, prefix=ngx.prefix, port=SITE_PORT, sock=h.sock,
                                             include=h.dir / "conf.d" / "backend.inc"))
        subprocess.run(h.nsenter(*ngx.argv()), check=True, capture_output=True, text=True)
        h.nginx = ngx

    def _await_host(self, h: Host, deadline_s: float = 90) -> None:
        end = time.monotonic() + deadline_s
        while not dockerd.answers(h.docker_host, timeout=1):
            if h.daemon is not None and h.daemon.poll() is not None:
                raise RuntimeError(f"dockerd of {h.name} exited with {h.daemon.returncode}; see {h.dir}/dockerd.log")
            if time.monotonic() > end:
                raise RuntimeError(f"dockerd of {h.name} did not answer in {deadline_s:.0f}s")
            time.sleep(0.1)
        with contextlib.closing(h.client()) as client:
            images.ensure_base_image(client)

    def stop(self) -> list[str]:
        """Stop everything this fleet started; return what is left behind (should be [])."""
        if self.balancer is not None:
            with contextlib.suppress(Exception):
                self.balancer.stop()
        for h in self.hosts:
            self._stop_host(h)
        left = self.leftovers()
        if not left:
            shutil.rmtree(self.root, ignore_errors=True)
        return left

    def _stop_host(self, h: Host) -> None:
        if h.daemon is not None and h.daemon.poll() is None:
            with contextlib.suppress(Exception), contextlib.closing(h.client(timeout=30)) as client:
                for c in client.containers.list(all=True, ignore_removed=True):
                    c.remove(force=True)
        if h.nginx is not None:
            with contextlib.suppress(Exception):
                h.nginx.stop()
        if h.daemon is not None and h.daemon.poll() is None:
            h.daemon.send_signal(signal.SIGTERM)
            try:
                h.daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(h.daemon.pid, signal.SIGKILL)
                h.daemon.wait(10)
        # dockerd leaves its bind mount of the namespace (<exec root>/netns/default) behind when it exits
        for point in reversed(self._mounts(h.dir)):
            subprocess.run(["umount", point], capture_output=True, text=True)
        if Path(f"/run/netns/{h.netns}").exists():
            subprocess.run(["ip", "netns", "del", h.netns], capture_output=True, text=True)

    @staticmethod
    def _mounts(under: Path) -> list[str]:
        points = [m.split()[4] for m in Path("/proc/self/mountinfo").read_text().splitlines()]
        return [p for p in points if p == str(under) or p.startswith(f"{under}/")]

    def leftovers(self) -> list[str]:
        """Namespaces, mounts and processes of this fleet that still exist."""
        left = [f"network namespace {h.netns}" for h in self.hosts if Path(f"/run/netns/{h.netns}").exists()]
        left += [f"mount {p}" for p in self._mounts(self.root)]
        root = str(self.root).encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if root in cmd or f"bgh{self.tag}h".encode() in cmd:
                    text = cmd.replace(b"\0", b" ").decode(errors="replace")[:120]
                    left.append(f"process {pid}: {text}")
        return left

    # ------------------------------------------------------------------------------------------ for tests
    def instances(self, hosts: list[Host] | None = None, balancer: bool = True,
                  env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The instances of a deployment group, as the emulator's instances file takes them."""
        lb = ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "testbed.balancer", str(self.root / "lb")]
        out = []
        for h in hosts or self.hosts:
            item: dict[str, Any] = {"id": h.instance_id, "prefix": h.prefix(), "env": {
                "DOCKER_HOST": h.docker_host, "BLUEGREEN_STATE_DIR": str(h.state_dir),
                "BLUEGREEN_INSTANCE_ID": h.instance_id, **(env or {})}}
            if balancer:
                item.update(block=[*lb, "deregister"], allow=[*lb, "register"])
            out.append(item)
        return out

    def config(self, app: str, version: str, **overrides: Any) -> dict:
        """One bluegreen.toml (as a dict) that is right on every host: paths in the view, ports per namespace."""
        from testbed.bundle import merge

        ngx = Nginx(self.view / "nginx")
        cfg = {
            "app": app,
            "colours": {"blue": PORTS[0], "green": PORTS[1]},
            "container": {"build": "app", "build_args": {"APP_VERSION": version}, "build_network": "host",
                          "env": {"HOST": "127.0.0.1"}, "stop_grace_period": 2},
            "health": {"deadline": 60, "interval": 0.05, "max_interval": 0.2},
            "nginx": {"include": str(self.view / "conf.d" / "backend.inc"), "test": ngx.test_argv,
                      "reload": ngx.reload_argv, "pid_file": str(ngx.pid_file),
                      "public_url": f"http://127.0.0.1:{SITE_PORT}"},
            "deploy": {"state_dir": str(self.view / "state"), "drain_timeout": 10},
        }
        return merge(cfg, overrides)

    def versions(self) -> dict[str, str]:
        return {h.name: h.version() for h in self.hosts}
