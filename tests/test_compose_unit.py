"""Pure logic of the compose backend: the [compose] table, argv builders (v1 and v2), variables, include."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from bluegreen_hooks.config import parse
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import nginx
from bluegreen_hooks.runtime import compose
from bluegreen_hooks.runtime import compose_argv as argv_of


def raw(**compose_table):
    return {"app": "shop", "colours": {"blue": 8081, "green": 8082}, "compose": compose_table}


@pytest.fixture
def bundle(tmp_path):
    for name in ("docker-compose.blue.yml", "docker-compose.green.yml", "docker-compose.yml"):
        (tmp_path / name).write_text("services: {}\n")
    return tmp_path


def load(bundle: Path, data: dict):
    return parse(data, bundle / "bluegreen.toml", environ={})


TWO_ROUTED = dict(files={"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"},
                  routed=["web", "api"], routes={"api": {"blue": 9081, "green": 9082}})


def test_compose_table_replaces_the_container_table(bundle):
    """With [compose], [container] is not required; the defaults are the documented ones."""
    cfg = load(bundle, raw(files={"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml"}))
    cc = cfg.compose
    assert cc.files == {"blue": bundle / "docker-compose.blue.yml", "green": bundle / "docker-compose.green.yml"}
    assert (cc.single, cc.build, cc.pull, cc.remove_volumes, cc.services, cc.routed, cc.command) == \
        (False, False, False, False, None, (), None)
    assert [argv_of.project_name(cfg, c) for c in ("blue", "green")] == ["shop-blue", "shop-green"]
    assert cfg.extra_routes == ()


def test_one_file_form_uses_the_same_file_for_both_colours(bundle):
    """`file = ...` gives both colours the same file; the variables make them differ."""
    cfg = load(bundle, raw(file="docker-compose.yml", project="{app}_{colour}", build=True))
    assert cfg.compose.single
    assert cfg.compose.files["blue"] == cfg.compose.files["green"] == bundle / "docker-compose.yml"
    assert argv_of.project_name(cfg, "green") == "shop_green"


@pytest.mark.parametrize("table, message", [
    ({}, "compose/file: set exactly one of compose/file (one file, colours set by variables) or "
         "compose/files = { blue = \"...\", green = \"...\" }"),
    ({"file": "a.yml", "files": {}}, "compose/file: set exactly one of"),
    ({"file": "missing.yml"}, "compose/file: compose file 'missing.yml' not found next to bluegreen.toml"),
    ({"file": "../x.yml"}, "compose/file: should be a compose file name relative to bluegreen.toml"),
    ({"file": "a b.yml"}, "compose/file: should be a compose file name relative to bluegreen.toml"),
    ({"files": {"blue": "docker-compose.blue.yml"}},
     "compose/files/green: is required (the compose file of the green stack)"),
    ({"files": {"blue": "docker-compose.blue.yml", "green": "nope.yml"}},
     "compose/files/green: compose file 'nope.yml' not found next to bluegreen.toml"),
    ({"files": {"blue": "docker-compose.blue.yml", "green": "docker-compose.green.yml", "red": "x"}},
     "compose/files/red: unknown key"),
    ({"file": "docker-compose.yml", "project": "shop"}, "compose/project: should contain {colour}"),
    ({"file": "docker-compose.yml", "project": "{app}-{color}"}, "compose/project: may only use {app} and {colour}"),
    ({"file": "docker-compose.yml", "project": "Shop.{colour}"},
     "compose/project: gives 'Shop.blue'; a compose project name is lowercase letters, digits, '-' and '_'"),
    ({"file": "docker-compose.yml", "build": "yes"}, "compose/build: should be true or false, not 'yes'"),
    ({"file": "docker-compose.yml", "remove_volumes": 1}, "compose/remove_volumes: should be true or false, not 1"),
    ({"file": "docker-compose.yml", "services": "web"}, "compose/services: should be a list of compose service names"),
    ({"file": "docker-compose.yml", "services": ["web", "web"]}, "compose/services: names a service twice"),
    ({"file": "docker-compose.yml", "routed": ["web;"]}, "compose/routed: should be a list of compose service names"),
    ({"file": "docker-compose.yml", "routed": ["web", "api"]},
     "compose/routes/api: is required: a table with its port per colour, e.g. { blue = 9081, green = 9082 }"),
    ({"file": "docker-compose.yml", "routed": ["web", "api"], "routes": {"api": {"blue": 9081}}},
     "compose/routes/api/green: is required (the port api listens on in the green stack)"),
    ({"file": "docker-compose.yml", "routed": ["web", "api"], "routes": {"api": {"blue": 8082, "green": 9}}},
     "compose/routes/api/blue: port 8082 is already used by colours/green"),
    ({"file": "docker-compose.yml", "routed": ["web", "api"], "routes": {"api": {"blue": 9081, "green": "x"}}},
     "compose/routes/api/green: should be a port (1-65535), not 'x'"),
    ({"file": "docker-compose.yml", "routed": ["web", "api"],
      "routes": {"api": {"blue": 9081, "green": 9082, "variable": "service_url"}}},
     "compose/routes/api/variable: $service_url is already used by nginx/variable"),
    ({"file": "docker-compose.yml", "routed": ["web", "api"],
      "routes": {"api": {"blue": 9081, "green": 9082, "variable": "a b"}}},
     "compose/routes/api/variable: should be an nginx variable name without '$', not 'a b'"),
    ({"file": "docker-compose.yml", "routed": ["web"], "routes": {"web": {"blue": 9081, "green": 9082}}},
     "compose/routes/web: is the first routed service"),
    ({"file": "docker-compose.yml", "routed": ["web"], "routes": {"api": {}}}, "compose/routes/api: unknown key"),
    ({"file": "docker-compose.yml", "env": {"A B": "1"}}, "compose/env/A B: should be a name of letters, digits and _"),
    ({"file": "docker-compose.yml", "command": "docker-compose"}, "compose/command: should be a command as a list"),
    ({"file": "docker-compose.yml", "flies": 1}, "compose/flies: unknown key (did you mean 'files'?)"),
])
def test_bad_compose_table_is_refused_with_one_line_naming_the_key(bundle, table, message):
    """Every key of [compose] is validated; the error names the file and the key path."""
    with pytest.raises(ConfigError) as e:
        load(bundle, raw(**table))
    assert str(e.value).startswith("bluegreen.toml: " + message), str(e.value)
    assert "\n" not in str(e.value)


def test_container_table_next_to_compose_is_refused(bundle):
    """[container] and [compose] together would be ambiguous."""
    data = raw(file="docker-compose.yml")
    data["container"] = {"image": "x:1"}
    with pytest.raises(ConfigError, match=r"^bluegreen.toml: container: remove the \[container\] table"):
        load(bundle, data)


def test_without_compose_container_build_or_image_is_still_required(bundle):
    """The "exactly one of build/image" rule is unchanged for the SDK backend."""
    with pytest.raises(ConfigError, match="container/build: set exactly one of"):
        load(bundle, {"app": "shop"})


# ------------------------------------------------------------------------------------------ argv builders

@pytest.mark.parametrize("cmd", [compose.V1, compose.V2])
def test_argv_builders_exact_output(bundle, cmd):
    """up/pull/down/config argv for compose v1 and v2 (global -p/-f first, flags only when configured)."""
    cfg = load(bundle, raw(**TWO_ROUTED))
    f = str(bundle / "docker-compose.green.yml")
    pre = " ".join(cmd) + f" -p shop-green -f {f}"
    mem = argv_of.memory_override_path(cfg, "green")
    assert " ".join(argv_of.up_argv(cmd, cfg, "green")) == f"{pre} -f {mem} up -d --remove-orphans"
    assert " ".join(argv_of.pull_argv(cmd, cfg, "green")) == f"{pre} pull"
    assert " ".join(argv_of.down_argv(cmd, cfg, "green", 10)) == f"{pre} down --remove-orphans --timeout 10"
    assert " ".join(argv_of.config_argv(cmd, cfg, "green")) == f"{pre} config -q"
    assert " ".join(argv_of.config_argv(cmd, cfg, "green", services=True)) == f"{pre} config --services"
    cfg = load(bundle, raw(**TWO_ROUTED, build=True, pull=True, remove_volumes=True, project="x_{colour}"))
    pre = " ".join(cmd) + f" -p x_green -f {f}"
    assert " ".join(argv_of.up_argv(cmd, cfg, "green")) == f"{pre} -f {mem} up -d --remove-orphans --build"
    assert " ".join(argv_of.pull_argv(cmd, cfg, "green")) == f"{pre} pull --ignore-pull-failures"
    assert " ".join(argv_of.down_argv(cmd, cfg, "green", 2.6)) == f"{pre} down --remove-orphans --timeout 3 --volumes"


def test_v2_argv_is_a_list_of_separate_words(bundle):
    """`docker compose` is two argv words, never one string for a shell."""
    cfg = load(bundle, raw(file="docker-compose.yml"))
    assert argv_of.up_argv(compose.V2, cfg, "blue") == [
        "docker", "compose", "-p", "shop-blue", "-f", str(bundle / "docker-compose.yml"),
        "-f", str(argv_of.memory_override_path(cfg, "blue")), "up", "-d", "--remove-orphans"]


def test_variables_for_the_compose_file(bundle):
    """Colour, ports (one per routed service) and compose/env; ours win over compose/env."""
    cfg = load(bundle, raw(**{**TWO_ROUTED, "routed": ["web", "api-v2"],
                              "routes": {"api-v2": {"blue": 9081, "green": 9082}},
                              "env": {"TAG": "1.2", "BLUEGREEN_COLOUR": "x"}}))
    assert argv_of.variables(cfg, "green", "d-1") == {
        "TAG": "1.2", "BLUEGREEN_APP": "shop", "BLUEGREEN_COLOUR": "green", "BLUEGREEN_OTHER_COLOUR": "blue",
        "BLUEGREEN_HOST": "127.0.0.1", "BLUEGREEN_PORT": "8082", "BLUEGREEN_PROJECT": "shop-green",
        "BLUEGREEN_DEPLOYMENT": "d-1", "BLUEGREEN_PORT_WEB": "8082", "BLUEGREEN_PORT_API_V2": "9082"}


def test_detect_prefers_v2_then_v1_then_fails_with_one_line():
    """`docker compose version` working -> v2; else docker-compose on PATH -> v1; else a clear error."""
    def runner(rc):
        return lambda argv, **kw: subprocess.CompletedProcess(argv, rc, "", "")

    both = {"docker": "/usr/bin/docker", "docker-compose": "/usr/bin/docker-compose"}.get
    assert compose.detect(runner(0), both, use_cache=False) == ("docker", "compose")
    assert compose.detect(runner(1), both, use_cache=False) == ("docker-compose",)
    assert compose.detect(runner(0), {"docker-compose": "/x"}.get, use_cache=False) == ("docker-compose",)
    with pytest.raises(compose.ComposeUnavailable, match=r"^compose: neither `docker compose` \(v2 plugin\) nor "
                                                          r"`docker-compose` \(v1\) works on this host"):
        compose.detect(runner(1), {"docker": "/usr/bin/docker"}.get, use_cache=False)


def test_the_command_found_in_the_background_is_the_one_detect_finds(monkeypatch):
    """detect_soon() (the hooks start it first) runs the detection once in a thread; detect() waits for it."""
    from bluegreen_hooks.runtime import compose_exec

    monkeypatch.setattr(compose_exec, "_detected", {})
    monkeypatch.setattr(compose_exec, "_detecting", [])
    compose_exec.detect_soon()
    compose_exec.detect_soon()
    assert len(compose_exec._detecting) == 1
    found = compose.detect()
    assert not compose_exec._detecting[0].is_alive() and compose_exec._detected["cmd"] == found
    assert found == compose.detect(use_cache=False) and found in (compose.V1, compose.V2)


# ------------------------------------------------------------------------------------------ nginx include

def test_single_service_include_is_unchanged(bundle):
    """Without extra routed services the include is byte-identical to the SDK backend's."""
    for table in ({"file": "docker-compose.yml"}, {"file": "docker-compose.yml", "routed": ["web"]}):
        cfg = load(bundle, raw(**table))
        assert nginx.render_include(cfg, "green", "d-1") == (
            "# bluegreen-hooks: app=shop colour=green deployment=d-1\n"
            "# Written by bluegreen-hooks; edits are replaced at the next switch.\n"
            "set $service_url http://127.0.0.1:8082;\n"
            "set $bluegreen_colour green;\n")


