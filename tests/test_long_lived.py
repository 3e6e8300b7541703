"""Long-lived connections through a real nginx during deployments: an SSE stream (busybox CGI) and a WebSocket
(websocketd in a container, the `websockets` client). They survive the switch until the drain ends, then the
old colour is stopped, they close and reconnect to the new colour; 0 failed ordinary requests; nginx's old
worker generations do not pile up."""
from __future__ import annotations

import http.client
import threading
import time
import uuid

import pytest

from bluegreen_hooks.cli import main
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.load import Load
from testbed.ws import WS_APP_DIR, ensure_ws_base
from tests.helpers import Bed, ok, wait_for

# the server block of docs/long-lived.md: WebSocket upgrade passed through, long read timeout
STREAM_SITE = """\
server {{
    listen 127.0.0.1:{port};
    set $service_url "";
    set $bluegreen_colour "";
    include {include};
    location / {{
        proxy_pass $service_url;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $http_connection;
        proxy_read_timeout 3600s;
        add_header X-Bluegreen-Colour $bluegreen_colour always;
    }}
}}
"""
DRAIN = 3


@pytest.fixture
def sbed(nginx, docker_client, app_name, tmp_path):
    site = nginx.add_site(f"s-{uuid.uuid4().hex[:8]}", tmp_path / "conf.d" / "backend-url.inc", template=STREAM_SITE)
    yield Bed(app_name, docker_client, nginx, site, tmp_path)
    nginx.remove_site(site)


class Client:
    """Keeps one stream open, reconnecting when it closes; records (time, "msg"/"closed", version)."""

    def __init__(self, open_stream):
        self.open_stream, self.events, self.stop = open_stream, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                for version in self.open_stream(self.stop):
                    self.events.append((time.monotonic(), "msg", version))
            except Exception as exc:
                self.events.append((time.monotonic(), "error", type(exc).__name__))
                time.sleep(0.1)
            self.events.append((time.monotonic(), "closed", ""))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)

    def versions_after(self, t):
        return [v for at, kind, v in self.events if kind == "msg" and at > t]

    def closes_between(self, a, b):
        return [at for at, kind, _ in self.events if kind == "closed" and a <= at <= b]


def sse(url):
    host, port = url.split("//")[1].split(":")

    def open_stream(stop):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("GET", "/cgi-bin/stream")
            resp = conn.getresponse()
            assert resp.status == 200, resp.status
            while not stop.is_set():
                line = resp.fp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    yield line[6:].split()[0].decode()
        finally:
            conn.close()
    return open_stream


def websocket(url):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    def open_stream(stop):
        with connect(url.replace("http://", "ws://") + "/", open_timeout=10) as ws:
            while not stop.is_set():
                try:
                    msg = ws.recv(timeout=30)
                except ConnectionClosed:
                    return
                yield str(msg).split()[0]
    return open_stream


def _deploy_watched(bundle, dep):
    """Deploy with the switch and the drain timed: (runs, time switched, time done)."""
    runs = ok(deploy(bundle, dep, events=("ApplicationStop", "BeforeInstall", "ApplicationStart")))
    t_switched = time.monotonic()
    runs += ok(deploy(bundle, dep, events=("ValidateService",)))
    return runs, t_switched, time.monotonic()


def _assert_survived_then_reconnected(client, runs, t_switched, t_done, old, new, old_colour):
    validate = runs[-1].output
    assert f"long-lived connection(s) to {old_colour} were still open after the drain timeout" in validate, validate
    assert "the old nginx workers exited" in validate, validate
    # the stream kept coming from the old version after the switch, until the drain ended...
    kept = [at for at, kind, v in client.events if kind == "msg" and v == old and at > t_switched]
    assert kept and kept[-1] - t_switched >= DRAIN - 1, (t_switched, kept)
    # ...then it closed, and the reconnected stream comes from the new version
    assert client.closes_between(t_switched + DRAIN - 1, t_done + 1), client.events[-10:]
    wait_for(lambda: new in client.versions_after(t_done), timeout=15, what=f"the stream to reconnect to {new}")


def _settled_workers(nginx):
    return wait_for(lambda: len(nginx.worker_pids()) == 2 and nginx.worker_pids(), timeout=30,
                    what="nginx to run just its 2 workers")


def test_sse_stream_survives_the_switch_then_reconnects_and_workers_do_not_pile_up(sbed, capsys):
    """Five deployments with an SSE stream always open and ordinary load: each time the stream keeps coming from
    the old colour until the drain timeout, is closed by stopping it, reconnects to the new colour; 0 failed
    requests; afterwards nginx runs as many workers as before; doctor then warns about worker_shutdown_timeout."""
    cfg = {"deploy": {"drain_timeout": DRAIN}}
    ok(deploy(sbed.bundle("v1", **cfg), "d-1"))
    baseline = len(_settled_workers(sbed.nginx))
    with Client(sse(sbed.url)) as client, Load(sbed.url + "/", threads=2) as load:
        wait_for(lambda: client.versions_after(0), what="the stream's first event")
        colours = ["blue", "green"]
        for n in range(2, 7):
            runs, t_sw, t_done = _deploy_watched(sbed.bundle(f"v{n}", **cfg), f"d-{n}")
            _assert_survived_then_reconnected(client, runs, t_sw, t_done, f"v{n - 1}", f"v{n}", colours[n % 2])
    assert load.result.failed == 0, load.result.summary()
    assert len(_settled_workers(sbed.nginx)) == baseline
    st = sbed.state()
    assert st["long_lived"]["open"] >= 1 and st["long_lived"]["deployment"] == "d-6"
    capsys.readouterr()
    main(["doctor", "--state-dir", str(sbed.state_dir)])
    out = capsys.readouterr().out
    assert "worker_shutdown_timeout is unset and deployment d-6 closed" in out, out


def test_websocket_survives_the_switch_then_reconnects_to_the_new_colour(sbed, docker_client):
    """A WebSocket (websocketd) through nginx: it keeps talking to the old colour after the switch until the drain
    timeout, then closes when the old colour stops and reconnects to the new one; 0 failed ordinary requests."""
    ensure_ws_base(docker_client)

    def bundle(version):
        cfg = bed_config(sbed.app, sbed.nginx, sbed.site, sbed.ports, sbed.state_dir, version,
                         deploy={"drain_timeout": DRAIN})
        return make_bundle(sbed.tmp / f"ws-{version}-{uuid.uuid4().hex[:6]}", cfg, app_dir=WS_APP_DIR)

    ok(deploy(bundle("v1"), "d-1"))
    baseline = len(_settled_workers(sbed.nginx))
    with Client(websocket(sbed.url)) as client, Load(sbed.url + "/", threads=2) as load:
        wait_for(lambda: client.versions_after(0), what="the socket's first message")
        for n, old_colour in ((2, "blue"), (3, "green")):
            runs, t_sw, t_done = _deploy_watched(bundle(f"v{n}"), f"d-{n}")
            _assert_survived_then_reconnected(client, runs, t_sw, t_done, f"v{n - 1}", f"v{n}", old_colour)
    assert load.result.failed == 0, load.result.summary()
    assert len(_settled_workers(sbed.nginx)) == baseline
