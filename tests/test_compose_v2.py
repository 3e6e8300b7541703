"""Compose stacks deployed with docker-compose v2 (the Go program; Debian 13's package, testbed/compose_v2.py)
against the real Docker daemon and nginx, under load: what hosts with `docker compose` run.

The rest of the compose tests use Debian 12's docker-compose 1.29 (what `docker compose` detection finds here);
these point compose/command at the v2 binary, so both are covered. The failure kinds run under both
versions in test_compose.py (its ``vstack`` tests). Every service uses ``network_mode: host``.
"""
from __future__ import annotations

from testbed.bundle import deploy
from testbed.load import Load
from tests.helpers import ok


def test_v2_per_colour_stacks_deploy_three_times_under_load_with_zero_failed(stack, compose_v2):
    """blue, green, blue with docker-compose v2: 0 failed on both routes, each stack's services as compose
    v2 labels them, the old stack down, no network created."""
    ok(deploy(stack.per_colour_bundle("v1", command=[compose_v2]), "d-v1"))
    assert stack.services("blue") == ["api", "web", "worker"]
    with Load(stack.url + "/", threads=3) as web_load, Load(stack.url + "/api/", threads=2) as api_load:
        runs = ok(deploy(stack.per_colour_bundle("v2", command=[compose_v2]), "d-v2"))
        assert stack.services("green") == ["api", "web", "worker"] and stack.services("blue") == []
        runs += ok(deploy(stack.per_colour_bundle("v3", command=[compose_v2]), "d-v3"))
    for load, versions in ((web_load, ["v1", "v2", "v3"]), (api_load, ["api-v1", "api-v2", "api-v3"])):
        assert load.result.failed == 0, load.result.summary()
        assert load.result.versions_in_order == versions, load.result.summary()
    assert {c.labels["com.docker.compose.version"][:2] for c in stack.project("blue")} == {"2."}
    st = stack.state()
    assert (st["live"], st["previous"], st["live_deployment"]) == ("blue", "green", "d-v3")
    assert stack.services("blue") == ["api", "web", "worker"] and stack.services("green") == []
    assert stack.networks() == stack.networks_before
