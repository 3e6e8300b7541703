"""The deploy config: ``bluegreen.toml`` at the bundle root, validated in full when it is loaded.

Every value that ends up in the nginx include, a container name or an argv is checked here, so the
rest of the package can trust a ``Config``. A bad value is refused with one line that names the file
and the key path, e.g. ``bluegreen.toml: colours/green: should be a port (1-65535), not '80; evil'``.
See docs/config.md for every key and its default.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args
from urllib.parse import urlsplit

from bluegreen_hooks.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10 hosts
    import tomli as tomllib

Colour = Literal["blue", "green"]
COLOURS: tuple[Colour, ...] = get_args(Colour)
Form = Literal["set", "upstream"]
Network = Literal["host", "bridge"]

CONFIG_NAME = "bluegreen.toml"
DEFAULT_STATE_DIR = "/var/lib/bluegreen-hooks"
STATE_DIR_ENV = "BLUEGREEN_STATE_DIR"
CONFIG_ENV = "BLUEGREEN_CONFIG"

# defaults, as numbers (seconds unless stated)
DEFAULT_HEALTH_TIMEOUT = 2.0
DEFAULT_HEALTH_DEADLINE = 120.0
DEFAULT_HEALTH_INTERVAL = 0.2
DEFAULT_HEALTH_MAX_INTERVAL = 1.0
DEFAULT_VERIFY_TIMEOUT = 15.0
DEFAULT_DRAIN_TIMEOUT = 30.0
DEFAULT_STOP_GRACE = 10.0
DEFAULT_KEEP_IMAGES = 2
DEFAULT_STALE_AFTER = 900.0
DEFAULT_HISTORY = 100

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]*$")          # include / pid file paths: no spaces, ; { } $ # quotes
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~!&'()*+,=:@%/?-]*$")  # HTTP paths: printable, no spaces, no ; $ { } #
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")


@dataclass(frozen=True)
class ContainerConfig:
    image: str | None
    build: Path | None
    dockerfile: str
    build_args: Mapping[str, str]
    build_network: str | None
    network: Network
    port: int | None
    port_env: str
    env: Mapping[str, str]
    stop_grace_period: float
    command: tuple[str, ...] | None


@dataclass(frozen=True)
class HealthConfig:
    path: str
    statuses: tuple[int, ...]
    timeout: float
    deadline: float
    interval: float
    max_interval: float


@dataclass(frozen=True)
class NginxConfig:
    include: Path
    form: Form
    variable: str
    upstream: str
    colour_variable: str
    test: tuple[str, ...]
    reload: tuple[str, ...]
    pid_file: Path
    public_url: str
    validate_path: str
    colour_header: str
    verify_timeout: float


@dataclass(frozen=True)
class ComposeRoute:
    """A routed compose service: its port per colour and the nginx variable that points at it."""

    service: str
    variable: str
    ports: Mapping[str, int]

    @property
    def port_env(self) -> str:
        """The variable holding its port for the compose file, e.g. BLUEGREEN_PORT_API."""
        return "BLUEGREEN_PORT_" + re.sub(r"[^A-Z0-9]", "_", self.service.upper())


@dataclass(frozen=True)
class ComposeConfig:
    """The [compose] table: run each colour as a docker-compose project (see docs/compose.md)."""

    files: Mapping[str, Path]          # colour -> compose file (the same file for both in the one-file form)
    single: bool                       # True for `file = ...` (colours differ only by the variables we set)
    project: str                       # template with {app} and {colour}
    build: bool
    pull: bool
    services: tuple[str, ...] | None   # services to wait for (None: all of the file)
    routed: tuple[ComposeRoute, ...]   # the first uses colours/blue, colours/green and nginx/variable
    remove_volumes: bool
    env: Mapping[str, str]
    command: tuple[str, ...] | None    # None: `docker compose` if it works, else `docker-compose`
    stop_grace_period: float

    def project_name(self, app: str, colour: str) -> str:
        return self.project.format(app=app, colour=colour)


@dataclass(frozen=True)
class Config:
    path: Path
    app: str
    ports: Mapping[str, int]
    host: str
    container: ContainerConfig
    health: HealthConfig
    nginx: NginxConfig
    drain_timeout: float
    keep_images: int
    state_dir: Path
    stale_after: float
    history: int
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    compose: ComposeConfig | None = None

    @property
    def extra_routes(self) -> tuple[ComposeRoute, ...]:
        """Routed services beyond the first (each one more ``set $var ...;`` line in the include)."""
        return self.compose.routed[1:] if self.compose else ()

    @property
    def root(self) -> Path:
        """The bundle root: the folder holding the config file."""
        return self.path.parent

    def port(self, colour: Colour) -> int:
        return self.ports[colour]

    @staticmethod
    def other(colour: Colour) -> Colour:
        return "green" if colour == "blue" else "blue"

    def colour_of_port(self, port: int) -> Colour | None:
        return next((c for c in COLOURS if self.ports[c] == port), None)

    @property
    def host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def upstream_url(self, colour: Colour) -> str:
        return f"http://{self.host_for_url}:{self.port(colour)}"

    def health_url(self, colour: Colour) -> str:
        return self.upstream_url(colour) + self.health.path

    def container_name(self, colour: Colour) -> str:
        return f"{self.app}-{colour}"

    @property
    def image_repo(self) -> str:
        return f"bluegreen-{self.app}"


# ---------------------------------------------------------------------------------------------- parsing

class _Reader:
    """Reads one table of the raw config, collecting key paths for error messages."""

    def __init__(self, file: str, table: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
        self.file, self.table, self.prefix = file, table, prefix
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1) or [k for k in known if k.startswith(key)][:1]
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(known)})"
                self.fail(key, f"unknown key{extra}")

    def fail(self, key: str, msg: str) -> None:
        raise ConfigError(f"{self.file}: {self.prefix}{key}: {msg}")

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def string(self, key: str, default: str | None = None, pattern: re.Pattern | None = None,
               what: str = "") -> str | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.fail(key, f"should be a non-empty string, not {value!r}")
        if pattern is not None and not pattern.match(value):
            self.fail(key, f"should be {what}, not {value!r}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(key, f"should be a number of seconds from {low:g} to {high:g}, not {value!r}")
        return float(value)

    def integer(self, key: str, default: int | None, low: int, high: int, what: str = "an integer") -> int | None:
        value = self.table.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(key, f"should be {what} ({low}-{high}), not {value!r}")
        return value

    def argv(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.table.get(key, default)
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value or \
                not all(isinstance(a, str) and a and "\0" not in a for a in value):
            self.fail(key, f"should be a command as a list of strings, e.g. [\"nginx\", \"-t\"], not {value!r}")
        return tuple(value)

    def mapping(self, key: str) -> dict[str, str]:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"should be a table of NAME = \"value\", not {value!r}")
        out = {}
        for name, v in value.items():
            if not _IDENT.match(name):
                self.fail(f"{key}/{name}", "should be a name of letters, digits and _")
            if isinstance(v, bool) or not isinstance(v, (str, int, float)) or "\0" in str(v):
                self.fail(f"{key}/{name}", f"should be a string or number, not {v!r}")
            out[name] = str(v)
        return out

    def table_of(self, key: str) -> dict:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, "should be a table")
        return value


def _is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(value))


def _systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system")


def default_reload() -> tuple[str, ...]:
    """``systemctl reload nginx`` where systemd runs, else ``nginx -s reload``."""
    return ("systemctl", "reload", "nginx") if _systemd_running() else ("nginx", "-s", "reload")


def parse(raw: Mapping[str, Any], path: Path, environ: Mapping[str, str] | None = None,
          check_files: bool = True) -> Config:
    """Validate ``raw`` (the parsed TOML) into a Config; raise ConfigError naming the first bad key.

    ``check_files=False`` skips the checks that the build context exists (for the copy of the live
    config kept in the state directory, read by the operator commands).
    """
    environ = os.environ if environ is None else environ
    file = path.name
    top = _Reader(file, raw, "", ("app", "colours", "container", "health", "nginx", "deploy", "compose"))
    app = top.string("app", pattern=_NAME, what="a name of lowercase letters, digits, '.', '_' or '-'")
    if app is None:
        top.fail("app", "is required (a name such as \"shop\")")

    colours = _Reader(file, top.table_of("colours"), "colours/", ("blue", "green", "host"))
    ports = {c: colours.integer(c, {"blue": 8081, "green": 8082}[c], 1, 65535, "a port") for c in COLOURS}
    if ports["blue"] == ports["green"]:
        colours.fail("green", f"should differ from colours/blue (both are {ports['blue']})")
    host = colours.string("host", "127.0.0.1")
    if not _is_host(host):
        colours.fail("host", f"should be an IP address or a hostname, not {host!r}")

    c = _Reader(file, top.table_of("container"), "container/",
                ("image", "build", "dockerfile", "build_args", "build_network", "network", "port", "port_env",
                 "env", "stop_grace_period", "command"))
    image = c.string("image", pattern=_IMAGE, what="an image reference such as \"nginx:1.25\"")
    build = c.string("build")
    if top.get("compose") is not None and top.get("container") is not None:
        top.fail("container", "remove the [container] table: with [compose] the compose file describes the containers")
    if top.get("compose") is None and (image is None) == (build is None):
        c.fail("build", "set exactly one of container/build (a build context) or container/image (to pull)")
    build_path = None
    if build is not None:
        build_path = (path.parent / build).resolve()
        root = path.parent.resolve()
        if check_files and build_path != root and root not in build_path.parents:
            c.fail("build", f"build context {build!r} is outside the bundle (it must be a folder next to {file})")
        if check_files and not build_path.is_dir():
            c.fail("build", f"build context {build!r} is not a folder next to {file}")
    dockerfile = c.string("dockerfile", "Dockerfile", re.compile(r"^[A-Za-z0-9._/-]+$"), "a relative file name")
    if dockerfile.startswith("/") or ".." in dockerfile.split("/"):
        c.fail("dockerfile", f"should be a file name inside the build context, not {dockerfile!r}")
    if check_files and build_path is not None and not (build_path / dockerfile).is_file():
        c.fail("dockerfile", f"{dockerfile!r} not found in {build!r}")
    network = c.string("network", "host")
    if network not in get_args(Network):
        c.fail("network", f"should be \"host\" or \"bridge\", not {network!r}")
    cport = c.integer("port", None, 1, 65535, "a port")
    if network == "bridge" and cport is None:
        c.fail("port", "is required with network = \"bridge\" (the port the app listens on in the container)")
    command = c.get("command")
    if command is not None:
        command = c.argv("command", ())
    container = ContainerConfig(
        image=image, build=build_path, dockerfile=dockerfile, build_args=c.mapping("build_args"),
        build_network=c.string("build_network", None, _IDENT, "a network name such as \"host\""),
        network=network, port=cport, port_env=c.get("port_env", "PORT"),
        env=c.mapping("env"), stop_grace_period=c.number("stop_grace_period", DEFAULT_STOP_GRACE, 0, 3600),
        command=command)
    if not isinstance(container.port_env, str) or (container.port_env and not _IDENT.match(container.port_env)):
        c.fail("port_env", f"should be an environment variable name (or \"\"), not {container.port_env!r}")

    h = _Reader(file, top.table_of("health"), "health/",
                ("path", "statuses", "timeout", "deadline", "interval", "max_interval"))
    statuses = h.get("statuses", [200])
    if not isinstance(statuses, list) or not statuses or \
            not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses):
        h.fail("statuses", f"should be a list of HTTP statuses such as [200, 204], not {statuses!r}")
    health = HealthConfig(
        path=h.string("path", "/health", _URL_PATH, "an HTTP path starting with / (no spaces, ';', '$', '{', '}')"),
        statuses=tuple(statuses), timeout=h.number("timeout", DEFAULT_HEALTH_TIMEOUT, 0.1, 300),
        deadline=h.number("deadline", DEFAULT_HEALTH_DEADLINE, 1, 3600),
        interval=h.number("interval", DEFAULT_HEALTH_INTERVAL, 0.01, 60),
        max_interval=h.number("max_interval", DEFAULT_HEALTH_MAX_INTERVAL, 0.01, 300))

    n = _Reader(file, top.table_of("nginx"), "nginx/",
                ("include", "form", "variable", "upstream", "colour_variable", "test", "reload", "pid_file",
                 "public_url", "validate_path", "colour_header", "verify_timeout"))
    include = n.string("include", "/etc/nginx/conf.d/backend-url.inc", _SAFE_PATH,
                       "an absolute path of letters, digits, '.', '_', '-', '/'")
    form = n.string("form", "set")
    if form not in get_args(Form):
        n.fail("form", f"should be \"set\" or \"upstream\", not {form!r}")
    public_url = n.string("public_url", "http://127.0.0.1/")
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not _is_host(parts.hostname) or \
            not _URL_PATH.match(parts.path or "/") or parts.query or parts.fragment:
        n.fail("public_url", f"should be an http(s) URL such as \"http://127.0.0.1/\", not {public_url!r}")
    try:
        parts.port
    except ValueError:
        n.fail("public_url", f"has a bad port: {public_url!r}")
    nginx = NginxConfig(
        include=Path(include), form=form,
        variable=n.string("variable", "service_url", _IDENT, "an nginx variable name without '$'"),
        upstream=n.string("upstream", f"{app.replace('-', '_').replace('.', '_')}_backend", _IDENT,
                          "an upstream name of letters, digits and _"),
        colour_variable=n.string("colour_variable", "bluegreen_colour", _IDENT, "an nginx variable name without '$'"),
        test=n.argv("test", ("nginx", "-t")), reload=n.argv("reload", default_reload()),
        pid_file=Path(n.string("pid_file", "/run/nginx.pid", _SAFE_PATH, "an absolute path")),
        public_url=public_url.rstrip("/"),
        validate_path=n.string("validate_path", health.path, _URL_PATH, "an HTTP path starting with /"),
        colour_header=n.string("colour_header", "X-Bluegreen-Colour", re.compile(r"^[A-Za-z0-9-]{1,64}$"),
                               "an HTTP header name"),
        verify_timeout=n.number("verify_timeout", DEFAULT_VERIFY_TIMEOUT, 0.5, 600))

    d = _Reader(file, top.table_of("deploy"), "deploy/",
                ("drain_timeout", "keep_images", "state_dir", "stale_after", "history"))
    state_dir = environ.get(STATE_DIR_ENV) or d.string("state_dir", DEFAULT_STATE_DIR, _SAFE_PATH, "an absolute path")
    if not _SAFE_PATH.match(state_dir):
        raise ConfigError(f"{STATE_DIR_ENV}: should be an absolute path, not {state_dir!r}")
    compose = None
    if top.get("compose") is not None:
        compose = _parse_compose(_Reader(file, top.table_of("compose"), "compose/", _COMPOSE_KEYS), app, ports,
                                 nginx, path, check_files)
    return Config(
        compose=compose,
        path=path, app=app, ports=ports, host=host, container=container, health=health, nginx=nginx,
        drain_timeout=d.number("drain_timeout", DEFAULT_DRAIN_TIMEOUT, 0, 3600),
        keep_images=d.integer("keep_images", DEFAULT_KEEP_IMAGES, 0, 100),
        state_dir=Path(state_dir), stale_after=d.number("stale_after", DEFAULT_STALE_AFTER, 1, 86400),
        history=d.integer("history", DEFAULT_HISTORY, 1, 100000), raw=raw)


_COMPOSE_KEYS = ("file", "files", "project", "build", "pull", "services", "routed", "routes", "remove_volumes", "env",
                 "command", "stop_grace_period")
_SERVICE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_REL_FILE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/@+-]{0,254}$")


def _parse_compose(r: _Reader, app: str, ports: Mapping[str, int], nginx: NginxConfig, path: Path,
                   check_files: bool) -> ComposeConfig:
    """The [compose] table (docs/compose.md). Whether the files parse is checked by BeforeInstall."""
    def boolean(key: str, default: bool) -> bool:
        value = r.get(key, default)
        if not isinstance(value, bool):
            r.fail(key, f"should be true or false, not {value!r}")
        return value

    def compose_file(key: str, value: Any) -> Path:
        if not isinstance(value, str) or not _REL_FILE.match(value) or ".." in value.split("/"):
            r.fail(key, f"should be a compose file name relative to {path.name}, such as \"docker-compose.yml\", "
                        f"not {value!r}")
        p = (path.parent / value).resolve()
        if check_files and not p.is_file():
            r.fail(key, f"compose file {value!r} not found next to {path.name}")
        return p

    if ("file" in r.table) == ("files" in r.table):
        r.fail("file", "set exactly one of compose/file (one file, colours set by variables) or "
                       "compose/files = { blue = \"...\", green = \"...\" }")
    if "file" in r.table:
        one = compose_file("file", r.get("file"))
        files = {c: one for c in COLOURS}
    else:
        ft = _Reader(r.file, r.table_of("files"), "compose/files/", COLOURS)
        for c in COLOURS:
            if c not in ft.table:
                ft.fail(c, f"is required (the compose file of the {c} stack)")
        files = {c: compose_file(f"files/{c}", ft.get(c)) for c in COLOURS}
    project = r.string("project", "{app}-{colour}")
    try:
        names = {c: project.format(app=app, colour=c) for c in COLOURS}
    except (KeyError, IndexError, ValueError):
        r.fail("project", f"may only use {{app}} and {{colour}}, not {project!r}")
    if "{colour}" not in project or names["blue"] == names["green"]:
        r.fail("project", f"should contain {{colour}} so that each colour is its own project, not {project!r}")
    for name in names.values():
        if not _PROJECT.match(name):
            r.fail("project", f"gives {name!r}; a compose project name is lowercase letters, digits, '-' and '_'")

    def names_list(key: str) -> tuple[str, ...] | None:
        value = r.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and _SERVICE.match(v) for v in value):
            r.fail(key, f"should be a list of compose service names such as [\"web\", \"api\"], not {value!r}")
        if len(set(value)) != len(value):
            r.fail(key, f"names a service twice: {value!r}")
        return tuple(value)

    services = names_list("services")
    routed_names = names_list("routed") or ()
    rt = _Reader(r.file, r.table_of("routes"), "compose/routes/", routed_names or ("(none)",))
    if routed_names and routed_names[0] in rt.table:
        rt.fail(routed_names[0], "is the first routed service: its ports are colours/blue and colours/green, "
                                 "its variable nginx/variable; remove this table")
    routed = []
    used_ports = {ports[c]: f"colours/{c}" for c in COLOURS}
    used_vars = {nginx.variable: "nginx/variable", nginx.colour_variable: "nginx/colour_variable"}
    for i, svc in enumerate(routed_names):
        if i == 0:
            routed.append(ComposeRoute(svc, nginx.variable, dict(ports)))
            continue
        one = rt.get(svc)
        if not isinstance(one, dict):
            rt.fail(svc, "is required: a table with its port per colour, e.g. { blue = 9081, green = 9082 }")
        s = _Reader(r.file, one, f"compose/routes/{svc}/", ("blue", "green", "variable"))
        sports = {}
        for c in COLOURS:
            if c not in s.table:
                s.fail(c, f"is required (the port {svc} listens on in the {c} stack)")
            sports[c] = s.integer(c, None, 1, 65535, "a port")
            if sports[c] in used_ports:
                s.fail(c, f"port {sports[c]} is already used by {used_ports[sports[c]]}")
            used_ports[sports[c]] = f"compose/routes/{svc}/{c}"
        variable = s.string("variable", re.sub(r"[^A-Za-z0-9_]", "_", svc) + "_url", _IDENT,
                            "an nginx variable name without '$'")
        if variable in used_vars:
            s.fail("variable", f"${variable} is already used by {used_vars[variable]}")
        used_vars[variable] = f"compose/routes/{svc}/variable"
        routed.append(ComposeRoute(svc, variable, sports))
    command = r.get("command")
    if command is not None:
        command = r.argv("command", ())
    build, pull = boolean("build", False), boolean("pull", False)
    return ComposeConfig(
        files=files, single="file" in r.table, project=project, build=build, pull=pull, services=services,
        routed=tuple(routed), remove_volumes=boolean("remove_volumes", False), env=r.mapping("env"),
        command=command, stop_grace_period=r.number("stop_grace_period", DEFAULT_STOP_GRACE, 0, 3600))


def find(bundle: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config path: $BLUEGREEN_CONFIG, else ``bluegreen.toml`` in ``bundle`` (default: cwd)."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).resolve()
    return (Path(bundle or ".") / CONFIG_NAME).resolve()


def load(path: Path | str, environ: Mapping[str, str] | None = None, check_files: bool = True) -> Config:
    """Read and validate the TOML file at ``path``."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no deploy config here (expected {CONFIG_NAME} at the bundle root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    return parse(raw, path, environ, check_files)
