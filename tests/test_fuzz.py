"""Property-based fuzzing (hypothesis) of every parser and validator: bluegreen.toml, appspec.yml, the state
file, the nginx include, the CLI's arguments.

For any input the result is either a valid object or a refusal — ConfigError (or exit 2) with one line that
names the file and the key — never another exception. A valid object never carries a value that could reach
nginx, Docker or a path unchecked: every such value is asserted against the strict patterns here.

Profiles: ``ci`` (default; derandomized, bounded: the whole file takes well under 60 s on 2 cores) and
``long`` (``HYPOTHESIS_PROFILE=long``: random, many more examples), for a local hunt.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import string
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bluegreen_hooks.cli import main
from bluegreen_hooks.config import Config, parse
from bluegreen_hooks.config.appspec import AppSpec, decode
from bluegreen_hooks.config.appspec import parse as parse_appspec
from bluegreen_hooks.config.reader import HEADER, IDENT, SAFE_PATH, URL_PATH, is_host
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import nginx
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import AGENT_EVENTS, COLOURS, BadState, State, is_deployment_id
from bluegreen_hooks.names import APP, is_image

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}
settings.register_profile("ci", derandomize=True, max_examples=150, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=int(os.environ.get("FUZZ_LONG_EXAMPLES", "5000")), **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CFG = Path("/nonexistent/bundle/bluegreen.toml")

# ------------------------------------------------------------------------------------------ building blocks

# strings that probe the validators: the usual suspects, near-valid names, and any text
NASTY = ["", " ", "\n", "x\n", "a..b", "x-", "-x", "x.", "_x", "a__b", "a___b", "A", "$x", "x;", "x}", "{", "#",
         "/", "/a/../b", "..", "../x", "\x00", "\t", "\r\n", "²", "٣", "é", "\u2028", "🙂", "x" * 300,
         "localhost\n", "service_url\n", "/health\n", "busybox:1\n", "busybox:", "Busybox", "nginx:1.25",
         "registry.example.com:5000/team/app:1.0", "app@sha256:" + "a" * 64, "127.0.0.1", "::1", "[::1]",
         "http://127.0.0.1/", "http://x:99999/", "set $x http://1.2.3.4:80;", "shop", "shop-api", "d-ABC123"]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=40),
                 st.text(alphabet=string.ascii_lowercase + string.digits + "._-/:@$;{}\n ", max_size=30))
SCALAR = st.one_of(TEXT, st.integers(-2, 70000), st.integers(), st.floats(allow_nan=True), st.booleans())
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(TEXT, inner, max_size=4)), max_leaves=8)

# every key each table knows, so that generated tables reach the value checks, not only "unknown key"
KEYS = {
    "colours": ["blue", "green", "host"],
    "container": ["image", "build", "dockerfile", "build_args", "build_network", "network", "port", "port_env",
                  "env", "stop_grace_period", "command"],
    "health": ["path", "statuses", "timeout", "deadline", "interval", "max_interval"],
    "nginx": ["include", "form", "variable", "upstream", "colour_variable", "test", "reload", "pid_file",
              "public_url", "validate_path", "colour_header", "verify_timeout"],
    "deploy": ["drain_timeout", "keep_images", "state_dir", "stale_after", "history"],
    "compose": ["file", "files", "project", "build", "pull", "services", "routed", "routes", "remove_volumes",
                "env", "command", "stop_grace_period"],
}


def _table(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(st.sampled_from(KEYS[name]), TEXT), VALUE, max_size=5)


@st.composite
def config_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A bluegreen.toml as TOML would give it: mostly well-formed, with any table or value bent."""
    raw: dict[str, Any] = {"app": draw(st.one_of(TEXT, st.just("shop"), VALUE))}
    if draw(st.booleans()):
        raw["container"] = draw(st.one_of(st.just({"image": "nginx:1.25"}), _table("container")))
    for name in ("colours", "health", "nginx", "deploy"):
        if draw(st.booleans()):
            raw[name] = draw(_table(name))
    if draw(st.integers(0, 5)) == 0:
        raw["compose"] = draw(_table("compose"))
        raw.pop("container", None)
    if draw(st.integers(0, 5)) == 0:
        raw[draw(TEXT)] = draw(VALUE)
    return raw


