"""Shared fixtures: the test bed (real Docker daemon, real nginx, load generator) for every test.

Tests that need the test bed use the ``docker_client``/``nginx`` fixtures and are marked
``integration`` automatically. On a machine without Docker or nginx they are skipped, except under CI
(``CI=true``), where a missing service is an error: CI must never pass by skipping.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from typing import NoReturn

import pytest

from testbed import dockerd, images
from testbed.nginx import Nginx
from testbed.ports import free_port
from tests.helpers import IN_CI, Bed, ComposeStack, networks_created, process_state_restored

# the markers of the tests that need the test bed or a shared service; `--quick` (scripts/test --quick) runs the
# rest, except the ones marked slow
TEST_BED_MARKERS = ("integration", "aws", "agent")
NOT_QUICK_MARKERS = (*TEST_BED_MARKERS, "slow")
TEST_BED_FIXTURES = {"docker_client", "nginx", "docker_daemon"}
# under --quick: a Docker client made without the fixtures finds no daemon here, and the test fails at once
QUICK_DOCKER_HOST = "unix:///nonexistent/scripts-test-quick-runs-no-docker.sock"


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true",
                     help="only the tests that need no test bed (no Docker, nginx, S3 or CodeDeploy agent) and "
                          "are not marked slow: unit, structure and fuzz tests")


def pytest_configure(config):
    if config.getoption("quick"):   # nothing started by a quick run can reach the shared services
        os.environ["DOCKER_HOST"] = QUICK_DOCKER_HOST
        for name in [k for k in os.environ if k == "CODEDEPLOY_LOCAL" or k.startswith("AWS_ENDPOINT_URL")]:
            del os.environ[name]


def _not_quick(request, what: str) -> None:
    if request.config.getoption("quick"):
        pytest.fail(f"{request.node.nodeid} reached {what} under --quick: a test that needs the test bed must be "
                    f"marked {' / '.join(TEST_BED_MARKERS)} (tests using its fixtures are, by conftest)")


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"CI must have the test bed: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def reset_process_state():
    """Every test starts from the process-wide state the previous one found (helpers.process_state_restored)."""
    with process_state_restored():
        yield


@pytest.fixture(autouse=True)
def no_operator_env(monkeypatch):
    """No test sees the operator's own BLUEGREEN_STATE_DIR / BLUEGREEN_CONFIG: each names its state dir."""
    from bluegreen_hooks.config import model

    monkeypatch.delenv(model.STATE_DIR_ENV, raising=False)
    monkeypatch.delenv(model.CONFIG_ENV, raising=False)


@pytest.fixture(scope="session")
def docker_daemon(request):
    _not_quick(request, "the Docker daemon")
    try:
        daemon = dockerd.ensure_daemon()
    except Exception as exc:  # any failure means: no daemon here
        _unavailable(f"no Docker daemon: {exc}")
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = daemon.host   # hooks run as subprocesses find the same daemon
    yield daemon
    if old is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = old
    daemon.stop()


@pytest.fixture(scope="session")
def docker_networks_at_start(docker_daemon):
    """The Docker networks (id -> name) the daemon had before the session's first Docker test."""
    with contextlib.closing(docker_daemon.client()) as client:
        return {n.id: n.name for n in client.networks.list()}


@pytest.fixture(scope="session")
def docker_client(docker_daemon, docker_networks_at_start):
    client = docker_daemon.client()
    images.ensure_base_image(client)
    yield client
    # the network rule, checked once more after every test of the session has run
    created = networks_created(client, docker_networks_at_start)
    client.close()
    assert not created, f"the test session created Docker networks {created}: tests must use host networking"


@pytest.fixture(scope="session")
def example_images(docker_client):
    """``example_images("v2")`` builds the example app at that version once per session; returns its tag."""
    built: dict[str, str] = {}

    def build(version: str) -> str:
        if version not in built:
            built[version] = images.build_example(docker_client, version)
        return built[version]

    return build


@pytest.fixture(scope="session")
def nginx(request, tmp_path_factory):
    _not_quick(request, "nginx")
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        _unavailable("nginx is not installed (apt-get install nginx-light)")
    server = Nginx(tmp_path_factory.mktemp("nginx")).start()
    yield server
    server.stop()


@pytest.fixture
def site(nginx, tmp_path):
    """A server block on its own port in the session's nginx, including ``tmp_path/conf.d/backend-url.inc``."""
    s = nginx.add_site(f"site-{uuid.uuid4().hex[:8]}", tmp_path / "conf.d" / "backend-url.inc")
    yield s
    nginx.remove_site(s)


@pytest.fixture
def app_name(request):
    """A unique app name per test; every container labelled with it is removed afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    if "docker_client" in request.fixturenames:
        client = request.getfixturevalue("docker_client")
        for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"bluegreen.app={name}"}):
            c.remove(force=True)
        images.remove_app_images(client, name)


@pytest.fixture
def run_container(docker_client):
    """Start a labelled container with host networking; removed at the end of the test."""
    started = []

    def run(image: str, **kwargs):
        labels = {"bluegreen.test": "1", **kwargs.pop("labels", {})}
        c = docker_client.containers.run(image, detach=True, network_mode="host", labels=labels, **kwargs)
        started.append(c)
        return c

    yield run
    from docker.errors import APIError

    for c in started:
        with contextlib.suppress(APIError):   # already gone (or going)
            c.remove(force=True)


@pytest.fixture
def port():
    return free_port()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if TEST_BED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    if config.getoption("quick"):
        left_out = [item for item in items if any(item.get_closest_marker(m) for m in NOT_QUICK_MARKERS)]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if item not in left_out]


@pytest.fixture
def bed(docker_client, nginx, site, app_name, tmp_path):
    """Everything one app's deployments need (see Bed)."""
    return Bed(app_name, docker_client, nginx, site, tmp_path)


@pytest.fixture(scope="module")
def compose_cmd():
    """The compose command the hooks will use; a missing one skips here, and fails under CI."""
    from bluegreen_hooks.runtime.compose import ComposeUnavailable, detect

    try:
        return detect()
    except ComposeUnavailable as exc:
        if IN_CI:
            pytest.fail(f"CI must have docker-compose: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def stack(docker_client, nginx, app_name, tmp_path, compose_cmd):
    """An app deployed as compose stacks (see ComposeStack); its site and projects are removed afterwards."""
    s = ComposeStack(app_name, docker_client, nginx, tmp_path, compose_cmd)
    yield s
    s.remove()


@pytest.fixture(scope="session")
def compose_v2():
    """The docker-compose v2 binary (testbed/compose_v2: fetched from the Debian mirror on first use); missing
    skips, and fails under CI."""
    from testbed import compose_v2 as v2

    try:
        path = v2.ensure()
        assert v2.version(path).startswith("2."), v2.version(path)
    except Exception as exc:   # no mirror, no dpkg-deb: say why
        if IN_CI:
            pytest.fail(f"CI must have docker-compose v2: {exc}")
        pytest.skip(f"docker-compose v2 unavailable: {exc}")
    return str(path)


@pytest.fixture(params=["v1", "v2"])
def compose_version(request):
    """A test using ``vstack`` runs once per compose version: "v1" (the detected docker-compose 1.29.2 here)
    and "v2" (the Go binary as compose/command)."""
    return request.param


@pytest.fixture
def vstack(stack, compose_version, request):
    """``stack`` whose bundles run the compose of ``compose_version`` (``stack.version``)."""
    if compose_version == "v2":
        stack.command = [request.getfixturevalue("compose_v2")]
        stack.compose_cmd = tuple(stack.command)
    stack.version = compose_version
    return stack
