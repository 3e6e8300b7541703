"""Helpers for tests: poll with a deadline (never a bare sleep), HTTP GET, the ``Bed`` of one app."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

from testbed.bundle import bed_config, make_bundle
from testbed.ports import free_port


def wait_for(cond, timeout: float = 30, interval: float = 0.05, what: str = "condition"):
    """Call ``cond()`` until it returns something truthy; return that value or fail after ``timeout``."""
    end = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < end:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may raise while not yet true
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def get(url: str, timeout: float = 5) -> tuple[int, str, dict]:
    """GET ``url``; return (status, body, headers). HTTP errors are returned, not raised."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(url, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class Bed:
    """One app's deployments on the shared test bed: its ports, state dir, bundles and what runs.

    ``bed.bundle("v2", nginx={"validate_path": "/missing"})`` lays out a bundle of the example app at
    that version whose bluegreen.toml points at this test's nginx site, ports and state dir.
    """

    def __init__(self, app, client, server, site, tmp_path):
        self.app, self.client, self.nginx, self.site, self.tmp = app, client, server, site, tmp_path
        self.ports = (free_port(), free_port())
        self.state_dir = tmp_path / "state"
        self.url = site.url

    def bundle(self, version="v1", name=None, **overrides):
        cfg = bed_config(self.app, self.nginx, self.site, self.ports, self.state_dir, version, **overrides)
        return make_bundle(self.tmp / (name or f"bundle-{version}-{uuid.uuid4().hex[:6]}"), cfg)

    def state(self):
        return json.loads((self.state_dir / f"{self.app}.json").read_text())

    def containers(self, colour=None):
        labels = [f"bluegreen.app={self.app}"] + ([f"bluegreen.colour={colour}"] if colour else [])
        return self.client.containers.list(all=True, filters={"label": labels})

    def running_colours(self):
        return sorted(c.labels["bluegreen.colour"] for c in self.containers() if c.status == "running")

    def include(self):
        return self.site.include.read_text()



def ok(runs):
    """Assert that every hook run succeeded (printing all their output if not); return the runs."""
    assert runs and all(r.returncode == 0 for r in runs), \
        "\n".join(f"--- {r.event} ({r.returncode})\n{r.output}" for r in runs)
    return runs