def one_line_refusal(exc: ConfigError, file: str) -> None:
    """A refusal is one line naming the file (and then the key)."""
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{file}: ") or msg.startswith("BLUEGREEN_STATE_DIR: "), msg
    msg.encode("utf-8")          # printable on a UTF-8 terminal (no lone surrogates)


def _strings(obj: Any) -> list[str]:
    """Every string inside a config value (dataclasses, mappings, sequences, paths)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, Path):
        return [str(obj)]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in _strings(k) + _strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _strings(v)]
    if hasattr(obj, "__dataclass_fields__"):
        return [s for f in obj.__dataclass_fields__ if f != "raw" for s in _strings(getattr(obj, f))]
    return []


def assert_config_is_safe(cfg: Config) -> None:
    """Every value that reaches nginx, Docker or a path matches its strict pattern; the include renders sane."""
    assert APP.fullmatch(cfg.app) and is_image(f"{cfg.image_repo}:d-1")
    assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*-(blue|green)", cfg.container_name("blue"))
    assert is_host(cfg.host) and all(1 <= cfg.port(c) <= 65535 for c in COLOURS)
    n = cfg.nginx
    for name in (n.variable, n.upstream, n.colour_variable):
        assert IDENT.fullmatch(name)
    assert SAFE_PATH.fullmatch(str(n.include)) and SAFE_PATH.fullmatch(str(n.pid_file))
    assert SAFE_PATH.fullmatch(str(cfg.state_dir))
    assert URL_PATH.fullmatch(cfg.health.path) and URL_PATH.fullmatch(n.validate_path)
    assert HEADER.fullmatch(n.colour_header)
    c = cfg.container
    assert c.image is None or is_image(c.image)
    assert all(IDENT.fullmatch(k) for k in c.env) and all(IDENT.fullmatch(k) for k in c.build_args)
    assert c.port_env == "" or IDENT.fullmatch(c.port_env)
    if cfg.compose is not None:
        for colour in COLOURS:
            assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", cfg.compose.project_name(cfg.app, colour))
        assert all(IDENT.fullmatch(r.variable) for r in cfg.compose.routed)
    for argv in (n.test, n.reload, c.command or (), cfg.compose.command if cfg.compose else None):
        assert argv is None or all(isinstance(a, str) and "\0" not in a for a in argv)
    # no key or value that goes into nginx or a label carries a line break
    for s in _strings([cfg.app, cfg.host, n, c.image, c.env, c.port_env, cfg.state_dir]):
        assert "\n" not in s or s in c.env.values(), s
    for colour in COLOURS:
        text = nginx.render_include(cfg, colour, "d-1")
        lines = text.splitlines()
        assert lines[0] == f"# bluegreen-hooks: app={cfg.app} colour={colour} deployment=d-1"
        assert all(ln.startswith(("#", "set $", "upstream ", "    server ", "}", "map $pid", "    default "))
                   for ln in lines), text
        assert nginx.include_colour(cfg, text) == colour


# ------------------------------------------------------------------------------------------ bluegreen.toml

@given(config_dicts())
def test_config_parse_gives_a_safe_config_or_one_line(raw):
    try:
        cfg = parse(raw, CFG, environ={}, check_files=False)
    except ConfigError as exc:
        one_line_refusal(exc, "bluegreen.toml")
        return
    assert_config_is_safe(cfg)


@given(st.dictionaries(st.sampled_from(["app", "colours", "container", "health", "nginx", "deploy"]),
                       st.sampled_from(NASTY), max_size=4),
       st.sampled_from(["", "relative", "/tmp/ok", "/tmp/a;b", "/tmp/x\n", "/tmp/é"]))
def test_config_tables_of_the_wrong_type_and_state_dir_env(raw, state_dir):
    """Tables given as strings, and $BLUEGREEN_STATE_DIR of any shape."""
    raw = {"app": "shop", "container": {"image": "nginx:1"}, **raw}
    try:
        cfg = parse(raw, CFG, environ={"BLUEGREEN_STATE_DIR": state_dir}, check_files=False)
    except ConfigError as exc:
        one_line_refusal(exc, "bluegreen.toml")
        return
    assert_config_is_safe(cfg)


TOML_LINES = st.lists(st.one_of(
    st.sampled_from(['app = "shop"', "[container]", 'image = "nginx:1.25"', "[nginx]", "[colours]", "[health]",
                     'variable = "service_url\\n"', 'host = "localhost\\n"', 'path = "/health\\n"',
                     "blue = 8081", "green = 8081", "green = 99999", 'include = "/etc/passwd"', "[[x]]", "= =",
                     'app = "a..b"', 'image = "busybox:1\\n"', "test = []", 'test = ["nginx", "-t"]',
                     "statuses = [200, true]", "timeout = 1e400", "port = -1", '"a\\u0000b" = 1']),
    st.text(max_size=30)), max_size=12)


@given(st.one_of(TOML_LINES.map("\n".join), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_config_toml_text_gives_a_safe_config_or_one_line(text):
    """TOML text: not TOML at all, TOML of the wrong shape, or values that must be refused."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return              # config.load turns this into "bluegreen.toml: not valid TOML: …" (tested elsewhere)
    try:
        cfg = parse(raw, CFG, environ={}, check_files=False)
    except ConfigError as exc:
        one_line_refusal(exc, "bluegreen.toml")
        return
    assert_config_is_safe(cfg)


