"""A load-balancer stand-in for fleet tests: an nginx in the root network namespace whose upstream is the
hosts' unix sockets, with passive health checks (``max_fails``/``fail_timeout``, ``proxy_next_upstream``).

Registration is a members file (JSON) rendered into the upstream: a registered host is a ``server`` line,
a deregistered one the same line marked ``down``, a host never registered is absent. ``deregister`` and
``register`` are what CodeDeploy's BlockTraffic / AllowTraffic do to an instance behind an ELB; the
emulator runs them as the instances' ``block`` / ``allow`` commands (instance id appended):

    python -m testbed.balancer DIR deregister|register INSTANCE_ID

Both rewrite the upstream under a lock, reload the balancer and wait until the old workers have exited:
an old worker leaves only when its in-flight requests are done (a graceful reload), so when
``deregister`` returns no request through the balancer is still on that host (the ELB's "deregistration
delay", bounded here by ``worker_shutdown_timeout``).
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from testbed.nginx import Nginx
from testbed.ports import free_port

LB_CONF = """\
# bluegreen-hooks fleet test bed: the load balancer (root network namespace)
worker_processes 1;
worker_shutdown_timeout 30s;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    log_format lb '$msec $upstream_addr $status $upstream_status';
    access_log {prefix}/access.log lb;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    upstream fleet {{
        include {prefix}/upstream.conf;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fleet;
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries 0;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""
# passive health checks: a host that fails once is left out for 2 s
SERVER = "server unix:{sock} max_fails=1 fail_timeout=2s{down};  # {id}\n"


class Balancer(Nginx):
    """The balancer's nginx (``prefix`` holds its config, members.json and upstream.conf)."""

    def __init__(self, prefix: Path) -> None:
        super().__init__(prefix)
        self.members_file = self.prefix / "members.json"
        self.upstream = self.prefix / "upstream.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start_with(self, sockets: dict[str, Path], registered: list[str]) -> Balancer:
        """Start with these hosts (instance id -> unix socket), ``registered`` ones in the upstream."""
        for d in (self.prefix, self.prefix / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf.write_text(LB_CONF.format(prefix=self.prefix, port=self.port))
        members = {"sockets": {k: str(v) for k, v in sockets.items()}, "registered": list(registered), "down": []}
        self.members_file.write_text(json.dumps(members, indent=1))
        self.upstream.write_text(render(members))
        import subprocess

        subprocess.run(self.argv(), check=True, capture_output=True, text=True)
        self._wait(lambda: self.master_pid() is not None, "the balancer to write its pid file")
        return self

    def members(self) -> dict:
        return json.loads(self.members_file.read_text())

    def serving(self) -> list[str]:
        """The instance ids the balancer sends requests to now."""
        m = self.members()
        return [i for i in m["registered"] if i not in m["down"]]

    def change(self, action: str, instance: str) -> None:
        """``deregister`` / ``register`` an instance; return when no old worker (and request) is left."""
        with open(self.prefix / "members.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            m = self.members()
            if instance not in m["sockets"]:
                raise SystemExit(f"balancer: unknown instance {instance!r} (known: {', '.join(m['sockets'])})")
            if action == "deregister":
                m["down"] = sorted(set(m["down"]) | {instance})
            elif action == "register":
                m["down"] = [i for i in m["down"] if i != instance]
                if instance not in m["registered"]:
                    m["registered"].append(instance)
            else:
                raise SystemExit(f"balancer: unknown action {action!r} (deregister or register)")
            tmp = self.members_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(m, indent=1))
            tmp.replace(self.members_file)
            self.upstream.write_text(render(m))
            self.reload_and_wait(timeout=60)


def render(members: dict) -> str:
    """upstream.conf: one server line per registered host (``down`` when deregistered)."""
    lines = [SERVER.format(sock=members["sockets"][i], id=i, down=" down" if i in members["down"] else "")
             for i in members["registered"]]
    return "".join(lines) or "server 127.0.0.1:9 down;  # no host registered\n"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m testbed.balancer DIR deregister|register INSTANCE_ID", file=sys.stderr)
        return 2
    prefix, action, instance = Path(argv[0]), argv[1], argv[2]
    t0 = time.monotonic()
    Balancer(prefix).change(action, instance)
    with open(prefix / "changes.log", "a") as log:
        log.write(f"{time.time():.3f} {action} {instance} {time.monotonic() - t0:.3f} "
                  f"{os.environ.get('DEPLOYMENT_ID', '-')}\n")
    print(f"balancer: {action} {instance} done in {time.monotonic() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
