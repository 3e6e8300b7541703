"""A container's Docker HEALTHCHECK run at once (runtime/healthcheck.py), against the real daemon.

The checks here have a 60 s interval, so Docker itself never runs one during a test: a pass can only
come from our early run, and Docker still says ``starting`` after it.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bluegreen_hooks import config
from bluegreen_hooks.errors import HealthCheckFailed
from bluegreen_hooks.host import health
from bluegreen_hooks.runtime.healthcheck import EarlyChecks, argv, run_now
from testbed import images
from tests.helpers import wait_for

MINUTE_NS = 60 * 10**9


def test_argv_is_what_docker_runs_for_each_test_form():
    assert argv(["CMD", "wget", "-q", "http://x/"]) == ["wget", "-q", "http://x/"]
    assert argv(["CMD-SHELL", "curl -f localhost || exit 1"]) == ["/bin/sh", "-c", "curl -f localhost || exit 1"]
    assert argv(["NONE"]) is None
    assert argv([]) is None and argv(None) is None
    assert argv(["CMD"]) is None and argv(["CMD-SHELL"]) is None


def _server(run_container, docker_client, port: int, check: list[str]):
    base = images.ensure_base_image(docker_client)
    script = f"mkdir -p /w && echo ok > /w/health && exec httpd -f -p 127.0.0.1:{port} -h /w"
    return run_container(base, command=["sh", "-c", script], labels={"bluegreen.app": "hc-test"},
                         healthcheck={"test": check, "interval": MINUTE_NS, "timeout": 2 * 10**9, "retries": 1})


def _cfg(tmp_path: Path, port: int, deadline: float) -> config.Config:
    raw = {"app": "hc", "colours": {"blue": port, "green": port + 1 if port < 65535 else port - 1},
           "container": {"image": "x:1"}, "health": {"deadline": deadline}}
    return config.parse(raw, tmp_path / "bluegreen.toml", environ={}, check_files=False)


def _docker_health(docker_client, cont) -> str:
    return docker_client.api.inspect_container(cont.id)["State"]["Health"]["Status"]


def test_a_passing_healthcheck_counts_at_once_while_docker_still_says_starting(
        docker_client, run_container, port, tmp_path):
    cont = _server(run_container, docker_client, port,
                   ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}/health"])
    watch = lambda: [docker_client.api.inspect_container(cont.id)]  # noqa: E731
    # without the early run, the wait sees only Docker's "starting" (its first check is a minute away)
    with pytest.raises(HealthCheckFailed, match=r"HEALTHCHECK of .* says starting"):
        health.wait_healthy(_cfg(tmp_path, port, deadline=1.5), "blue", watch, lambda _: None, port=port)
    seconds = health.wait_healthy(_cfg(tmp_path, port, deadline=20), "blue", watch, lambda _: None, port=port,
                                  check_now=EarlyChecks(docker_client))
    assert seconds < 20, seconds   # within the deadline (no bound tighter: the machine may be busy)
    assert _docker_health(docker_client, cont) == "starting"   # Docker has not run it: the pass was ours


def test_a_failing_healthcheck_run_early_does_not_make_the_container_healthy(
        docker_client, run_container, port, tmp_path):
    cont = _server(run_container, docker_client, port, ["CMD-SHELL", "exit 3"])
    wait_for(lambda: run_now(docker_client, docker_client.api.inspect_container(cont.id)) is False
             and docker_client.api.inspect_container(cont.id)["State"]["Running"], what="the server running")
    watch = lambda: [docker_client.api.inspect_container(cont.id)]  # noqa: E731
    with pytest.raises(HealthCheckFailed, match=r"HEALTHCHECK of .* says starting"):
        health.wait_healthy(_cfg(tmp_path, port, deadline=2), "blue", watch, lambda _: None, port=port,
                            check_now=EarlyChecks(docker_client))


def test_a_stopped_container_or_no_healthcheck_is_a_plain_no(docker_client, run_container, port):
    cont = _server(run_container, docker_client, port, ["CMD", "true"])
    assert run_now(docker_client, docker_client.api.inspect_container(cont.id)) is True
    cont.stop(timeout=0)
    assert run_now(docker_client, docker_client.api.inspect_container(cont.id)) is False
    assert run_now(docker_client, {"Id": cont.id, "Config": {}}) is False


def test_the_waits_of_one_hook_share_a_pass(docker_client, run_container, port, tmp_path):
    """A compose colour's routes are waited for one after the other; a container whose HEALTHCHECK passed for
    the first is not checked again for the next (early_checks: one per client)."""
    from bluegreen_hooks.runtime.healthcheck import early_checks

    cont = _server(run_container, docker_client, port,
                   ["CMD-SHELL", f"echo run >> /w/runs && wget -q -O /dev/null http://127.0.0.1:{port}/health"])
    watch = lambda: [docker_client.api.inspect_container(cont.id)]  # noqa: E731
    for _ in range(2):    # e.g. the api route, then the web route
        health.wait_healthy(_cfg(tmp_path, port, deadline=20), "blue", watch, lambda _: None, port=port,
                            check_now=early_checks(docker_client))
    assert cont.exec_run(["cat", "/w/runs"]).output.decode().split() == ["run"]
    assert early_checks(docker_client) is early_checks(docker_client)
    assert _docker_health(docker_client, cont) == "starting"
