"""Pure logic, no services: config validation, include rendering, state claims, verdicts, argv/kwargs builders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bluegreen_hooks import config
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import health, nginx, wait
from bluegreen_hooks.lifecycle import runner
from bluegreen_hooks.runtime import docker as containers

BASE = {"app": "shop", "container": {"image": "shop:1"}}


def parse(raw, tmp_path=Path("/srv/bundle")):
    return config.parse(raw, Path(tmp_path) / "bluegreen.toml", environ={})


def with_(table, **values):
    raw = {**BASE, table: {**BASE.get(table, {}), **values}}
    return raw


def test_defaults_are_the_classic_deploy_sh_layout():
    """Defaults: blue 8081, green 8082 on 127.0.0.1, backend-url.inc with $service_url, nginx -t."""
    cfg = parse(BASE)
    assert (cfg.port("blue"), cfg.port("green"), cfg.host) == (8081, 8082, "127.0.0.1")
    assert str(cfg.nginx.include) == "/etc/nginx/conf.d/backend-url.inc"
    assert (cfg.nginx.variable, cfg.nginx.test) == ("service_url", ("nginx", "-t"))
    assert cfg.nginx.reload in (("systemctl", "reload", "nginx"), ("nginx", "-s", "reload"))
    assert cfg.state_dir == Path("/var/lib/bluegreen-hooks")
    assert cfg.other("blue") == "green" and cfg.container_name("green") == "shop-green"


@pytest.mark.parametrize("raw, message", [
    ({"container": {"image": "x"}}, "bluegreen.toml: app: is required"),
    ({**BASE, "app": "Shop App"}, "bluegreen.toml: app: should be a name of lowercase letters"),
    ({**BASE, "colour": {}}, "bluegreen.toml: colour: unknown key (did you mean 'colours'?)"),
    (with_("colours", green="80; evil"), "bluegreen.toml: colours/green: should be a port (1-65535), not '80; evil'"),
    (with_("colours", green=70000), "colours/green: should be a port (1-65535), not 70000"),
    (with_("colours", green=True), "colours/green: should be a port (1-65535), not True"),
    (with_("colours", blue=9000, green=9000), "colours/green: should differ from colours/blue (both are 9000)"),
    (with_("colours", host="127.0.0.1;}"), "colours/host: should be an IP address or a hostname, not '127.0.0.1;}'"),
    (with_("colours", host="a b"), "colours/host: should be an IP address or a hostname"),
    ({"app": "shop", "container": {}}, "container/build: set exactly one of container/build"),
    ({"app": "shop", "container": {"image": "a", "build": "."}}, "container/build: set exactly one"),
    (with_("container", image="Bad Image!"), "container/image: should be an image reference"),
    (with_("container", network="overlay"), "container/network: should be \"host\" or \"bridge\""),
    (with_("container", network="bridge"), "container/port: is required with network = \"bridge\""),
    (with_("container", env={"A B": "x"}), "container/env/A B: should be a name of letters, digits and _"),
    (with_("container", stop_grace_period=-1), "container/stop_grace_period: should be a number of seconds"),
    (with_("health", path="/health; return 200"), "health/path: should be an HTTP path starting with /"),
    (with_("health", path="health"), "health/path: should be an HTTP path"),
    (with_("health", statuses=[200, "ok"]), "health/statuses: should be a list of HTTP statuses"),
    (with_("health", deadline=0), "health/deadline: should be a number of seconds from 1 to 3600, not 0"),
    (with_("nginx", include="/etc/nginx/x.inc;\nlocation"), "nginx/include: should be an absolute path"),
    (with_("nginx", include="relative.inc"), "nginx/include: should be an absolute path"),
    (with_("nginx", variable="service_url;"), "nginx/variable: should be an nginx variable name without '$'"),
    (with_("nginx", variable="$x"), "nginx/variable: should be an nginx variable name"),
    (with_("nginx", upstream="a}b"), "nginx/upstream: should be an upstream name"),
    (with_("nginx", form="block"), "nginx/form: should be \"set\" or \"upstream\""),
    (with_("nginx", test="nginx -t"), "nginx/test: should be a command as a list of strings"),
    (with_("nginx", reload=[]), "nginx/reload: should be a command as a list of strings"),
    (with_("nginx", public_url="ftp://x/"), "nginx/public_url: should be an http(s) URL"),
    (with_("nginx", public_url="http://a b/"), "nginx/public_url: should be an http(s) URL"),
    (with_("nginx", colour_header="X-Colour: 1"), "nginx/colour_header: should be an HTTP header name"),
    (with_("deploy", state_dir="var/lib"), "deploy/state_dir: should be an absolute path"),
    (with_("deploy", keep_images=-1), "deploy/keep_images: should be an integer (0-100), not -1"),
    (with_("deploy", drain=3), "deploy/drain: unknown key (did you mean 'drain_timeout'?)"),
])
def test_bad_config_is_refused_with_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        parse(raw)
    text = str(err.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize("raw, key", [
    ({**BASE, "app": "shop\n"}, "app"),
    (with_("colours", host="127.0.0.1\n"), "colours/host"),
    (with_("colours", host="example.com\n"), "colours/host"),
    (with_("health", path="/health\n"), "health/path"),
    (with_("nginx", variable="service_url\n"), "nginx/variable"),
    (with_("container", image="shop:1\n"), "container/image"),
    (with_("nginx", include="/etc/nginx/backend-url.inc\n"), "nginx/include"),
    (with_("nginx", colour_header="X-Colour\n"), "nginx/colour_header"),
    (with_("container", env={"A\n": "1"}), "container/env/A\\n"),   # the key is escaped: one line
])
def test_a_trailing_newline_is_refused_naming_the_key(raw, key):
    """Patterns match the whole value: a trailing newline (which ``$`` lets through) is a bad value, exit 2."""
    with pytest.raises(ConfigError) as err:
        parse(raw)
    assert str(err.value).startswith(f"bluegreen.toml: {key}: ") and err.value.exit_code == 2


def test_a_trailing_newline_in_the_state_dir_variable_is_refused():
    with pytest.raises(ConfigError, match="BLUEGREEN_STATE_DIR: should be an absolute path"):
        config.parse(BASE, Path("/b/bluegreen.toml"), environ={"BLUEGREEN_STATE_DIR": "/tmp/st\n"})


def test_build_context_must_exist_next_to_the_config(tmp_path):
    with pytest.raises(ConfigError, match=r"container/build: build context 'app' is not a folder next to bluegreen"):
        parse({"app": "shop", "container": {"build": "app"}}, tmp_path)
    (tmp_path / "app").mkdir()
    with pytest.raises(ConfigError, match=r"container/dockerfile: 'Dockerfile' not found in 'app'"):
        parse({"app": "shop", "container": {"build": "app"}}, tmp_path)
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    assert parse({"app": "shop", "container": {"build": "app"}}, tmp_path).container.build == tmp_path / "app"


def test_state_dir_environment_variable_overrides_the_config():
    cfg = config.parse(BASE, Path("/b/bluegreen.toml"), environ={"BLUEGREEN_STATE_DIR": "/tmp/st"})
    assert cfg.state_dir == Path("/tmp/st")
    with pytest.raises(ConfigError, match="BLUEGREEN_STATE_DIR: should be an absolute path"):
        config.parse(BASE, Path("/b/bluegreen.toml"), environ={"BLUEGREEN_STATE_DIR": "rel;x"})


def test_load_reports_toml_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no deploy config here"):
        config.load(tmp_path / "bluegreen.toml")
    (tmp_path / "bluegreen.toml").write_text("app = \n")
    with pytest.raises(ConfigError, match=r"bluegreen\.toml: not valid TOML"):
        config.load(tmp_path / "bluegreen.toml")


def test_render_include_set_form_is_a_drop_in_for_backend_url_inc():
    cfg = parse(BASE)
    assert nginx.render_include(cfg, "green", "d-ABC123") == (
        "# bluegreen-hooks: app=shop colour=green deployment=d-ABC123\n"
        "# Written by bluegreen-hooks; edits are replaced at the next switch.\n"
        "set $service_url http://127.0.0.1:8082;\n"
        "set $bluegreen_colour green;\n")


def test_render_include_upstream_form_and_ipv6_host():
    cfg = parse({**BASE, "colours": {"host": "::1"}, "nginx": {"form": "upstream", "upstream": "shop_up"}})
    text = nginx.render_include(cfg, "blue", "d-1")
    assert "upstream shop_up {\n    server [::1]:8081;\n}\n" in text
    assert "map $pid $bluegreen_colour {\n    default blue;\n}\n" in text


def test_render_include_refuses_unsafe_deployment_ids():
    with pytest.raises(ValueError):
        nginx.render_include(parse(BASE), "blue", "d-1;}\nevil")


@pytest.mark.parametrize("text, colour", [
    ("# bluegreen-hooks: app=shop colour=green deployment=d-1\nset $service_url http://127.0.0.1:8082;\n", "green"),
    ("set $service_url http://127.0.0.1:8081;\n", "blue"),          # the legacy deploy.sh include
    ("upstream x { server 127.0.0.1:8082; }\n", "green"),
    ("set $service_url http://127.0.0.1:9999;\n", None),
    ("", None),
    ("# bluegreen-hooks: app=other colour=green deployment=d-1\n", None),
])
def test_include_colour_reads_ours_and_legacy_includes(text, colour):
    assert nginx.include_colour(parse(BASE), text) == colour


def test_first_error_picks_the_emerg_line():
    out = ("nginx: [emerg] unknown directive \"sett\" in /x.inc:2\n"
           "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
    assert nginx.first_error(out) == 'unknown directive "sett" in /x.inc:2'


def test_last_line_is_short_and_keeps_its_end():
    line = runner.last_line("ApplicationStart", "x" * 500 + " next step: redeploy")
    assert len(line) <= 300 and line.startswith("ERROR ApplicationStart: xxx") and line.endswith("next step: redeploy")


def test_run_kwargs_host_network_gives_the_colour_port_in_env():
    kw = containers.run_kwargs(parse(with_("container", env={"A": "1"})), "green", "img:1", "d-1")
    assert kw["network_mode"] == "host" and "ports" not in kw
    assert kw["environment"] == {"A": "1", "PORT": "8082"}
    assert kw["labels"] == {"bluegreen.app": "shop", "bluegreen.colour": "green", "bluegreen.deployment": "d-1",
                            "bluegreen.image": "img:1"}
    assert kw["name"] == "shop-green" and kw["restart_policy"] == {"Name": "unless-stopped"}


def test_run_kwargs_bridge_network_publishes_the_colour_port_on_the_host_ip():
    """Real users may publish ports through a bridge: container port 3000 -> 127.0.0.1:8081 for blue."""
    kw = containers.run_kwargs(parse(with_("container", network="bridge", port=3000)), "blue", "img:1", "d-1")
    assert kw["network_mode"] == "bridge" and kw["ports"] == {"3000/tcp": ("127.0.0.1", 8081)}
    assert kw["environment"] == {}


def test_image_tag_is_a_valid_docker_tag():
    assert containers.image_tag(parse(BASE), "d-ABC/12:3") == "bluegreen-shop:d-ABC-12-3"


@pytest.mark.parametrize("attrs, fatal, docker_health", [
    ({"State": {"Status": "running"}, "RestartCount": 0}, None, None),
    ({"State": {"Status": "running", "Health": {"Status": "starting"}}}, None, "starting"),
    ({"State": {"Status": "exited", "ExitCode": 3}}, "container exited with code 3", None),
    ({"State": {"Status": "restarting", "ExitCode": 1}, "RestartCount": 2},
     "container is crash-looping (restarted 2 time(s), last exit code 1)", None),
])
def test_container_verdict(attrs, fatal, docker_health):
    assert health.container_verdict(attrs) == (fatal, docker_health)


def test_poll_returns_the_first_truthy_value_and_none_after_the_deadline():
    calls = []
    assert wait.poll(lambda: calls.append(1) or (len(calls) >= 3 and "yes"), 5, sleep=lambda s: None) == "yes"
    assert wait.poll(lambda: False, 0.05, interval=0.01) is None


def _python39():
    import glob
    import shutil

    candidates = [*sorted(glob.glob("/root/.pyenv/versions/3.9*/bin/python3.9")), shutil.which("python3.9") or ""]
    return next((c for c in candidates if c and "/shims/" not in c), None)


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 on this machine (hosts may run 3.9)")
def test_package_compiles_and_its_stdlib_modules_import_on_python_3_9():
    """Hosts run Python 3.9: the package and the hook launcher compile there, and the modules a hook loads
    before docker/tenacity (cli, config, decide, model, host.nginx, host.store, lifecycle) import and parse a config."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    py = _python39()
    subprocess.run([py, "-m", "compileall", "-q", str(root / "bluegreen_hooks")], check=True)
    subprocess.run([py, "-m", "py_compile", str(root / "hooks" / "launch")], check=True)
    code = ("from pathlib import Path\n"
             "from bluegreen_hooks import cli, config, decide, model\n"
             "from bluegreen_hooks.host import nginx, store\n"
             "from bluegreen_hooks.lifecycle import events, runner\n"
             "from bluegreen_hooks.config import appspec\n"
             "cfg = config.parse({'app': 'shop', 'container': {'image': 'shop:1'}}, Path('/b/bluegreen.toml'), {})\n"
             "print(nginx.render_include(cfg, 'green', 'd-1').splitlines()[2])\n")
    # tomli comes from the bundle's pinned wheels on a 3.9 host: put that wheel on the path (zipimport)
    from bluegreen_hooks.delivery.wheels import runtime_wheels, wheel_cache

    tomli = next(whl for whl, _ in runtime_wheels(wheel_cache()) if whl.name.startswith("tomli-"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{root}:{tomli}", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "set $service_url http://127.0.0.1:8082;"


def test_sigterm_is_never_swallowed_by_an_except_exception_on_the_way():
    """A SIGTERM that lands inside a probe's ``except Exception`` (e.g. reading nginx -T for the verify mode)
    still ends the hook: the handler raises a BaseException, reported as one Terminated line."""
    import io

    from bluegreen_hooks.lifecycle import runner

    def probe() -> str:
        try:
            wait.on_sigterm(15, None)
        except Exception:   # what nginx_conf.verify_mode does with its own errors
            return "swallowed"
        return "not raised"

    with pytest.raises(BaseException) as caught:
        probe()
    assert not isinstance(caught.value, Exception)
    from bluegreen_hooks.errors import Terminated, as_hook_error
    reported = as_hook_error(caught.value)
    assert isinstance(reported, Terminated)
    out = io.StringIO()
    assert runner._failed("ValidateService", reported, None, out, 0.1) == 1
    assert out.getvalue().strip() == "ERROR ValidateService: stopped by SIGTERM (the CodeDeploy agent's timeout?)"


def test_a_wait_after_a_lost_sigterm_ends_with_interrupted():
    """Should the handler's exception be lost (raised inside a finalizer), the next sleep of any wait raises
    it again: a health wait never runs on to its deadline after SIGTERM."""
    from bluegreen_hooks.errors import Interrupted
    from bluegreen_hooks.host import wait

    try:
        wait.request_stop()
        with pytest.raises(Interrupted):
            wait.poll(lambda: False, timeout=30, interval=0.01)
    finally:
        wait._stop["requested"] = False


def test_deploy_retire_is_wait_by_default_and_refuses_anything_but_wait_or_background():
    assert parse(BASE, "/b").retire == "wait"
    assert parse(with_("deploy", retire="background"), "/b").retire == "background"
    with pytest.raises(ConfigError, match='deploy/retire: should be "wait" or "background", not \'sideways\''):
        parse(with_("deploy", retire="sideways"), "/b")


def test_a_retiring_record_of_the_wrong_shape_is_bad_state():
    from bluegreen_hooks.model import BadState, State

    good = {"app": "shop", "deployments": [], "events": [],
            "retiring": {"colour": "blue", "live": "green", "deployment": "d-2", "since": 1.0,
                         "workers": [[10, 20]], "pid": 5, "pid_start": 7, "phase": "draining"}}
    r = State.from_json(good, "shop").retiring
    assert r is not None and (r.colour, r.pid, r.cancelled) == ("blue", 5, False)
    assert State.from_json(State.from_json(good, "shop").to_json(), "shop").retiring == r
    for bad in ({"colour": "blue", "live": "blue"}, {"phase": "done"}, {"pid": "5"}, {"deployment": "x;y"}):
        with pytest.raises(BadState):
            State.from_json({**good, "retiring": {**good["retiring"], **bad}}, "shop")


def _state_with(stage=None, verify_mode=None, phase="running", request=None):
    ip = {"id": "d-1", "target": "green", "started": 1.0, "stage": stage, "verify_mode": verify_mode,
          "canary": {"old": "blue", "new": "green", "share": 10, "phase": phase, "request": request, "steps": []}}
    return {"app": "shop", "deployments": [], "events": [], "in_progress": ip}


def test_every_closed_set_value_an_earlier_version_wrote_reads_back():
    """The values earlier versions wrote (git history: the stages finish/finish_event wrote, the canary's phases and
    requests) read back as they were; a file without in_progress/verify_mode (every file before it existed) reads
    as undecided and is written back without the key."""
    from bluegreen_hooks.model import State

    for stage in (None, "BeforeInstall", "switched", "validated"):
        for phase, request in (("running", None), ("running", "abort"), ("promoted", "promote"), ("aborted", "abort")):
            ip = State.from_json(_state_with(stage, None, phase, request), "shop").in_progress
            assert ip is not None and ip.canary is not None
            assert (ip.stage, ip.verify_mode, ip.canary.phase, ip.canary.request) == (stage, None, phase, request)
            assert "verify_mode" not in ip.to_json()
    old = _state_with("switched")
    del old["in_progress"]["verify_mode"], old["in_progress"]["canary"]["phase"]
    ip = State.from_json(old, "shop").in_progress
    assert ip is not None and ip.canary is not None and (ip.verify_mode, ip.canary.phase) == (None, "running")
    for mode in ("header", "generation"):
        ip = State.from_json(_state_with("switched", mode), "shop").in_progress
        assert ip is not None and ip.verify_mode == mode and ip.to_json()["verify_mode"] == mode


@pytest.mark.parametrize("bad, message", [
    ({"stage": "started"}, "in_progress/stage: should be BeforeInstall, switched, validated or null, not 'started'"),
    ({"verify_mode": "colour"}, "in_progress/verify_mode: should be header, generation or null, not 'colour'"),
    ({"phase": "done"}, "in_progress/canary/phase: should be running, promoted, aborted or null, not 'done'"),
    ({"request": 1}, "in_progress/canary/request: should be promote, abort or null, not 1"),
])
def test_a_value_outside_a_closed_set_is_bad_state_naming_key_and_value(bad, message):
    """A value no version writes is BadState: one line naming the key's path and the value."""
    from bluegreen_hooks.model import BadState, State

    with pytest.raises(BadState) as caught:
        State.from_json(_state_with(**bad), "shop")
    assert str(caught.value) == message


def test_holders_of_several_ports_agrees_with_one_port_at_a_time():
    import os
    import socket

    from bluegreen_hooks.host import procfs

    socks = [socket.socket() for _ in range(2)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.listen()
        ports = [s.getsockname()[1] for s in socks]
        both = procfs.holders_of(ports)
        assert set(both) == set(ports)
        for port in ports:
            assert both[port] == procfs.holders(port) and [pid for pid, _ in both[port]] == [os.getpid()]
    finally:
        for s in socks:
            s.close()
    assert procfs.holders_of([ports[0]]) == {ports[0]: []}   # closed: nobody holds it


def test_process_wide_state_a_test_changes_is_put_back_after_it():
    """The autouse reset (helpers.process_state_restored): a SIGTERM handled in-process (as the test above does)
    leaves wait's stop flag set, and every later wait in the session would end at once with Interrupted; the
    flag, the no-sleep switch, signal handlers, the environment and the per-client health checks are put back."""
    import os
    import signal

    from bluegreen_hooks.errors import Interrupted
    from bluegreen_hooks.host import wait
    from bluegreen_hooks.runtime import healthcheck
    from tests.helpers import process_state_restored

    handler = signal.getsignal(signal.SIGTERM)
    with process_state_restored():
        with pytest.raises(Interrupted):
            wait.on_sigterm(signal.SIGTERM, None)
        wait.testing(True)
        signal.signal(signal.SIGTERM, wait.on_sigterm)
        os.environ["BLUEGREEN_TEST_LEAK"] = "1"
        healthcheck.early_checks(object())
        with pytest.raises(Interrupted):   # what the next test's waits would get, without the reset
            wait.poll(lambda: False, timeout=5, interval=0.01)
    calls: list[int] = []
    assert wait.poll(lambda: calls.append(1) or len(calls) >= 2, timeout=5, interval=0.01)   # it slept once
    assert (wait._stop["requested"], wait._testing["on"], healthcheck._shared) == (False, False, {})
    assert signal.getsignal(signal.SIGTERM) is handler and "BLUEGREEN_TEST_LEAK" not in os.environ


def test_a_port_holder_that_ended_since_the_walk_is_not_foreign():
    """CI saw a switch back refused: busybox httpd's per-request child was found holding the port, then
    exited before its cgroup was read, and an unreadable cgroup named it foreign. A live process of no
    container still is."""
    import os
    import subprocess

    from bluegreen_hooks.host import ports

    gone = subprocess.Popen(["true"])
    gone.wait()
    assert ports.foreign_holder(1, [], found=[(gone.pid, "httpd -f")]) is None
    assert ports.foreign_holder(1, [], found=[(os.getpid(), "python")]) == f"pid {os.getpid()} (python)"


def test_an_operator_operation_id_names_its_kind_time_and_process():
    from bluegreen_hooks.names import operation_id

    assert operation_id("rollback", now=0, pid=42) == "rollback-19700101T000000Z-42"
    assert operation_id("maintenance", now=86400.5, pid=7) == "maintenance-19700102T000000Z-7"
    assert operation_id("rollback").endswith(f"-{os.getpid()}")


def test_a_colours_ports_are_its_first_routed_port_then_each_further_routed_service(tmp_path):
    for name in ("b.yml", "g.yml"):
        (tmp_path / name).write_text("services: {}\n")
    cfg = config.parse({"app": "shop", "colours": {"blue": 8081, "green": 8082},
                        "compose": {"files": {"blue": "b.yml", "green": "g.yml"}, "routed": ["web", "api"],
                                    "routes": {"api": {"blue": 9081, "green": 9082}}}},
                       tmp_path / "bluegreen.toml")
    assert cfg.colour_port_keys("green") == [("colours/green", 8082), ("compose/routes/api/green", 9082)]
    assert cfg.colour_ports("blue") == [8081, 9081]


def test_a_bug_in_an_event_prints_its_traceback_then_one_last_line(tmp_path):
    """An exception that is not a HookError is a bug: the hook prints its traceback (imported only then), then
    the one ERROR line naming it, and exits 1."""
    import io

    (tmp_path / "bluegreen.toml").write_text(
        f'app = "bug"\n[container]\nimage = "bluegreen-base:busybox"\n[deploy]\nstate_dir = "{tmp_path / "state"}"\n')

    def describe(*_args: object) -> list[str]:
        raise RuntimeError("a bug in the planner")

    out = io.StringIO()
    assert runner.run_event("ApplicationStop", tmp_path, {}, out=out, describe=describe) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "Traceback (most recent call last):", lines
    assert any('raise RuntimeError("a bug in the planner")' in ln for ln in lines), lines
    assert lines[-1] == ("ERROR ApplicationStop: unexpected RuntimeError: a bug in the planner; see the traceback "
                         "above"), lines


def test_lines_said_from_many_threads_at_once_stay_whole(tmp_path):
    """The routes' health waits say their lines from their own threads: every line reaches the output whole, one
    per line (print's separate newline write let two run into one)."""
    import io
    import re
    import sys
    import threading

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # switch threads as often as possible: a torn line shows at once
    try:
        # unbuffered, as a hook's stdout is under PYTHONUNBUFFERED: every write is a system call (the GIL is let go)
        with io.TextIOWrapper(open(tmp_path / "out.txt", "wb", buffering=0), write_through=True) as out:
            say = runner.Reporter("ApplicationStart", out)
            threads = [threading.Thread(target=lambda i=i: [say(f"route {i} line {j}") for j in range(300)])
                       for i in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(old)
    lines = (tmp_path / "out.txt").read_text().split("\n")
    assert lines.pop() == ""
    bad = [ln for ln in lines if not re.fullmatch(r"\[ApplicationStart \+\d+\.\d\ds\] route \d line \d+", ln)]
    assert not bad and len(lines) == 6 * 300, bad[:3]
