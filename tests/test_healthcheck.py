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


# ------------------------------------------------------------- every routed service's port at once (wait_all)

class _App:
    """A loopback HTTP server answering 503 until ``ready`` is set, then 200 (after ``delay`` s: a cold app's
    slow first answer); counts the requests it got."""

    def __init__(self, port: int = 0, delay: float = 0.0) -> None:
        import http.server
        import threading

        self.ready, self.requests = threading.Event(), 0
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                app.requests += 1
                if app.ready.is_set():
                    threading.Event().wait(delay)   # the answer is slow, not late: the request is in flight
                self.send_response(200 if app.ready.is_set() else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _health_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("health-")]


@pytest.fixture
def apps():
    made = [_App(), _App()]
    yield made
    for a in made:
        a.close()


def test_the_routed_ports_are_waited_for_at_the_same_time(apps, tmp_path):
    """Both ports are asked before either is healthy (one after the other, the second would get no request
    until the first answered 200); the wait ends once both are, and each says so."""
    import threading

    a, b = apps
    said: list[str] = []
    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.update(seconds=health.wait_all(
        _cfg(tmp_path, a.port, deadline=60), "blue", [a.port, b.port], None, said.append)))
    t.start()
    wait_for(lambda: a.requests and b.requests, what="both ports asked while neither is healthy")
    a.ready.set()
    wait_for(lambda: any(f":{a.port}/" in s for s in said), what="the first port healthy")
    assert t.is_alive() and "seconds" not in out    # the second still answers 503: not healthy yet
    b.ready.set()
    t.join(timeout=30)
    assert not t.is_alive() and isinstance(out["seconds"], float)
    assert sum("blue is healthy (HTTP 200 from" in s for s in said) == 2, said


def test_the_first_failure_ends_every_routed_wait(apps, tmp_path):
    """A container that exits fails the wait at once, whichever port's thread sees it first; the other
    port's thread ends too (it does not poll on until the deadline), and the error is the real one."""
    a, b = apps
    exited = [{"Name": "/hc-web", "State": {"Status": "exited", "ExitCode": 137}, "RestartCount": 0}]
    running = [{"Name": "/hc-web", "State": {"Status": "running"}, "RestartCount": 0}]
    watch = lambda: exited if a.requests + b.requests >= 4 else running  # noqa: E731
    with pytest.raises(HealthCheckFailed, match=r"blue \(hc-web\): container exited .*before it got healthy"):
        health.wait_all(_cfg(tmp_path, a.port, deadline=60), "blue", [a.port, b.port], watch,
                        lambda _: None)
    wait_for(lambda: not _health_threads(), timeout=15, what="every port's wait ended")


def test_a_sigterm_ends_every_routed_wait(apps, tmp_path):
    """SIGTERM (host/wait.request_stop, what the hook's handler sets): the waits end with Interrupted."""
    import threading

    from bluegreen_hooks.errors import Interrupted
    from bluegreen_hooks.host import wait

    a, b = apps
    out: dict[str, BaseException] = {}

    def run() -> None:
        try:
            health.wait_all(_cfg(tmp_path, a.port, deadline=60), "blue", [a.port, b.port], None, lambda _: None)
        except BaseException as exc:
            out["exc"] = exc
    t = threading.Thread(target=run)
    t.start()
    try:
        wait_for(lambda: a.requests and b.requests, what="both ports asked")
        wait.request_stop()
        t.join(timeout=30)
    finally:
        wait._stop["requested"] = False
    assert not t.is_alive() and isinstance(out.get("exc"), Interrupted), out
    wait_for(lambda: not _health_threads(), timeout=15, what="every port's wait ended")


# -------------------------------------------------- a port that refuses: asked again soon, containers judged

def test_a_refused_port_is_asked_again_soon_and_the_containers_less_often(tmp_path):
    """While nothing listens, each attempt waits QUICK s (not the growing wait) and skips the containers
    between looks; once the app answers, its containers are judged before it counts as healthy."""
    from testbed.ports import free_port

    port, app, sleeps, looks = free_port(), None, [], []
    running = [{"Name": "/hc-web", "State": {"Status": "running"}, "RestartCount": 0}]

    def sleep(seconds: float) -> None:   # no time passes: the looks depend on attempts only
        nonlocal app
        sleeps.append(seconds)
        if len(sleeps) == 5:
            app = _App(port)
            app.ready.set()
    try:
        seconds = health.wait_healthy(_cfg(tmp_path, port, deadline=60), "blue", lambda: looks.append(1) or running,
                                      lambda _: None, sleep=sleep, port=port)
    finally:
        if app is not None:
            app.close()
    assert seconds < 60 and sleeps == [health.QUICK] * 5, sleeps
    assert len(looks) == 2, looks   # the first attempt, and once more before the answer counted


