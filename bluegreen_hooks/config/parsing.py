"""Parsing ``bluegreen.toml``: one small function per table, each returning its validated object.

A bad value is refused with one line that names the file and the key path, e.g.
``bluegreen.toml: colours/green: should be a port (1-65535), not '80; evil'``. The first bad key wins,
in the order of the tables below. See docs/config.md for every key and its default.
"""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, cast, get_args
from urllib.parse import urlsplit

from bluegreen_hooks.config.canary import CANARY_KEYS, parse_canary
from bluegreen_hooks.config.compose import parse_compose
from bluegreen_hooks.config.memory import MEMORY_KEYS, parse_memory
from bluegreen_hooks.config.model import (
    CONFIG_ENV,
    CONFIG_NAME,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEALTH_DEADLINE,
    DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_MAX_INTERVAL,
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_HISTORY,
    DEFAULT_KEEP_IMAGES,
    DEFAULT_STALE_AFTER,
    DEFAULT_STATE_DIR,
    DEFAULT_STOP_GRACE,
    DEFAULT_VERIFY_TIMEOUT,
    STATE_DIR_ENV,
    Config,
    ContainerConfig,
    Form,
    HealthConfig,
    Network,
    NginxConfig,
    Retire,
)
from bluegreen_hooks.config.operability import DEPLOY_KEYS, parse_maintenance, parse_metrics, parse_notify
from bluegreen_hooks.config.reader import (
    HEADER,
    IDENT,
    REL_NAME,
    SAFE_PATH,
    URL_PATH,
    Reader,
    is_host,
)
from bluegreen_hooks.config.tasks import parse_tasks
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import files
from bluegreen_hooks.model import COLOURS
from bluegreen_hooks.names import APP, APP_WHAT, IMAGE_WHAT, is_image

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10 hosts
    import tomli as tomllib

_TABLES = ("app", "colours", "container", "health", "nginx", "deploy", "compose", "canary", "maintenance",
           "notify", "tasks")
_CONTAINER_KEYS = ("image", "build", "dockerfile", "build_args", "build_network", "network", "port", "port_env",
                   "env", "stop_grace_period", "command")
_NGINX_KEYS = ("include", "form", "variable", "upstream", "colour_variable", "test", "reload", "pid_file",
               "public_url", "validate_path", "colour_header", "verify_timeout", "dump")
_VARIABLE = "an nginx variable name without '$'"
DEFAULT_WATCH_SECONDS = 0.0   # deploy/watch_seconds: off unless asked (docs/canary.md, "The watch window")
RETIRE = re.compile("|".join(get_args(Retire)))


class _Deploy(NamedTuple):
    """The [deploy] table; its values live on Config itself."""

    drain_timeout: float
    keep_images: int
    state_dir: Path
    stale_after: float
    history: int
    retire: Retire
    watch_seconds: float


def default_reload() -> tuple[str, ...]:
    """``systemctl reload nginx`` where systemd runs, else ``nginx -s reload``."""
    systemd = os.path.isdir("/run/systemd/system")
    return ("systemctl", "reload", "nginx") if systemd else ("nginx", "-s", "reload")


def sudo_prefix(as_root: bool | None = None) -> tuple[str, ...]:
    """``sudo -n`` for a deploy user that is not root (setup-host allows exactly these commands)."""
    root = os.geteuid() == 0 if as_root is None else as_root
    return () if root else ("sudo", "-n")


def nginx_commands(r: Reader, as_root: bool | None = None) -> tuple[tuple[str, ...], ...]:
    """nginx/test, nginx/reload and nginx/dump: ``nginx -T`` is nginx/test with ``-t`` made ``-T``."""
    sudo = sudo_prefix(as_root)
    test = r.argv("test", (*sudo, "nginx", "-t"))
    reload = r.argv("reload", (*sudo, *default_reload()))
    derived = tuple("-T" if a == "-t" else a for a in test) if "-t" in test else (*sudo, "nginx", "-T")
    return test, reload, r.argv("dump", derived)


