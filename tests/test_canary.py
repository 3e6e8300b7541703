"""The automatic canary on real Docker + nginx under load: promote, abort, extend, operator, SIGKILL, both forms."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from bluegreen_hooks.cli import main
from testbed.bundle import deploy, hook_env
from testbed.load import Load
from testbed.nginx import MAIN_CONF, Nginx
from tests.helpers import Bed, get, ok, wait_for

# an nginx whose http level logs (as Debian's default does): the canary must restate it, never replace it
LOGGING_MAIN = MAIN_CONF.replace("access_log off;", "access_log {prefix}/access.log;")

UPSTREAM_SITE = """\
include {include};
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://UPSTREAM;
        proxy_read_timeout 120s;
        add_header X-Bluegreen-Colour $bluegreen_colour always;
    }}
}}
"""
# before the first deployment the upstream must exist for `nginx -t` (a port nothing listens on); the test
# writes it with our header, as an include bluegreen-hooks may replace (host/include_guard.py)
UPSTREAM_PLACEHOLDER = ("upstream UPSTREAM {\n    server 127.0.0.1:9;\n}\n"
                        "map $pid $bluegreen_colour {\n    default \"\";\n}\n")
FAST = {"step_seconds": 2, "min_requests": 20, "max_wait": 20, "max_error_rate": 0.05}


class LoggingNginx(Nginx):
    def start(self) -> Nginx:
        for d in (self.prefix, self.sites_dir, self.prefix / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        from testbed.ports import free_port

        self.port = free_port()
        self.conf.write_text(LOGGING_MAIN.format(prefix=self.prefix, port=self.port))
        subprocess.run(self.argv(), check=True, capture_output=True, text=True)
        self._wait(lambda: self.master_pid() is not None, "nginx to write its pid file")
        return self


@pytest.fixture(scope="module")
def logging_nginx(tmp_path_factory, docker_client):
    server = LoggingNginx(tmp_path_factory.mktemp("nginx-logging")).start()
    yield server
    server.stop()


@pytest.fixture(params=["set", "upstream"])
def form(request):
    return request.param


@contextlib.contextmanager
def form_bed(logging_nginx, docker_client, app_name, tmp_path, form, prefix):
    """A Bed on the logging nginx in include form ``form`` ("set" or "upstream"), its site removed after."""
    include = tmp_path / "conf.d" / "backend-url.inc"
    if form == "set":
        site = logging_nginx.add_site(f"{prefix}-{uuid.uuid4().hex[:8]}", include)
    else:
        up = f"{app_name}_backend"
        site = logging_nginx.add_site(f"{prefix}-{uuid.uuid4().hex[:8]}", include,
                                      f"# bluegreen-hooks: app={app_name} colour=blue deployment=placeholder\n"
                                      + UPSTREAM_PLACEHOLDER.replace("UPSTREAM", up),
                                      UPSTREAM_SITE.replace("UPSTREAM", up))
    bed = Bed(app_name, docker_client, logging_nginx, site, tmp_path)
    bed.form = form
    try:
        yield bed
    finally:
        logging_nginx.remove_site(site)


@pytest.fixture
def cbed(logging_nginx, docker_client, app_name, tmp_path, request):
    """A Bed on the logging nginx in the include form of ``form`` (set when the test does not ask)."""
    form = request.getfixturevalue("form") if "form" in request.fixturenames else "set"
    with form_bed(logging_nginx, docker_client, app_name, tmp_path, form, "c") as bed:
        yield bed


def canary_bundle(bed, version, canary=None, **overrides):
    nginx = {"form": bed.form, **overrides.pop("nginx", {})}
    return bed.bundle(version, canary={**FAST, **(canary or {})}, nginx=nginx, **overrides)


class Shares:
    """Polls the state file: when the canary's share changed (load-generator time), while a deployment runs."""

    def __init__(self, bed, load):
        self.bed, self.load, self.marks = bed, load, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                ip = self.bed.state().get("in_progress") or {}
            except (OSError, ValueError):
                ip = {}
            c = ip.get("canary")
            share = c["share"] if c and c.get("phase") == "running" else None
            if not self.marks or self.marks[-1][1] != share:
                self.marks.append((time.monotonic() - self.load._t0, share))
            time.sleep(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)

    def windows(self):
        """(share, start, end) of every step seen, in load-generator time."""
        out = []
        for (t, share), (t_next, _) in zip(self.marks, self.marks[1:]):
            if share:
                out.append((share, t, t_next))
        return out


