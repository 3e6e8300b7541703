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
                hint = difflib.get_close_matches(key, known, n=1)
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
    top = _Reader(file, raw, "", ("app", "colours", "container", "health", "nginx", "deploy"))
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
    if (image is None) == (build is None):
        c.fail("build", "set exactly one of container/build (a build context) or container/image (to pull)")
    build_path = None
    if build is not None:
        build_path = (path.parent / build).resolve()
        if check_files and not build_path.is_dir():
            c.fail("build", f"build context {build!r} is not a folder next to {file}")
    dockerfile = c.string("dockerfile", "Dockerfile", re.compile(r"^[A-Za-z0-9._/-]+$"), "a relative file name")
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
    return Config(
        path=path, app=app, ports=ports, host=host, container=container, health=health, nginx=nginx,
        drain_timeout=d.number("drain_timeout", DEFAULT_DRAIN_TIMEOUT, 0, 3600),
        keep_images=d.integer("keep_images", DEFAULT_KEEP_IMAGES, 0, 100),
        state_dir=Path(state_dir), stale_after=d.number("stale_after", DEFAULT_STALE_AFTER, 1, 86400),
        history=d.integer("history", DEFAULT_HISTORY, 1, 100000), raw=raw)


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