def parse(raw: Mapping[str, Any], path: Path, environ: Mapping[str, str] | None = None,
          check_files: bool = True, as_root: bool | None = None) -> Config:
    """Validate ``raw`` (the parsed TOML) into a Config; raise ConfigError naming the first bad key.

    ``check_files=False`` skips the checks that the build context exists (for the copy of the live
    config kept in the state directory, read by the operator commands).
    """
    environ = os.environ if environ is None else environ
    top = Reader(path.name, raw, "", _TABLES)
    app = top.string("app", pattern=APP, what=APP_WHAT)
    if app is None:
        top.fail("app", "is required (a name such as \"shop\")")
    ports, host = parse_colours(top.sub("colours", ("blue", "green", "host")))
    container = parse_container(top, path, check_files)
    health = parse_health(top.sub("health", ("path", "statuses", "timeout", "deadline", "interval", "max_interval")))
    nginx = parse_nginx(top.sub("nginx", _NGINX_KEYS), app, health, as_root)
    deploy_table = top.sub("deploy", ("drain_timeout", "keep_images", "state_dir", "stale_after", "history",
                                      "retire", "watch_seconds", *DEPLOY_KEYS, *MEMORY_KEYS))
    deploy = parse_deploy(deploy_table, environ)
    compose = None
    if top.get("compose") is not None:
        compose = parse_compose(top, app, ports, nginx, path, check_files)
    canary = parse_canary(top.sub("canary", CANARY_KEYS)) if top.get("canary") is not None else None
    return Config(
        path=path, app=app, ports=ports, host=host, container=container, health=health, nginx=nginx,
        drain_timeout=deploy.drain_timeout, keep_images=deploy.keep_images, state_dir=deploy.state_dir,
        stale_after=deploy.stale_after, history=deploy.history, retire=deploy.retire, raw=raw, compose=compose,
        canary=canary, watch_seconds=deploy.watch_seconds,
        maintenance=parse_maintenance(top, deploy_table), metrics=parse_metrics(deploy_table),
        notify=parse_notify(top), memory=parse_memory(deploy_table),
        tasks=parse_tasks(path.name, top.get("tasks"), compose is not None))


def parse_colours(r: Reader) -> tuple[dict[str, int], str]:
    """[colours]: the port of each colour (different) and the host both listen on."""
    ports: dict[str, int] = {c: r.integer(c, {"blue": 8081, "green": 8082}[c], 1, 65535, "a port") for c in COLOURS}
    if ports["blue"] == ports["green"]:
        r.fail("green", f"should differ from colours/blue (both are {ports['blue']})")
    host = r.string("host", "127.0.0.1")
    if not is_host(host):
        r.fail("host", f"should be an IP address or a hostname, not {host!r}")
    return ports, host


def _build_context(r: Reader, build: str, path: Path, check_files: bool) -> Path:
    """container/build: a folder inside the bundle (when ``check_files``)."""
    build_path = (path.parent / build).resolve()
    root = path.parent.resolve()
    if check_files and build_path != root and root not in build_path.parents:
        r.fail("build", f"build context {build!r} is outside the bundle (it must be a folder next to {path.name})")
    if check_files and not build_path.is_dir():
        r.fail("build", f"build context {build!r} is not a folder next to {path.name}")
    return build_path


def parse_container(top: Reader, path: Path, check_files: bool) -> ContainerConfig:
    """[container]: exactly one of image/build (none with [compose]), the network and the container's port."""
    r = top.sub("container", _CONTAINER_KEYS)
    image = r.string("image")
    if image is not None and not is_image(image):
        r.fail("image", f"should be {IMAGE_WHAT}, not {image!r}")
    build = r.string("build")
    has_compose = top.get("compose") is not None
    if has_compose and top.get("container") is not None:
        top.fail("container", "remove the [container] table: with [compose] the compose file describes the containers")
    if not has_compose and (image is None) == (build is None):
        r.fail("build", "set exactly one of container/build (a build context) or container/image (to pull)")
    build_path = None if build is None else _build_context(r, build, path, check_files)
    dockerfile = r.string("dockerfile", "Dockerfile", REL_NAME, "a relative file name")
    if dockerfile.startswith("/") or ".." in dockerfile.split("/"):
        r.fail("dockerfile", f"should be a file name inside the build context, not {dockerfile!r}")
    if check_files and build_path is not None and not (build_path / dockerfile).is_file():
        r.fail("dockerfile", f"{dockerfile!r} not found in {build!r}")
    network = r.string("network", "host")
    if network not in get_args(Network):
        r.fail("network", f"should be \"host\" or \"bridge\", not {network!r}")
    port = r.integer("port", None, 1, 65535, "a port")
    if network == "bridge" and port is None:
        r.fail("port", "is required with network = \"bridge\" (the port the app listens on in the container)")
    command = r.optional_argv("command")
    build_args = r.mapping("build_args")
    build_network = r.string("build_network", None, IDENT, "a network name such as \"host\"")
    port_env = r.get("port_env", "PORT")
    env = r.mapping("env")
    stop_grace_period = r.number("stop_grace_period", DEFAULT_STOP_GRACE, 0, 3600)
    if not isinstance(port_env, str) or (port_env and not IDENT.fullmatch(port_env)):
        r.fail("port_env", f"should be an environment variable name (or \"\"), not {port_env!r}")
    return ContainerConfig(
        image=image, build=build_path, dockerfile=dockerfile, build_args=build_args, build_network=build_network,
        network=cast(Network, network), port=port, port_env=port_env, env=env,
        stop_grace_period=stop_grace_period, command=command)