def test_include_has_one_variable_per_routed_service(bundle):
    """Two routed services: both switch in the same include (one nginx test + reload)."""
    cfg = load(bundle, raw(**TWO_ROUTED))
    assert nginx.render_include(cfg, "blue", "d-1") == (
        "# bluegreen-hooks: app=shop colour=blue deployment=d-1\n"
        "# Written by bluegreen-hooks; edits are replaced at the next switch.\n"
        "set $service_url http://127.0.0.1:8081;\n"
        "set $api_url http://127.0.0.1:9081;\n"
        "set $bluegreen_colour blue;\n")
    assert nginx.include_colour(cfg, nginx.render_include(cfg, "green", "d-2")) == "green"
    data = raw(**TWO_ROUTED)
    data["nginx"] = {"form": "upstream"}
    assert nginx.render_include(load(bundle, data), "green", "d-1").endswith(
        "upstream shop_backend {\n    server 127.0.0.1:8082;\n}\n"
        "upstream api_url {\n    server 127.0.0.1:9082;\n}\n"
        "map $pid $bluegreen_colour {\n    default green;\n}\n")


def test_compose_commands_do_not_see_the_bundle_on_pythonpath(tmp_path, monkeypatch):
    """docker-compose v1 is Python: the bundle (first on PYTHONPATH, from hooks/launch) must not shadow its modules."""
    (tmp_path / "bundle" / "bluegreen_hooks").mkdir(parents=True)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'bundle'}:/opt/site")
    env = compose.child_env({"BLUEGREEN_COLOUR": "blue"})
    assert (env["PYTHONPATH"], env["BLUEGREEN_COLOUR"]) == ("/opt/site", "blue")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "bundle"))
    assert "PYTHONPATH" not in compose.child_env({})