def measured(samples, start, end, version):
    """The percent of the answers in [start, end] (ok or not, by colour header) that ``version``'s colour gave."""
    inside = [s for s in samples if start <= s.t <= end and s.header]
    return 100 * sum(1 for s in inside if s.header == version) / max(1, len(inside)), len(inside)


def test_healthy_canary_is_promoted_through_10_50_100_with_zero_failed(cbed, form):
    """A healthy v2 gets 10 %, then 50 %, then 100 %: 0 failed; the load generator sees each share within a few
    points; ValidateService then drains and stops the old colour; history keeps each step's figures."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    with Load(cbed.url + "/", threads=4) as load, Shares(cbed, load) as shares:
        runs = ok(deploy(canary_bundle(cbed, "v2"), "d-two"))
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v1", "v2"], r.summary()
    windows = shares.windows()
    assert [w[0] for w in windows] == [10, 50], shares.marks
    for share, start, end in windows:
        # a step's end is marked once the next step's include is reloaded AND checked (its probe token routed):
        # the last few hundred ms of a window already run at the next share
        got, n = measured(r.samples, start + 0.3, end - 0.6, "green")
        # within 4 points, or 3 standard deviations of a binomial share over n requests when n is small
        tolerance = max(4.0, 3 * 100 * (share / 100 * (1 - share / 100) / max(1, n)) ** 0.5)
        assert n > 100 and abs(got - share) <= tolerance, (share, got, n, tolerance)
    start = next(x for x in runs if x.event == "ApplicationStart").output
    assert "canary step 1 of 2: 10 % of requests to green" in start and "canary promoted" in start, start
    st = cbed.state()
    assert (st["live"], st["in_progress"]) == ("green", None)
    assert sorted((c.labels["bluegreen.colour"], c.status) for c in cbed.containers()) == \
        [("blue", "exited"), ("green", "running")]   # blue kept stopped, for a rollback
    dep = st["deployments"][-1]
    assert dep["canary"]["phase"] == "promoted" and [s["share"] for s in dep["canary"]["steps"]] == [10, 50]
    assert all(s["new"]["5xx"] == 0 and s["new"]["requests"] >= 20 for s in dep["canary"]["steps"])
    assert "canary" not in cbed.include()
    # the user's own http-level access_log kept receiving requests during the canary
    assert (cbed.nginx.prefix / "access.log").stat().st_size > 0
    print(f"\npromote ({form}): {r.summary()}; measured shares "
          f"{[(w[0], round(measured(r.samples, w[1] + 0.3, w[2] - 0.6, 'green')[0], 1)) for w in windows]}")


def test_failing_canary_is_aborted_at_the_first_step(cbed, form):
    """v2 answers 500 on 20 % of requests: aborted at 10 %; the failures are only the canary's share of that
    step; 0 after the abort; the old colour answered throughout; the last line gives the figures."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    bad = canary_bundle(cbed, "v2", container={"env": {"HOST": "127.0.0.1", "FAIL_PERCENT": "20"}})
    with Load(cbed.url + "/", threads=4) as load, Shares(cbed, load) as shares:
        runs = deploy(bad, "d-bad")
        t_end = time.monotonic() - load._t0
        wait_for(lambda: len([s for s in load.result.samples if s.t > t_end]) > 300, what="load after the abort")
    r = load.result
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert last.last_line.startswith("ERROR ApplicationStart: canary aborted at 10 %: new colour green failed "), \
        last.last_line
    assert "vs old 0.0 %" in last.last_line and "blue keeps serving" in last.last_line, last.last_line
    failed = [s for s in r.samples if not s.ok]
    assert {s.cause for s in failed} == {"http_500"}, r.summary()
    assert all(s.header == "green" for s in failed)
    windows = shares.windows()
    assert [w[0] for w in windows] == [10], shares.marks
    assert not [s for s in failed if s.t > windows[0][2] + 0.5], "failures after the abort"
    # green gets its share from the reload on, before the state says the step runs (the step's check comes
    # first): the step's requests are those from green's first answer to the abort
    first_green = min(s.t for s in r.samples if s.header == "green")
    step = [s for s in r.samples if first_green <= s.t <= windows[0][2]]
    share_failed = 100 * len(failed) / max(1, len(step))
    assert share_failed < 10 * 0.2 + 2, (len(failed), len(step))      # ~2 % = 10 % share x 20 % failing
    assert not [s for s in r.samples if s.header == "blue" and not s.ok]    # the old colour never failed
    assert not [s for s in r.samples if s.version == "v2" and s.t > windows[0][2] + 0.5]   # v2 gone after
    st = cbed.state()
    assert (st["live"], st["in_progress"]) == ("blue", None)
    assert [c.labels["bluegreen.colour"] for c in cbed.containers()] == ["blue"]
    dep = st["deployments"][-1]
    assert dep["outcome"] == "failed" and dep["canary"]["phase"] == "aborted"
    assert "canary" not in cbed.include() and "colour=blue" in cbed.include()
    print(f"\nabort ({form}): {len(failed)} failed of {len(step)} in the 10 % step; {r.summary()}; "
          f"last line: {last.last_line}")