def test_an_answer_after_refusals_does_not_count_while_a_container_has_exited(tmp_path):
    """The app answers 200 on an attempt that skipped the containers: they are judged then, and an exited one
    fails the wait at once."""
    from testbed.ports import free_port

    port, app, sleeps = free_port(), None, []
    states = iter([[{"Name": "/hc-web", "State": {"Status": "running"}, "RestartCount": 0}]] +
                  [[{"Name": "/hc-web", "State": {"Status": "exited", "ExitCode": 1}, "RestartCount": 0}]] * 5)

    def sleep(seconds: float) -> None:
        nonlocal app
        sleeps.append(seconds)
        app = app or _App(port)
        app.ready.set()
    try:
        with pytest.raises(HealthCheckFailed, match=r"container exited .*before it got healthy"):
            health.wait_healthy(_cfg(tmp_path, port, deadline=60), "blue", lambda: next(states), lambda _: None,
                                sleep=sleep, port=port)
    finally:
        if app is not None:
            app.close()
    assert sleeps == [health.QUICK]


def test_the_healthy_line_says_how_long_the_accepted_answer_took(tmp_path):
    """A JVM's first request loads its request path: the line says how long the answer that counted took (the
    app's own time, apart from how long the hook waited), so a slow first answer is seen as the app's."""
    app = _App(delay=0.4)
    app.ready.set()
    said: list[str] = []
    try:
        health.wait_healthy(_cfg(tmp_path, app.port, deadline=60), "blue", None, said.append, port=app.port)
    finally:
        app.close()
    line = said[-1]
    assert line.startswith(f"blue is healthy (HTTP 200 from 127.0.0.1:{app.port}/"), said
    answered = float(line.rsplit("answered in ", 1)[1].rstrip("s)"))
    assert 0.4 <= answered < 5, line


# ------------------------------------------ the app answers, another container's HEALTHCHECK still says starting

_STARTING = [{"Name": "/hc-worker", "State": {"Status": "running", "Health": {"Status": "starting"}},
              "RestartCount": 0}]


def test_an_answering_app_is_asked_first_and_a_starting_container_looked_at_every_starting_s(tmp_path):
    """The app's port is asked before the containers are looked at (a JVM that listens gets its slow first request
    while the unrouted worker still starts, not after); while the worker's early HEALTHCHECK run fails, the next
    attempt comes after STARTING s, not the growing wait; it counts once the run passes."""
    app = _App()
    app.ready.set()
    checks: list[int] = []
    sleeps: list[float] = []

    def check_now(attrs: dict) -> bool:
        checks.append(app.requests)   # how many requests the app had had when the worker was checked
        return len(checks) > 3
    try:
        health.wait_healthy(_cfg(tmp_path, app.port, deadline=60), "blue", lambda: _STARTING, lambda _: None,
                            sleep=sleeps.append, port=app.port, check_now=check_now)
    finally:
        app.close()
    assert sleeps == [health.STARTING] * 3, sleeps
    assert checks == [1, 2, 3, 4], checks   # each look came after that attempt's request


def test_the_routes_share_a_starting_containers_early_run(docker_client, run_container, port, tmp_path):
    """Four routes wait for one colour whose worker's HEALTHCHECK fails until a file appears: the routes' threads
    share its early runs (one at a time, a failure younger than EarlyChecks.REUSE s is their answer too), so
    they run it at most once per REUSE s, not once per route; every route was asked meanwhile, and all are
    healthy once the check passes."""
    import threading
    import time

    from bluegreen_hooks.runtime.healthcheck import early_checks

    cont = _server(run_container, docker_client, port, ["CMD-SHELL", "echo run >> /w/runs && test -e /w/go"])
    apps = [_App() for _ in range(4)]
    for a in apps:
        a.ready.set()
    watch = lambda: [docker_client.api.inspect_container(cont.id)]  # noqa: E731
    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.update(seconds=health.wait_all(
        _cfg(tmp_path, apps[0].port, deadline=60), "blue", [a.port for a in apps], watch, lambda _: None,
        check_now=early_checks(docker_client))))
    try:
        t0 = time.monotonic()
        t.start()
        wait_for(lambda: all(a.requests >= 2 for a in apps), what="every route asked twice while the worker starts")
        runs = cont.exec_run(["cat", "/w/runs"]).output.decode().split()
        elapsed = time.monotonic() - t0
        assert t.is_alive() and "seconds" not in out
        assert 1 <= len(runs) <= 1 + elapsed / EarlyChecks.REUSE, (len(runs), elapsed)
        cont.exec_run(["touch", "/w/go"])
        t.join(timeout=30)
        assert not t.is_alive() and isinstance(out["seconds"], float)
    finally:
        for a in apps:
            a.close()
    assert _docker_health(docker_client, cont) == "starting"   # the pass was our early run's