def _script(path: Path, first_line: bytes) -> str:
    path.write_bytes(first_line + b"\nprint('compose')\n")
    path.chmod(0o755)
    return str(path)


def test_stdlib_distutils_is_read_from_the_scripts_interpreter(tmp_path):
    """SETUPTOOLS_USE_DISTUTILS=stdlib only for a Python script whose interpreter has lib*/pythonX.Y/distutils."""
    from bluegreen_hooks.runtime.compose_exec import _has_stdlib_distutils

    with_it, without = tmp_path / "with", tmp_path / "without"
    for prefix in (with_it, without):
        (prefix / "bin").mkdir(parents=True)
        _script(prefix / "bin" / "python3.11", b"#!/bin/sh")
    (with_it / "lib64" / "python3.11" / "distutils").mkdir(parents=True)
    (with_it / "lib64" / "python3.11" / "distutils" / "__init__.py").write_text("")
    (without / "lib" / "python3.11").mkdir(parents=True)
    (with_it / "bin" / "python3").symlink_to("python3.11")
    assert _has_stdlib_distutils(_script(tmp_path / "a", f"#!{with_it}/bin/python3".encode()))
    assert not _has_stdlib_distutils(_script(tmp_path / "b", f"#!{without}/bin/python3.11".encode()))
    assert not _has_stdlib_distutils(_script(tmp_path / "c", b"\x7fELF\x02\x01"))      # compose v2, a binary
    assert not _has_stdlib_distutils(_script(tmp_path / "d", b"#!/bin/sh"))
    assert not _has_stdlib_distutils(str(tmp_path / "missing"))