@pytest.mark.parametrize("on_too_few", ["promote", "abort"])
def test_canary_with_too_little_traffic_is_extended_then_on_too_few(cbed, on_too_few):
    """Little traffic and no probes: the new colour sees fewer than min_requests, so the step is extended up to
    max_wait; then on_too_few decides, and the output says so (abort, the default, fails the deployment)."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    b = canary_bundle(cbed, "v2", canary={"steps": [50], "step_seconds": 1, "max_wait": 3, "min_requests": 20,
                                          "probe_interval": 0, "on_too_few": on_too_few})
    stop = threading.Event()

    def trickle():                      # ~4 requests a second: 50 % of 3 s (and the hook's checks) is fewer than 20
        while not stop.is_set():
            get(cbed.url + "/")
            time.sleep(0.25)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        runs = deploy(b, "d-two")
    finally:
        stop.set()
        t.join(5)
    start = next(x for x in runs if x.event == "ApplicationStart")
    assert "step extended, up to 3s" in start.output, start.output
    step = cbed.state()["deployments"][-1]["canary"]["steps"][0]
    assert step["seconds"] >= 3 and step["new"]["requests"] < 20, step
    if on_too_few == "promote":
        ok(runs)
        assert step["verdict"] == "ok" and 'promoted anyway, on_too_few = "promote"' in start.output, start.output
    else:
        assert (start.returncode, step["verdict"]) == (1, "abort"), start.output
        assert "requests through the new colour (min_requests 20): on_too_few = \"abort\"" in start.last_line
        assert cbed.state()["live"] == "blue"


def test_canary_too_few_with_extend_carries_the_window_then_aborts_at_the_last_step(cbed):
    """on_too_few = "extend": a step still short of min_requests at max_wait hands its requests on to the next
    step (judged together); still too few at the last step: abort, saying why."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    b = canary_bundle(cbed, "v2", canary={"steps": [10, 50], "step_seconds": 1, "max_wait": 2, "min_requests": 10**6,
                                          "probe_interval": 0, "on_too_few": "extend"})
    with Load(cbed.url + "/", threads=1) as load:
        runs = deploy(b, "d-two")
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert last.last_line.startswith("ERROR ApplicationStart: canary aborted at 50 %: new colour green only "), \
        last.last_line
    assert 'still too few at the last step (on_too_few = "extend")' in last.last_line, last.last_line
    steps = cbed.state()["deployments"][-1]["canary"]["steps"]
    assert [s["verdict"] for s in steps] == ["extend", "abort"], steps
    assert steps[1]["new"]["requests"] > steps[0]["new"]["requests"] > 0, steps     # the window was carried
    assert load.result.failed == 0 and cbed.state()["live"] == "blue", load.result.summary()