def parse_health(r: Reader) -> HealthConfig:
    """[health]: the path and statuses that mean healthy, and the probe's timings."""
    statuses = r.get("statuses", [200])
    if not isinstance(statuses, list) or not statuses or\
            not all(isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses):
        r.fail("statuses", f"should be a list of HTTP statuses such as [200, 204], not {statuses!r}")
    return HealthConfig(
        path=r.string("path", "/health", URL_PATH, "an HTTP path starting with / (no spaces, ';', '$', '{', '}')"),
        statuses=tuple(statuses), timeout=r.number("timeout", DEFAULT_HEALTH_TIMEOUT, 0.1, 300),
        deadline=r.number("deadline", DEFAULT_HEALTH_DEADLINE, 1, 3600),
        interval=r.number("interval", DEFAULT_HEALTH_INTERVAL, 0.01, 60),
        max_interval=r.number("max_interval", DEFAULT_HEALTH_MAX_INTERVAL, 0.01, 300))


def _public_url(r: Reader) -> str:
    """nginx/public_url: an http(s) URL with a host, a path and no query (returned without its last '/')."""
    public_url = r.string("public_url", "http://127.0.0.1/")
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not is_host(parts.hostname) or\
            not URL_PATH.fullmatch(parts.path or "/") or parts.query or parts.fragment:
        r.fail("public_url", f"should be an http(s) URL such as \"http://127.0.0.1/\", not {public_url!r}")
    try:
        _ = parts.port   # reading it validates the port
    except ValueError:
        r.fail("public_url", f"has a bad port: {public_url!r}")
    return public_url.rstrip("/")


def parse_nginx(r: Reader, app: str, health: HealthConfig, as_root: bool | None = None) -> NginxConfig:
    """[nginx]: the include and its form, the commands that test and reload nginx, where to verify."""
    include = r.string("include", "/etc/nginx/conf.d/backend-url.inc", SAFE_PATH,
                       "an absolute path of letters, digits, '.', '_', '-', '/'")
    form = r.string("form", "set")
    if form not in get_args(Form):
        r.fail("form", f"should be \"set\" or \"upstream\", not {form!r}")
    public_url = _public_url(r)
    test, reload, dump = nginx_commands(r, as_root)
    return NginxConfig(
        include=Path(include), form=cast(Form, form),
        variable=r.string("variable", "service_url", IDENT, _VARIABLE),
        upstream=r.string("upstream", f"{app.replace('-', '_').replace('.', '_')}_backend", IDENT,
                          "an upstream name of letters, digits and _"),
        colour_variable=r.string("colour_variable", "bluegreen_colour", IDENT, _VARIABLE),
        test=test, reload=reload, dump=dump,
        pid_file=Path(r.string("pid_file", "/run/nginx.pid", SAFE_PATH, "an absolute path")),
        public_url=public_url,
        validate_path=r.string("validate_path", health.path, URL_PATH, "an HTTP path starting with /"),
        colour_header=r.string("colour_header", "X-Bluegreen-Colour", HEADER, "an HTTP header name"),
        verify_timeout=r.number("verify_timeout", DEFAULT_VERIFY_TIMEOUT, 0.5, 600))


def parse_deploy(r: Reader, environ: Mapping[str, str]) -> _Deploy:
    """[deploy]: drain and retention, and the state directory ($BLUEGREEN_STATE_DIR wins over state_dir)."""
    state_dir = environ.get(STATE_DIR_ENV) or r.string("state_dir", DEFAULT_STATE_DIR, SAFE_PATH, "an absolute path")
    if not SAFE_PATH.fullmatch(state_dir):
        raise ConfigError(f"{STATE_DIR_ENV}: should be an absolute path, not {state_dir!r}")
    return _Deploy(
        drain_timeout=r.number("drain_timeout", DEFAULT_DRAIN_TIMEOUT, 0, 3600),
        keep_images=r.integer("keep_images", DEFAULT_KEEP_IMAGES, 0, 100),
        state_dir=Path(state_dir), stale_after=r.number("stale_after", DEFAULT_STALE_AFTER, 1, 86400),
        history=r.integer("history", DEFAULT_HISTORY, 1, 100000),
        retire=cast(Retire, r.string("retire", "wait", RETIRE, '"wait" or "background"')),
        watch_seconds=r.number("watch_seconds", DEFAULT_WATCH_SECONDS, 0, 3600))


def find(bundle: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config path: $BLUEGREEN_CONFIG, else ``bluegreen.toml`` in ``bundle`` (default: cwd)."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).resolve()
    return (Path(bundle or ".") / CONFIG_NAME).resolve()


def load(path: Path | str, environ: Mapping[str, str] | None = None, check_files: bool = True,
         as_root: bool | None = None) -> Config:
    """Read and validate the TOML file at ``path``."""
    path = Path(path)
    try:
        raw = tomllib.loads(files.read_text(path, "the deploy config", 4 << 20))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no deploy config here (expected {CONFIG_NAME} at the bundle root)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    return parse(raw, path, environ, check_files, as_root)