def test_docker_compose_v1_starts_without_pkg_resources(tmp_path):
    """On Debian 12 (python3.11 has distutils) docker-compose runs with SETUPTOOLS_USE_DISTUTILS=stdlib: it
    works, and setuptools' pkg_resources (0.22 s of its start) is no longer imported."""
    from bluegreen_hooks.runtime.compose_exec import child_env, stdlib_distutils

    script = shutil.which("docker-compose")
    if not script or not Path("/usr/lib/python3.11/distutils/__init__.py").is_file():
        pytest.skip("Debian's docker-compose 1.29.2 on python3.11 is not installed here")
    assert stdlib_distutils("docker-compose")
    env = child_env({}, "docker-compose")
    assert env["SETUPTOOLS_USE_DISTUTILS"] == "stdlib"
    def imported(env: dict[str, str]) -> set[str]:
        proc = subprocess.run(["/usr/bin/python3", "-X", "importtime", str(script), "version"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "docker-compose version 1." in proc.stdout, proc.stderr[-500:]
        return {ln.rsplit("|", 1)[-1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}

    fast = imported(env)
    assert "distutils.spawn" in fast and "pkg_resources" not in fast
    del env["SETUPTOOLS_USE_DISTUTILS"]
    assert "pkg_resources" in imported(env)                                  # what every run cost before
    assert "SETUPTOOLS_USE_DISTUTILS" not in child_env({})                  # only for a compose command
    from bluegreen_hooks.operator.doctor import check_compose

    level, detail = check_compose()          # doctor runs it as the hooks do, and says so
    assert level == "ok" and detail.startswith("docker-compose 1.") and "SETUPTOOLS_USE_DISTUTILS=stdlib" in detail


def _logging_compose(tmp_path: Path) -> tuple[list[str], Path]:
    """A compose/command that logs each run (its pid and argv) and then runs the real docker-compose."""
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose is not installed")
    log = tmp_path / "runs.log"
    cmd = tmp_path / "compose"
    cmd.write_text(f'#!/bin/sh\necho "$$ $*" >> {log}\nexec docker-compose "$@"\n')
    cmd.chmod(0o755)
    return [str(cmd)], log


def test_before_install_renders_while_docker_is_connected_and_renders_once(bundle, tmp_path, monkeypatch):
    """runtime.backend(check=...) starts the `config` runs before it connects to Docker; check collects those
    same runs (one per colour, none again); another deployment id or set of colours renders anew."""
    from bluegreen_hooks import runtime
    from tests.helpers import wait_for

    command, log = _logging_compose(tmp_path)
    (bundle / "docker-compose.green.yml").write_text("services:\n  web: {image: x}\n  api: {image: x}\n")
    cfg = load(bundle, {**raw(**TWO_ROUTED, command=command), "deploy": {"state_dir": str(tmp_path / "state")}})
    be = runtime.backend(cfg, client=object(), check=("d-1", ("green",)))
    wait_for(lambda: log.is_file() and log.read_text(), timeout=10, what="the config run, before check()")
    said: list[str] = []
    be.check(said.append, "d-1", ("green",))
    assert said[-1].endswith("services api, web") and len(log.read_text().splitlines()) == 1
    be.check(said.append, "d-2", ("green",))
    assert len(log.read_text().splitlines()) == 2


def test_a_render_started_for_before_install_ends_when_docker_is_unreachable(bundle, tmp_path, monkeypatch):
    """No Docker: BeforeInstall fails on that, and the `config` runs it had started are killed, not left behind."""
    from bluegreen_hooks import runtime
    from bluegreen_hooks.errors import DockerUnavailable
    from tests.helpers import wait_for

    hang = tmp_path / "hanging-compose"
    hang.write_text("#!/usr/bin/python3\nimport time\ntime.sleep(60)\n")
    hang.chmod(0o755)

    def running() -> list[str]:
        out = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(hang) in cmdline.read_bytes().decode("utf-8", "replace"):
                    out.append(cmdline.parent.name)
            except OSError:
                pass
        return out

    cfg = load(bundle, {**raw(**TWO_ROUTED, command=[str(hang)]), "deploy": {"state_dir": str(tmp_path / "state")}})
    be = runtime.backend(cfg, client=object(), check=("d-1", ("blue", "green")))
    # the two renders, started: Popen returns while the child is still inside execve, before the kernel has
    # set up its new command line (/proc/<pid>/cmdline is empty or the parent's for a moment), so poll
    wait_for(lambda: len(running()) == 2, timeout=30, what="the two renders to start")
    be.cancel_pending()
    assert running() == []
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(DockerUnavailable):
        runtime.backend(cfg, check=("d-1", ("blue", "green")))
    assert running() == []


# ------------------------------------------------------- BeforeInstall's start: when, and the detached command

BI = {"start_in": "BeforeInstall"}


@pytest.mark.parametrize("table, appspec, why", [
    (BI, None, None),                                                  # no appspec (a local run): no Install step
    (BI, "version: 0.0\nos: linux\nhooks:\n  BeforeInstall:\n    - location: hooks/BeforeInstall\n", None),
    ({}, None, "compose/start_in is 'ApplicationStart'"),              # the default
    ({"start_in": "ApplicationStart"}, None, "compose/start_in is 'ApplicationStart'"),
    ({**BI, "pull": True}, None, "compose/pull is on: the pull runs first"),
    (BI, "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: /opt/app\n",
     "appspec.yml installs files (files:) the new version may need"),
    (BI, "version: 0.0\nos: linux\nhooks:\n  AfterInstall:\n    - location: hooks/render-config\n",
     "appspec.yml runs AfterInstall scripts first"),
    (BI, "version: 0.0\nos: linux\nfiles: [x]\n", "appspec.yml could not be read"),
])
def test_before_install_starts_the_new_colour_only_when_nothing_in_between_can_change_it(bundle, table, appspec, why):
    from bluegreen_hooks.lifecycle.early_start import start_blocker

    if appspec is not None:
        (bundle / "appspec.yml").write_text(appspec)
    said = start_blocker(load(bundle, raw(file="docker-compose.yml", **table)))
    assert (said is None) if why is None else (said is not None and said.startswith(why)), said


def test_compose_start_in_is_checked():
    with pytest.raises(ConfigError, match=r"compose/start_in: should be \"BeforeInstall\" or \"ApplicationStart\", "
                                          r"not 'AfterInstall'"):
        parse(raw(file="docker-compose.yml", start_in="AfterInstall"), Path("/nonexistent/bluegreen.toml"),
              environ={}, check_files=False)


def _spawn(tmp_path: Path, argv: list[str], timeout: float = 60.0):
    from bluegreen_hooks.runtime.compose_exec import Detached

    return Detached.spawn(tmp_path / "app-green.up", argv, {"GREETING": "hello"}, tmp_path, "d-1", "green", timeout)


def test_a_detached_start_is_collected_with_its_exit_status_and_output(tmp_path):
    """The command runs in its own session with our variables, in ``cwd``; its output and exit status are
    collected by whoever finds its record (another process: ApplicationStart), and the record is then gone."""
    from bluegreen_hooks.runtime.compose_exec import Detached

    up = _spawn(tmp_path, ["sh", "-c", 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3'])
    assert os.getsid(up.data["pid"]) == up.data["pid"]            # its own session: the hook's end does not end it
    found = Detached.find(tmp_path / "app-green.up")
    assert found is not None and (found.deployment_id, found.colour) == ("d-1", "green")
    [result] = found.results()
    assert result is not None and result.returncode == 3 and result.stdout == f"hello from {tmp_path}\n"
    assert result.stderr == "oops\n"   # apart, as compose_exec.failure reads them
    assert Detached.find(tmp_path / "app-green.up") is None


def test_a_detached_start_that_was_killed_is_reported_as_such(tmp_path):
    """Killed before it could write its exit status (SIGKILL to its session): ``[None]``, the caller runs
    the command again."""
    up = _spawn(tmp_path, ["sleep", "60"])
    os.killpg(up.data["pid"], signal.SIGKILL)
    assert up.results() == [None]


def test_a_detached_start_that_hangs_is_ended_at_its_deadline(tmp_path):
    """Past its deadline the whole session is killed (the command too, not only the runner) and the error
    names the command and the time; a start that never ends cannot hold ApplicationStart for ever."""
    from bluegreen_hooks.errors import ContainerStartError
    from bluegreen_hooks.host import procfs

    up = _spawn(tmp_path, ["sleep", "60"], timeout=1.0)
    with pytest.raises(ContainerStartError, match=r"`sleep 60` did not finish within 1s"):
        up.results()
    assert procfs.group_members(up.data["pid"]) == []


def test_a_record_whose_pid_was_reused_is_not_taken_for_the_start(tmp_path):
    """The record names the kernel's start time of its pid: another process with that pid is not it (never
    killed, never waited for)."""
    from bluegreen_hooks.runtime.compose_exec import Detached

    up = _spawn(tmp_path, ["true"])
    assert up.results()[0].returncode == 0
    stale = Detached(tmp_path / "app-green.up", {**up.data, "pid": os.getpid()})
    assert not stale.running()
    stale.kill()   # does nothing to this process


@pytest.mark.parametrize("text", ["", "{", "[]", '{"timeout": "soon"}', '{"argv": 3}', '{"pid": "1", "pid_start": 2}'])
def test_a_damaged_start_record_is_no_start(tmp_path, text):
    """A record that is not whole or not ours is no start: nothing is waited for, nothing is killed."""
    from bluegreen_hooks.runtime.compose_exec import Detached

    (tmp_path / "app-green.up").write_text(text)
    found = Detached.find(tmp_path / "app-green.up")
    assert found is None or not found.running()


@pytest.mark.parametrize("stdout, stderr, said", [
    # v1: the build log on stdout, the error on stderr
    ("Step 2/2 : RUN exit 7\n ---> Running in ab12\nfailing-step\n",
     "Building web\nThe command '/bin/sh -c exit 7' returned a non-zero code: 7\nService 'web' failed to build : "
     "Build failed\n",
     "The command '/bin/sh -c exit 7' returned a non-zero code: 7 / Service 'web' failed to build : Build failed"),
    # v2 (BuildKit): the failing step, which names the service, is in the log; the error on stderr
    ("#5 [web 2/2] RUN exit 7\n------\n > [web 2/2] RUN exit 7:\n0.05 failing-step\n------\n",
     "failed to solve: executor failed running [/bin/sh -c exit 7]: exit code: 7\n",
     "[web 2/2] RUN exit 7 / failed to solve: executor failed running [/bin/sh -c exit 7]: exit code: 7"),
    ("only stdout\n", "", "only stdout"),
    ("", "", "exit 3"),
])
def test_a_failed_compose_run_is_told_by_its_stderr_and_v2s_failing_step(stdout, stderr, said):
    """stderr (where v1 and v2 write the error) wins over stdout's build log; v2's failing build step leads."""
    from bluegreen_hooks.runtime.compose_exec import failure

    assert failure(subprocess.CompletedProcess(["docker-compose"], 3, stdout, stderr)) == said
