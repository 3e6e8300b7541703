"""The test bed itself: the example app, nginx in front of it, the load generator, the network rule."""
from __future__ import annotations

import socket
import time

import pytest

from testbed.load import Load
from testbed.ports import free_port
from tests.helpers import get, networks_created, wait_for


def _serve(run_container, image, port, **env):
    return run_container(image, environment={"HOST": "127.0.0.1", "PORT": str(port), **env})


def _point(site, nginx, port, colour="blue"):
    site.include.write_text(f"set $service_url http://127.0.0.1:{port};\nset $bluegreen_colour {colour};\n")
    nginx.reload_and_wait()


def test_example_app_answers_through_nginx_with_its_version(example_images, run_container, nginx, site):
    """A container built from example/app/Dockerfile serves its version, health and colour header via nginx."""
    port = free_port()
    _serve(run_container, example_images("v1"), port)
    wait_for(lambda: get(f"http://127.0.0.1:{port}/health")[0] == 200, what="app health")
    _point(site, nginx, port, "green")
    status, body, headers = get(site.url + "/")
    assert (status, body.strip(), headers.get("X-Bluegreen-Colour")) == (200, "v1", "green")
    assert get(site.url + "/health")[:2] == (200, "ok\n")


def test_example_app_refuses_connections_during_its_start_delay(example_images, run_container):
    """START_DELAY=8: connections are refused at first, then the app answers, no sooner than the delay. (The
    refusal is checked once the container runs: the delay leaves a busy machine seconds for that, not
    milliseconds.)"""
    port = free_port()
    t0 = time.monotonic()
    c = _serve(run_container, example_images("v1"), port, START_DELAY="8")
    wait_for(lambda: c.reload() or c.status == "running", what="container running")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    wait_for(lambda: get(f"http://127.0.0.1:{port}/")[0] == 200, timeout=30, what="app ready")
    assert time.monotonic() - t0 >= 8


def test_example_app_slow_path_takes_n_seconds(example_images, run_container):
    """/cgi-bin/slow?2 answers with the version, and not before two seconds."""
    port = free_port()
    _serve(run_container, example_images("v1"), port)
    wait_for(lambda: get(f"http://127.0.0.1:{port}/health")[0] == 200, what="app health")
    t0 = time.monotonic()
    status, body, _ = get(f"http://127.0.0.1:{port}/cgi-bin/slow?2", timeout=10)
    elapsed = time.monotonic() - t0
    assert (status, body.strip()) == (200, "v1")
    assert elapsed >= 2


def test_example_app_unhealthy_and_exit_switches(example_images, run_container):
    """UNHEALTHY=1 makes /health answer 404; EXIT_CODE=3 makes the container exit with 3."""
    port = free_port()
    _serve(run_container, example_images("v1"), port, UNHEALTHY="1")
    wait_for(lambda: get(f"http://127.0.0.1:{port}/")[0] == 200, what="app up")
    assert get(f"http://127.0.0.1:{port}/health")[0] == 404
    c = _serve(run_container, example_images("v1"), free_port(), EXIT_CODE="3")
    assert c.wait(timeout=20)["StatusCode"] == 3


def test_load_counts_refused_connections_on_a_closed_port():
    """Every request to a port nothing listens on is a failure with cause 'refused'."""
    with Load(f"http://127.0.0.1:{free_port()}/", threads=2, min_requests=20) as load:
        pass
    r = load.result
    assert r.total >= 20 and r.ok == 0
    assert r.failures == {"refused": r.total}


@pytest.mark.parametrize("keepalive", [False, True])
def test_load_counts_502_from_nginx_and_ok_answers(nginx, site, example_images, run_container, keepalive):
    """nginx pointing at a closed port answers 502 (counted as http_502); pointing at the app, all ok."""
    _point(site, nginx, free_port())
    with Load(site.url + "/", threads=2, keepalive=keepalive, min_requests=20) as load:
        pass
    assert load.result.total >= 20 and load.result.failures == {"http_502": load.result.total}

    port = free_port()
    _serve(run_container, example_images("v1"), port)
    wait_for(lambda: get(f"http://127.0.0.1:{port}/health")[0] == 200, what="app health")
    _point(site, nginx, port)
    with Load(site.url + "/", threads=2, keepalive=keepalive, min_requests=50) as load:
        pass
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_seen == {"v1"} and r.ok >= 50


def test_no_bridge_network_is_created(docker_client, docker_networks_at_start):
    """The network rule: the suite creates no Docker network (none exists that the daemon did not have when
    the session started; the session's end checks the same once more)."""
    created = networks_created(docker_client, docker_networks_at_start)
    assert not created, f"networks created during the session: {created}"
