"""Parsing the [compose] table (docs/compose.md). Whether the compose files parse is checked by BeforeInstall."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bluegreen_hooks.config.model import DEFAULT_STOP_GRACE, ComposeConfig, ComposeRoute, NginxConfig
from bluegreen_hooks.config.reader import IDENT, Reader
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.model import COLOURS

COMPOSE_KEYS = ("file", "files", "project", "build", "pull", "services", "routed", "routes", "remove_volumes", "env",
                "command", "stop_grace_period", "start_in")
START_IN = ("BeforeInstall", "ApplicationStart")
_SERVICE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_REL_FILE = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._/@+-]{0,254}")


def parse_compose(top: Reader, app: str, ports: Mapping[str, int], nginx: NginxConfig, path: Path,
                  check_files: bool) -> ComposeConfig:
    """[compose]: the file(s), the project name per colour, the services to wait for and the routed ones."""
    r = top.sub("compose", COMPOSE_KEYS)
    files = _files(r, path, check_files)
    project = _project(r, app)
    services = _service_names(r, "services")
    routed = _routes(r, _service_names(r, "routed") or (), ports, nginx)
    command = r.optional_argv("command")
    build, pull = r.boolean("build", False), r.boolean("pull", False)
    start_in = r.table.get("start_in", "ApplicationStart")
    if start_in not in START_IN:
        r.fail("start_in", f"should be \"BeforeInstall\" or \"ApplicationStart\", not {start_in!r}")
    return ComposeConfig(
        files=files, single="file" in r.table, project=project, build=build, pull=pull, services=services,
        routed=routed, remove_volumes=r.boolean("remove_volumes", False), env=r.mapping("env"),
        command=command, stop_grace_period=r.number("stop_grace_period", DEFAULT_STOP_GRACE, 0, 3600),
        start_in=start_in)


def _compose_file(r: Reader, key: str, value: Any, path: Path, check_files: bool) -> Path:
    """One compose file, relative to the config and inside the bundle (it must exist, when ``check_files``)."""
    if not isinstance(value, str) or not _REL_FILE.fullmatch(value) or ".." in value.split("/"):
        r.fail(key, f"should be a compose file name relative to {path.name}, such as \"docker-compose.yml\", "
                    f"not {value!r}")
    p = (path.parent / value).resolve()
    if check_files and not p.is_file():
        r.fail(key, f"compose file {value!r} not found next to {path.name}")
    return p


def _files(r: Reader, path: Path, check_files: bool) -> dict[str, Path]:
    """compose/file (one file for both colours) or compose/files = { blue = ..., green = ... }."""
    if ("file" in r.table) == ("files" in r.table):
        r.fail("file", "set exactly one of compose/file (one file, colours set by variables) or "
                       "compose/files = { blue = \"...\", green = \"...\" }")
    if "file" in r.table:
        one = _compose_file(r, "file", r.get("file"), path, check_files)
        return {c: one for c in COLOURS}
    ft = r.sub("files", COLOURS)
    for c in COLOURS:
        if c not in ft.table:
            ft.fail(c, f"is required (the compose file of the {c} stack)")
    return {c: _compose_file(r, f"files/{c}", ft.get(c), path, check_files) for c in COLOURS}


def _project(r: Reader, app: str) -> str:
    """compose/project: a template with {app} and {colour} giving a valid, different project per colour."""
    project = r.string("project", "{app}-{colour}")
    try:
        names = {c: project.format(app=app, colour=c) for c in COLOURS}
    except (KeyError, IndexError, ValueError):
        r.fail("project", f"may only use {{app}} and {{colour}}, not {project!r}")
    if "{colour}" not in project or names["blue"] == names["green"]:
        r.fail("project", f"should contain {{colour}} so that each colour is its own project, not {project!r}")
    for name in names.values():
        if not _PROJECT.fullmatch(name) and "project" not in r.table:    # the default {app}-{colour}
            raise ConfigError(f"{r.file}: app: gives the compose project {name!r}; with [compose] the app is "
                              f"lowercase letters, digits, '-' and '_' (or set compose/project)")
        if not _PROJECT.fullmatch(name):
            r.fail("project", f"gives {name!r}; a compose project name is lowercase letters, digits, '-' and '_'")
    return project


def _service_names(r: Reader, key: str) -> tuple[str, ...] | None:
    """A list of distinct compose service names, or None when the key is absent."""
    value = r.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or\
            not all(isinstance(v, str) and _SERVICE.fullmatch(v) for v in value):
        r.fail(key, f"should be a list of compose service names such as [\"web\", \"api\"], not {value!r}")
    if len(set(value)) != len(value):
        r.fail(key, f"names a service twice: {value!r}")
    return tuple(value)


def _routes(r: Reader, names: tuple[str, ...], ports: Mapping[str, int], nginx: NginxConfig,
            ) -> tuple[ComposeRoute, ...]:
    """compose/routed with compose/routes: the first service uses [colours] and nginx/variable, the
    others their own table of ports and variable; no port or variable is used twice."""
    rt = r.sub("routes", names or ("(none)",))
    if not names:
        return ()
    if names[0] in rt.table:
        rt.fail(names[0], "is the first routed service: its ports are colours/blue and colours/green, "
                          "its variable nginx/variable; remove this table")
    used_ports = {ports[c]: f"colours/{c}" for c in COLOURS}
    used_vars = {nginx.variable: "nginx/variable", nginx.colour_variable: "nginx/colour_variable"}
    routed = [ComposeRoute(names[0], nginx.variable, dict(ports))]
    for svc in names[1:]:
        one = rt.get(svc)
        if not isinstance(one, dict):
            rt.fail(svc, "is required: a table with its port per colour, e.g. { blue = 9081, green = 9082 }")
        routed.append(_route(Reader(rt.file, one, f"{rt.prefix}{svc}/", ("blue", "green", "variable")),
                             svc, used_ports, used_vars))
    return tuple(routed)


def _route(s: Reader, svc: str, used_ports: dict[int, str], used_vars: dict[str, str]) -> ComposeRoute:
    """compose/routes/<svc>: its port per colour and its nginx variable (recorded in ``used_*``)."""
    ports: dict[str, int] = {}
    for c in COLOURS:
        port = s.integer(c, None, 1, 65535, "a port")
        if port is None:
            s.fail(c, f"is required (the port {svc} listens on in the {c} stack)")
        if port in used_ports:
            s.fail(c, f"port {port} is already used by {used_ports[port]}")
        used_ports[port] = f"{s.prefix}{c}"
        ports[c] = port
    variable = s.string("variable", re.sub(r"[^A-Za-z0-9_]", "_", svc) + "_url", IDENT,
                        "an nginx variable name without '$'")
    if variable in used_vars:
        s.fail("variable", f"${variable} is already used by {used_vars[variable]}")
    used_vars[variable] = f"{s.prefix}variable"
    return ComposeRoute(svc, variable, ports)