def _start_hook(bundle, event, dep):
    env = hook_env(dep)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    return subprocess.Popen([str(bundle / "hooks" / event)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _canary_share(bed):
    c = (bed.state().get("in_progress") or {}).get("canary") or {}
    return c.get("share") if c.get("phase") == "running" else None


def test_operator_abort_mid_step(cbed, capsys):
    """`bluegreen-hooks canary abort` during a long step: the hook goes back to 0 % at once and fails, naming who."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    b = canary_bundle(cbed, "v2", canary={"step_seconds": 60, "max_wait": 60})
    ok(deploy(b, "d-two", events=("ApplicationStop", "BeforeInstall")))
    with Load(cbed.url + "/", threads=2) as load:
        proc = _start_hook(b, "ApplicationStart", "d-two")
        wait_for(lambda: _canary_share(cbed) == 10, timeout=60, what="the canary's first step")
        t0 = time.monotonic()
        assert main(["canary", "abort", "--state-dir", str(cbed.state_dir)]) == 0
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    assert load.result.failed == 0, load.result.summary()
    assert proc.returncode == 1 and "canary aborted at 10 % by" in out.splitlines()[-1], out
    assert took < 15, took
    assert "abort requested" in capsys.readouterr().out
    st = cbed.state()
    assert (st["live"], st["in_progress"]) == ("blue", None)
    assert get(cbed.url + "/")[1].strip() == "v1"
    assert [c.labels["bluegreen.colour"] for c in cbed.containers()] == ["blue"]


def test_operator_promote_skips_the_remaining_steps(cbed, monkeypatch, capsys):
    """`bluegreen-hooks canary promote` during the first step: 100 % at once, the deployment succeeds. The dry
    run showed the steps first."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    b = canary_bundle(cbed, "v2", canary={"step_seconds": 60, "max_wait": 60})
    monkeypatch.setenv("DEPLOYMENT_ID", "d-two")
    assert main(["hook", "ApplicationStart", "--bundle", str(b), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "canary: 10 % (10.2 % exactly), 50 % (50.0 % exactly) of requests to green, then 100 %" in dry, dry
    assert "abort when green's failed share (5xx, refused, reset, timeout, client gave up) is above 5 % (95 % " \
        "Wilson lower bound) and above blue's, or its p95/p99 is more than 2x and 100 ms above blue's" in dry, dry
    assert "probes of /health forced to green every 0.5s (timeout 5s)" in dry, dry
    ok(deploy(b, "d-two", events=("ApplicationStop", "BeforeInstall")))
    proc = _start_hook(b, "ApplicationStart", "d-two")
    wait_for(lambda: _canary_share(cbed) == 10, timeout=60, what="the canary's first step")
    assert main(["canary", "promote", "--state-dir", str(cbed.state_dir)]) == 0
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "promote requested by" in out, out
    ok(deploy(b, "d-two", events=("ValidateService",)))
    assert cbed.state()["live"] == "green" and get(cbed.url + "/")[1].strip() == "v2"


def test_sigkill_mid_canary_then_a_new_deployment_puts_traffic_back_first(cbed, form, monkeypatch, capsys):
    """The hook is SIGKILLed at 10 %: the next deployment's BeforeInstall first puts all traffic back on the old
    colour (include rewritten, nginx reloaded), then deploys; 0 failed requests throughout."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    b = canary_bundle(cbed, "v2", canary={"step_seconds": 60, "max_wait": 60})
    with Load(cbed.url + "/", threads=2) as load:
        ok(deploy(b, "d-killed", events=("ApplicationStop", "BeforeInstall")))
        proc = _start_hook(b, "ApplicationStart", "d-killed")
        wait_for(lambda: _canary_share(cbed) == 10, timeout=60, what="the canary's first step")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert "canary=green:10" in cbed.include()
        nxt = canary_bundle(cbed, "v3", canary={"steps": [50]})
        monkeypatch.setenv("DEPLOYMENT_ID", "d-next")
        capsys.readouterr()
        assert main(["hook", "BeforeInstall", "--bundle", str(nxt), "--dry-run"]) == 0
        dry = capsys.readouterr().out
        assert "an interrupted canary" in dry and "would go back to blue" in dry, dry
        assert "canary=green:10" in cbed.include()            # the dry run changed nothing
        runs = deploy(nxt, "d-next", events=("ApplicationStop", "BeforeInstall"))
        ok(runs)
        before = runs[-1].output
        assert "an interrupted canary" in before and "back to blue" in before, before
        assert "canary" not in cbed.include() and "colour=blue" in cbed.include()
        got = {get(cbed.url + "/")[2].get("X-Bluegreen-Colour") for _ in range(60)}
        assert got == {"blue"}, got
        ok(deploy(canary_bundle(cbed, "v3", canary={"steps": [50]}), "d-next",
                  events=("ApplicationStart", "ValidateService")))
    assert load.result.failed == 0, load.result.summary()
    st = cbed.state()
    assert (st["live"], st["live_deployment"]) == ("green", "d-next")
    killed = next(d for d in st["deployments"] if d["id"] == "d-killed")
    assert killed["outcome"] == "abandoned" and killed["canary"]["phase"] == "aborted"


def test_status_and_history_show_the_canary(cbed, capsys):
    """status shows the running canary's share; history --deployments shows each step's figures."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    b = canary_bundle(cbed, "v2", canary={"step_seconds": 60, "max_wait": 60})
    ok(deploy(b, "d-two", events=("ApplicationStop", "BeforeInstall")))
    with Load(cbed.url + "/", threads=2):
        proc = _start_hook(b, "ApplicationStart", "d-two")
        wait_for(lambda: _canary_share(cbed) == 10, timeout=60, what="the canary's first step")
        main(["status", "--state-dir", str(cbed.state_dir), "--json"])
        status = json.loads(capsys.readouterr().out)
        main(["status", "--state-dir", str(cbed.state_dir)])
        text = capsys.readouterr().out
        assert main(["canary", "promote", "--state-dir", str(cbed.state_dir)]) == 0
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert status["canary"]["share"] == 10 and status["canary"]["new"] == "green", status["canary"]
    assert "canary:      green gets 10 % of requests" in text, text
    ok(deploy(b, "d-two", events=("ValidateService",)))
    capsys.readouterr()
    main(["history", "--deployments", "--state-dir", str(cbed.state_dir)])
    hist = capsys.readouterr().out
    assert "canary promoted" in hist and "10 %: green" in hist, hist


# --------------------------------------------------------------------------- what clients experienced (issue 24)

def _bad_canary(cbed, form, env, load_timeout=10.0, threads=4, canary=None):
    """Deploy v1, then v2 with ``env`` under load: (runs, load result, samples after the abort)."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    bad = canary_bundle(cbed, "v2", canary=canary, container={"env": {"HOST": "127.0.0.1", **env}})
    with Load(cbed.url + "/", threads=threads, timeout=load_timeout) as load, Shares(cbed, load) as shares:
        runs = deploy(bad, "d-bad")
        t_end = time.monotonic() - load._t0
        wait_for(lambda: len([s for s in load.result.samples if s.t > t_end]) > 300, what="load after the abort")
    windows = shares.windows()
    assert windows, shares.marks
    # after the abort: from 0.5 s after the step's end was marked (or from the hook's end, if that is earlier)
    after = [s for s in load.result.samples if s.t > min(windows[-1][2] + 0.5, t_end)]
    return runs, load.result, after


def _assert_aborted_old_serves(cbed, runs, r, after, *kinds, at=(10,)):
    """The canary aborted at one of the shares ``at`` (percent) for one of ``kinds``; blue alone serves after."""
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert any(last.last_line.startswith(f"ERROR ApplicationStart: canary aborted at {share} %: new colour green ")
               for share in at), last.last_line
    assert any(k in last.last_line for k in kinds), last.last_line
    assert len(after) > 100 and not [s for s in after if not s.ok], r.summary()      # 0 failed after the abort
    assert {s.header for s in after} == {"blue"} and {s.version for s in after} == {"v1"}
    st = cbed.state()
    assert (st["live"], st["in_progress"]) == ("blue", None)
    assert [c.labels["bluegreen.colour"] for c in cbed.containers()] == ["blue"]
    assert "canary" not in cbed.include() and "colour=blue" in cbed.include()
    return st["deployments"][-1]["canary"]["steps"][-1]


def test_canary_whose_root_hangs_is_aborted(cbed, form):
    """v2's / never answers (its /health is fine, so the probes pass): clients give up after 2 s, nginx logs
    499 with no upstream status, counted as `gave_up` against green; aborted; 0 failed afterwards."""
    runs, r, after = _bad_canary(cbed, form, {"HANG_ROOT": "1"}, load_timeout=2.0)
    step = _assert_aborted_old_serves(cbed, runs, r, after, "gave_up")
    assert step["new"]["failures"].get("gave_up", 0) >= 1, step
    assert step["probes"]["sent"] > 0 and step["probes"]["failed"] == 0, step
    print(f"\nhang ({form}): {r.summary()}; step {step['new']}; last line: {runs[-1].last_line}")


def test_canary_that_drops_connections_is_aborted(cbed, form):
    """v2's / closes the connection without answering: set form, clients get 502 (reset) during the step;
    upstream form, nginx retries on blue (clients see 200) but green's failed attempts count; aborted; 0 failed
    afterwards."""
    runs, r, after = _bad_canary(cbed, form, {"DROP_ROOT": "1"})
    step = _assert_aborted_old_serves(cbed, runs, r, after, "reset", "not answered by green")
    if form == "upstream":
        assert not [s for s in r.samples if not s.ok], r.summary()        # nginx's retry saved every request
    if "reset" in runs[-1].last_line:
        assert step["new"]["failures"].get("reset", 0) >= 1, step
    print(f"\ndrop ({form}): {r.summary()}; step {step['new']}; last line: {runs[-1].last_line}")


def test_canary_five_times_slower_is_aborted_by_latency(cbed, form):
    """v1 answers / in 200 ms, v2 in 1 s (200 OK, no error at all): the p95 rule aborts it, 0 failed, in both
    include forms (set: the $request_id split; upstream: the weighted upstream). (Long sleeps: on busy shared
    cores each CGI request also waits 100-300 ms for a CPU, which would hide a 5x slowdown of 50 ms vs 250 ms
    at p95.)"""
    ok(deploy(canary_bundle(cbed, "v1", container={"env": {"HOST": "127.0.0.1", "SLOW_MS": "200"}}), "d-one"))
    slow = canary_bundle(cbed, "v2", container={"env": {"HOST": "127.0.0.1", "SLOW_MS": "1000"}},
                         canary={"max_wait": 40})
    with Load(cbed.url + "/", threads=6) as load, Shares(cbed, load) as shares:
        runs = deploy(slow, "d-slow")
        t_end = time.monotonic() - load._t0
        wait_for(lambda: len([s for s in load.result.samples if s.t > t_end]) > 100, what="load after the abort")
    r, last = load.result, runs[-1]
    assert r.failed == 0, (r.summary(), [(round(s.t, 2), s.cause, s.header) for s in r.samples if not s.ok][:10],
                           shares.marks, last.output)
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    # at 10 % or at 50 %: on 2 busy shared cores the old colour's own p95 swells (50 ms of sleep measured
    # at up to 190 ms), so 20 latencies at 10 % may not yet show 2x; either way it is never promoted
    assert re.search(r"canary aborted at (10|50) %: new colour green p95 \S+s vs old ", last.last_line), last.output
    assert cbed.state()["live"] == "blue"
    after = [s for s in r.samples if s.t > shares.windows()[-1][2] + 0.5]
    assert after and {s.version for s in after} == {"v1"}
    print(f"\nslow ({form}): {r.summary()}; last line: {last.last_line}")


def test_probes_alone_catch_a_hanging_root_on_a_quiet_app(cbed):
    """No client traffic at all: the hook's own probes of / (forced to green by the token, 1 s timeout) give up,
    nginx logs 499s for them, and they abort the canary; the step record counts them as probes."""
    ok(deploy(canary_bundle(cbed, "v1"), "d-one"))
    b = canary_bundle(cbed, "v2", canary={"probe_paths": ["/"], "probe_timeout": 1, "probe_interval": 0.2},
                      container={"env": {"HOST": "127.0.0.1", "HANG_ROOT": "1"}})
    runs = deploy(b, "d-quiet")
    last = runs[-1]
    assert (last.event, last.returncode) == ("ApplicationStart", 1), last.output
    assert "canary aborted at 10 %: new colour green failed " in last.last_line, last.output
    assert "gave_up" in last.last_line, last.last_line
    step = cbed.state()["deployments"][-1]["canary"]["steps"][-1]
    # besides the probes, only the hook's own checks after the reload (a few /health requests) were logged
    assert step["new"]["probes"] >= 1 and step["new"]["failures"]["gave_up"] >= 1, step
    assert step["probes"]["failed"] >= 1 and step["old"]["failed"] == 0, step
    assert cbed.state()["live"] == "blue" and get(cbed.url + "/")[1].strip() == "v1"