@given(st.binary(max_size=300))
def test_config_load_of_any_bytes_is_a_config_or_one_line(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-load" / "bluegreen.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    from bluegreen_hooks.config import load
    try:
        cfg = load(path, environ={}, check_files=False)
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg and (msg.startswith("bluegreen.toml: ") or msg.startswith(str(path))), msg
        return
    assert_config_is_safe(cfg)


# ------------------------------------------------------------------------------------------ appspec.yml

APPSPEC_LINES = st.lists(st.one_of(
    st.sampled_from(["version: 0.0", "os: linux", "hooks:", "files:", "  - source: /", "    destination: /opt/x",
                     "    destination: opt", "  ApplicationStart:", "  BeforeInstall:", "    - location: hooks/x",
                     "      timeout: 300", "      timeout: ²", "      timeout: " + "9" * 5000, "      runas: root",
                     "      runas: root\\n", '    - location: "a\\nb"', '    - location: "../x"', "  - x",
                     "      sudo: true", "permissions:", "file_exists_behavior: OVERWRITE", "version: '0.0'",
                     '    - location: "\\ud800"', "- - -", "a: [1, 2]", "a: &x y", "\tos: linux", "key: 'open",
                     "    - location: /abs", "    - location: C:x", "hooks: {}", "hooks: []"]),
    st.builds(lambda k, v: f"{' ' * k}{v}", st.integers(0, 6), TEXT)), max_size=14)


def assert_appspec_is_safe(spec: AppSpec) -> None:
    assert spec.version.strip("0.") == "" and spec.os == "linux"
    for src, dst in spec.files:
        assert src.isprintable() and dst.isprintable() and dst.startswith("/") and ".." not in Path(dst).parts
        assert ".." not in Path(src).parts
    for event, scripts in spec.hooks.items():
        assert event in AGENT_EVENTS
        for s in scripts:
            assert s.location.isprintable() and not s.location.startswith("/") and ".." not in s.location.split("/")
            assert isinstance(s.timeout, int) and 0 < s.timeout < 10 ** 9
            assert s.runas is None or re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}\$?", s.runas)


@given(st.one_of(APPSPEC_LINES.map("\n".join), st.text(max_size=200)))
def test_appspec_parse_gives_a_safe_spec_or_one_line(text):
    try:
        spec = parse_appspec(text)
    except ConfigError as exc:
        one_line_refusal(exc, "appspec.yml")
        return
    assert_appspec_is_safe(spec)


