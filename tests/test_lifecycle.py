"""The zero-downtime lifecycle against real Docker + nginx, under continuous load."""
from __future__ import annotations

import json
import threading
import uuid

import pytest

from testbed.bundle import bed_config, deploy, make_bundle, run_hook
from testbed.load import Load
from testbed.ports import free_port
from tests.helpers import get, wait_for


@pytest.fixture
def bed(docker_client, nginx, site, app_name, tmp_path):
    """Everything one app's deployments need: ports, state dir, and a bundle factory."""

    class Bed:
        app = app_name
        ports = (free_port(), free_port())
        state_dir = tmp_path / "state"
        url = site.url

        def bundle(self, version="v1", name=None, **overrides):
            cfg = bed_config(app_name, nginx, site, self.ports, self.state_dir, version, **overrides)
            return make_bundle(tmp_path / (name or f"bundle-{version}-{uuid.uuid4().hex[:6]}"), cfg)

        def state(self):
            return json.loads((self.state_dir / f"{app_name}.json").read_text())

        def containers(self, colour=None):
            labels = [f"bluegreen.app={app_name}"] + ([f"bluegreen.colour={colour}"] if colour else [])
            return docker_client.containers.list(all=True, filters={"label": labels})

        def include(self):
            return site.include.read_text()

    Bed.site, Bed.nginx, Bed.client = site, nginx, docker_client
    return Bed()


def ok(runs):
    assert runs and all(r.returncode == 0 for r in runs), "\n".join(f"--- {r.event} ({r.returncode})\n{r.output}" for r in runs)
    return runs


def test_three_deploys_alternate_colours_with_zero_failed_requests(bed):
    """No state -> blue; then green; then blue. 0 failed requests; old colour gone after ValidateService."""
    ok(deploy(bed.bundle("v1"), "d-first"))
    st = bed.state()
    assert (st["live"], st["live_deployment"]) == ("blue", "d-first")
    assert get(bed.url + "/")[1].strip() == "v1"
    with Load(bed.url + "/", threads=4) as load:
        ok(deploy(bed.bundle("v2"), "d-second"))
        assert bed.state()["live"] == "green"
        assert [c.labels["bluegreen.colour"] for c in bed.containers()] == ["green"]
        ok(deploy(bed.bundle("v3"), "d-third"))
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v1", "v2", "v3"], r.summary()
    st = bed.state()
    assert (st["live"], st["previous"]) == ("blue", "green")
    assert [c.labels["bluegreen.colour"] for c in bed.containers()] == ["blue"]
    assert [d["outcome"] for d in st["deployments"]] == ["succeeded"] * 3
    assert "colour=blue" in bed.include()