@given(st.binary(max_size=200))
def test_appspec_bytes_decode_and_parse_or_one_line(data):
    try:
        spec = parse_appspec(decode(data))
    except ConfigError as exc:
        one_line_refusal(exc, "appspec.yml")
        return
    assert_appspec_is_safe(spec)


# ------------------------------------------------------------------------------------------ the state file

GOOD_STATE = {"schema": 1, "app": "shop", "live": "blue", "live_since": 1.0, "live_deployment": "d-1",
              "live_image": "bluegreen-shop:d-1", "previous": None, "previous_deployment": None,
              "previous_image": None, "in_progress": {"id": "d-2", "target": "green", "started": 2.0},
              "drain_workers": [], "config": None, "deployments": [], "events": []}
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
                    max_leaves=6)
STATE_KEYS = st.sampled_from([*sorted(GOOD_STATE), "extra"])
IP_KEYS = st.sampled_from(["id", "target", "started", "stage", "event", "event_done", "updated", "pid", "pid_start",
                           "host", "user", "from", "image", "old_workers", "timings"])


@st.composite
def states(draw: st.DrawFn) -> Any:
    """A state file's JSON: the good one with keys replaced, removed or added, or anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(JSON)
    data = json.loads(json.dumps(GOOD_STATE))
    for key, value in draw(st.dictionaries(STATE_KEYS, JSON, max_size=3)).items():
        data[key] = value
    if isinstance(data.get("in_progress"), dict):
        for key, value in draw(st.dictionaries(IP_KEYS, JSON, max_size=3)).items():
            data["in_progress"][key] = value
    return data


def assert_state_is_safe(state: State) -> None:
    for v in (state.live, state.previous, state.in_progress.target if state.in_progress else None):
        assert v in (None, "blue", "green")
    for d in (state.live_deployment, state.previous_deployment, state.in_progress.id if state.in_progress else None):
        assert d is None or is_deployment_id(d)
    for img in (state.live_image, state.previous_image, state.in_progress.image if state.in_progress else None):
        assert img is None or is_image(img)
    assert all(len(w) == 2 and all(type(x) is int for x in w) for w in state.drain_workers)
    json.dumps(state.to_json())          # writes back


@given(states())
def test_state_from_json_is_a_safe_state_or_bad_state(data):
    try:
        state = State.from_json(data, "shop")
    except BadState as exc:
        assert "\n" not in str(exc)[:200].split("not ")[0], str(exc)
        return
    assert_state_is_safe(state)


@given(st.one_of(states().map(lambda d: json.dumps(d).encode()), st.binary(max_size=120)))
def test_store_read_of_any_file_is_a_state_or_corrupt(tmp_path_factory, data):
    """host.store reads any bytes as a state, or as "corrupt" with a reason (never an exception)."""
    state_dir = tmp_path_factory.getbasetemp() / "fuzz-store"
    state_dir.mkdir(exist_ok=True)
    (state_dir / "shop.json").write_bytes(data)
    read = Store(state_dir, "shop").read(quarantine=False)
    assert read.problem in (None, "corrupt")
    assert_state_is_safe(read.state)


# ------------------------------------------------------------------------------------------ the nginx include

_INCLUDE_CFG = parse({"app": "shop", "container": {"image": "nginx:1"}, "colours": {"blue": 8081, "green": 8082}},
                     CFG, environ={}, check_files=False)
INCLUDE_LINES = st.lists(st.one_of(
    st.sampled_from(["set $service_url http://127.0.0.1:8081;", "set $service_url http://127.0.0.1:8082;",
                     "set $service_url http://[::1]:8082;", "server 127.0.0.1:8081;", "set $x http://h:99999999;",
                     "# bluegreen-hooks: app=shop colour=green deployment=d-1",
                     "# bluegreen-hooks: app=other colour=blue deployment=d-1", "upstream x {", "}",
                     "set $service_url http://127.0.0.1:" + "9" * 5000 + ";"]),
    TEXT), max_size=6)


@given(st.one_of(INCLUDE_LINES.map("\n".join), st.text(max_size=200)))
def test_include_colour_of_any_text_is_a_colour_or_none(text):
    assert nginx.include_colour(_INCLUDE_CFG, text) in (None, "blue", "green")


@given(st.binary(max_size=200))
def test_read_include_of_any_bytes_is_text_or_one_line(tmp_path_factory, data):
    from bluegreen_hooks.errors import NginxError

    inc = tmp_path_factory.getbasetemp() / "fuzz-include" / "backend-url.inc"
    inc.parent.mkdir(exist_ok=True)
    inc.write_bytes(data)
    cfg = parse({"app": "shop", "container": {"image": "nginx:1"}, "nginx": {"include": str(inc)}}, CFG,
                environ={}, check_files=False)
    try:
        text = nginx.read_include(cfg)
    except NginxError as exc:
        assert "\n" not in str(exc)
        return
    assert nginx.include_colour(cfg, text) in (None, "blue", "green")


# ------------------------------------------------------------------------------------------ CLI arguments

def _relative(value: str) -> str:
    """Keep generated paths inside the test's folder: never absolute, never a way up."""
    return value.lstrip("/").replace("..", "_") or "x"


OPTION = st.one_of(
    st.tuples(st.just("--state-dir"), TEXT.map(_relative)),
    st.tuples(st.just("--app"), TEXT),
    st.tuples(st.just("--config"), TEXT.map(_relative)),
    st.tuples(st.just("-n"), st.one_of(TEXT, st.integers(-3, 10 ** 30).map(str))),
    st.tuples(st.just("--json")), st.tuples(st.just("--deployments")), st.tuples(st.just("--keep-other")),
    st.tuples(TEXT.map(_relative)),
)
LOCAL_OPTION = st.one_of(
    st.tuples(st.just("--events"), TEXT), st.tuples(st.just("--deployment-id"), TEXT),
    st.tuples(st.just("-g"), TEXT), st.tuples(st.just("-b"), TEXT), st.tuples(st.just("-a"), TEXT),
    st.tuples(st.just("--root"), TEXT.map(_relative)), st.tuples(st.just("--install-root"), TEXT.map(_relative)),
)


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(["status", "history", "rollback", "local"]))
    if command == "local":       # always a dry run of a bundle that is not there: nothing runs
        opts = draw(st.lists(LOCAL_OPTION, max_size=4))
        return ["local", _relative(draw(TEXT)), "--dry-run", *[a for o in opts for a in o]]
    opts = draw(st.lists(OPTION, max_size=5))
    return [command, "--state-dir", "state", *[a for o in opts for a in o]]


@given(argvs())
@settings(max_examples=int(os.environ.get("FUZZ_CLI_EXAMPLES", "80")))
def test_cli_arguments_exit_0_to_3_or_argparse_2_never_a_traceback(tmp_path_factory, monkeypatch, argv):
    """status/history/rollback/local with any arguments, against an empty state dir in a scratch folder: an
    exit code, and for our refusals (exit 2) exactly one ERROR line on stderr."""
    work = tmp_path_factory.getbasetemp() / "fuzz-cli"
    (work / "state").mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("BLUEGREEN_STATE_DIR", str(work / "state"))
    monkeypatch.delenv("BLUEGREEN_CONFIG", raising=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:           # argparse: usage + "error: …" and exit 2, or --help and exit 0
            assert exc.code in (0, 2), (argv, err.getvalue())
            return
    assert code in (0, 1, 2, 3), argv
    if code == 2 and "--json" not in argv:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("ERROR "), (argv, err.getvalue())
    if argv[0] in ("status", "history", "rollback"):
        assert code != 0 or "--help" in argv, (argv, out.getvalue())      # the state dir is empty


@pytest.mark.parametrize("bad", ["state\n", "a;b", "é"])
def test_cli_bad_state_dir_names_the_option(tmp_path, monkeypatch, capsys, bad):
    monkeypatch.chdir(tmp_path)
    assert main(["history", "--state-dir", bad]) == 2
    assert capsys.readouterr().err.startswith("ERROR --state-dir: should be a path")
