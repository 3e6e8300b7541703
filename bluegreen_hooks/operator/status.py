"""``status``: what is live, since when, from which deployment, is it healthy, and do state, nginx and
containers agree. Reads only: the state file (never quarantined), the include, nginx's pid and public
URL, the containers of each colour and their health path.
"""
from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from bluegreen_hooks import runtime
from bluegreen_hooks.config import Config
from bluegreen_hooks.decide import holder_status
from bluegreen_hooks.errors import DockerUnavailable, NginxError
from bluegreen_hooks.host import health, instance, nginx, procfs, releases
from bluegreen_hooks.host.releases import images_text
from bluegreen_hooks.model import COLOURS, Colour, State
from bluegreen_hooks.operator.find_app import open_store, read_state
from bluegreen_hooks.operator.text import ago, first_line, utc
from bluegreen_hooks.runtime.base import LABEL_DEPLOYMENT, LABEL_IMAGE, Backend, Container
from bluegreen_hooks.runtime.sdk import connect

_INCLUDE_DEPLOYMENT_RE = re.compile(r"^# bluegreen-hooks: app=\S+ colour=\S+ deployment=(\S+)", re.M)


# -------------------------------------------------------------------------------------------------- nginx

@dataclass
class NginxView:
    """What the include says, whether nginx runs, and what its public URL answers."""

    text: str | None
    include_error: str | None
    colour: Colour | None
    deployment: str | None
    pid: int | None
    public: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def nginx_view(cfg: Config) -> NginxView:
    """Read the include and nginx's pid; probe the public URL when nginx runs and an include exists."""
    warnings: list[str] = []
    include_error = None
    try:
        text = nginx.read_include(cfg)
    except NginxError as exc:
        text, include_error = None, str(exc)
        warnings.append(include_error)
    m = _INCLUDE_DEPLOYMENT_RE.search(text or "")
    pid = nginx.master_pid(cfg)
    public: dict[str, Any] = {"url": cfg.nginx.public_url + cfg.health.path, "status": None, "colour": None,
                              "error": None}
    if pid is None:   # a FIFO (a folder...) at nginx/pid_file is named as such, not as "nginx is not running"
        warnings.append(nginx.pid_file_problem(cfg) or f"nginx is not running (no live pid in {cfg.nginx.pid_file})")
    elif text:
        try:
            a = nginx.probe(cfg, cfg.health.path, timeout=cfg.health.timeout)
            public.update(status=a.status, colour=a.colour or None)
        except Exception as exc:
            public["error"] = first_line(exc)
    return NginxView(text, include_error, nginx.include_colour(cfg, text), m.group(1) if m else None, pid, public,
                     warnings)


# --------------------------------------------------------------------------------------------- containers

@dataclass
class ContainersView:
    """Each colour's containers, their state and health; ``reachable`` is False when Docker is not."""

    colours: dict[str, Any]
    reachable: bool
    docker_error: str | None = None
    warnings: list[str] = field(default_factory=list)


def container_info(cont: Container) -> dict[str, Any]:
    """One container as status shows it (name, id, status, Docker health, restarts, labels, image)."""
    return {"name": cont.name, "id": cont.short_id, "status": cont.status, "health": cont.health,
            "restarts": cont.restarts, "started": cont.started, "deployment": cont.labels.get(LABEL_DEPLOYMENT),
            "image": cont.labels.get(LABEL_IMAGE) or cont.image, "service": cont.service}


def _service_ports(cfg: Config, colour: Colour) -> dict[str, int]:
    """The routed services of a compose app and their ports for ``colour`` (empty for a single container)."""
    return {r.service: r.ports[colour] for r in cfg.compose.routed} if cfg.compose else {}


def _http(cfg: Config, port: int) -> str:
    try:
        return health.check_http(cfg.host, port, cfg.health.path, cfg.health.timeout, cfg.health.statuses)
    except health.NotHealthyYet as exc:
        return f"unhealthy: {exc}"


def colour_view(cfg: Config, backend: Backend | None, colour: Colour) -> dict[str, Any]:
    """One colour: its port, containers, and a direct HTTP check of its health path when one runs.

    Compose services get their own port and HTTP check when routed (``port``/``http`` None otherwise)."""
    conts = [container_info(c) for c in backend.containers(colour)] if backend is not None else []
    running = [c for c in conts if c["status"] == "running"]
    routed = _service_ports(cfg, colour)
    for c in conts:
        c["port"] = routed.get(c["service"]) if cfg.compose else cfg.port(colour)
        c["http"] = _http(cfg, c["port"]) if c["status"] == "running" and c["port"] else None
    http = None
    if running:
        http = _http(cfg, cfg.port(colour))
    return {"port": cfg.port(colour), "containers": conts, "running": bool(running), "http": http,
            "healthy": bool(running) and http is not None and http.startswith("HTTP")
            and all(c["health"] in (None, "healthy") for c in running)}


def fill_deployments(state: State, colours: dict[str, Any]) -> None:
    """Containers without a deployment label (compose services) belong to the colour's deployment."""
    in_progress = state.in_progress
    for colour, view in colours.items():
        dep = (state.live_deployment if colour == state.live
               else in_progress.id if in_progress and in_progress.target == colour
               else state.previous_deployment if colour == state.previous else None)
        for c in view["containers"]:
            c["deployment"] = c["deployment"] or dep


def containers_view(cfg: Config) -> ContainersView:
    """Connect to Docker and look at both colours; an unreachable Docker is a warning, not an error."""
    try:
        client = connect(timeout=30)
    except DockerUnavailable as exc:
        return ContainersView({c: colour_view(cfg, None, c) for c in COLOURS}, False, str(exc), [str(exc)])
    try:
        backend = runtime.backend(cfg, client)
        return ContainersView({c: colour_view(cfg, backend, c) for c in COLOURS}, True)
    finally:
        client.close()


# ----------------------------------------------------------------------------------------- disagreements

def container_disagreements(state: State, problem: str | None, store_path: str, ngx: NginxView,
                            per_colour: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Warnings and notes that need the containers: state or include naming a colour that does not run,
    a wrong deployment label, an unhealthy live colour, a colour that runs but is not live."""
    warnings: list[str] = []
    live = state.live
    up = [c for c in COLOURS if per_colour[c]["running"]]
    if problem == "missing" and (ngx.colour or up):
        warnings.append(f"no state file {store_path}, but the nginx include points at {ngx.colour or 'nothing'} "
                        f"and running colours are {up or 'none'}")
    if live and not per_colour[live]["running"]:
        warnings.append(f"state says {live} is live, but no {live} container runs")
    if ngx.colour and ngx.colour != live and not per_colour[ngx.colour]["running"]:
        warnings.append(f"nginx sends traffic to {ngx.colour}, but no {ngx.colour} container runs "
                        f"(requests get 502)")
    if live and per_colour[live]["running"]:
        lv = per_colour[live]
        # (compose services carry the label only when their file sets it)
        deps = {c["deployment"] for c in lv["containers"] if c["status"] == "running"} - {None}
        if state.live_deployment and deps and deps != {state.live_deployment}:
            warnings.append(f"state says {live} runs deployment {state.live_deployment}, but its container "
                            f"is labelled {', '.join(sorted(str(d) for d in deps))}")
        if not lv["healthy"]:
            warnings.append(f"live colour {live} is not healthy: {lv['http'] or 'no answer'}"
                            + "".join(f"; {c['name']} Docker health {c['health']}" for c in lv["containers"]
                                      if c["health"] not in (None, "healthy")))
    notes = [f"{c} also runs (not live)" for c in COLOURS if c != live and per_colour[c]["running"]]
    return warnings, notes


def disagreements(cfg: Config, state: State, problem: str | None, store_path: str, ngx: NginxView,
                  conts: ContainersView) -> tuple[list[str], list[str]]:
    """Warnings and notes where the state file, the include, nginx's answer and the containers disagree."""
    warnings: list[str] = []
    notes: list[str] = []
    live = state.live
    if problem == "corrupt":
        warnings.append(f"state file {store_path} is corrupt (not a state file of {cfg.app}); the next deployment "
                        f"or rollback rebuilds it from the include and the containers")
    if conts.reachable:
        more, notes = container_disagreements(state, problem, store_path, ngx, conts.colours)
        warnings += more
    if ngx.colour != live and ngx.include_error is None:
        warnings.append(f"state says live={live or 'none'}, but the nginx include {cfg.nginx.include} "
                        f"points at {ngx.colour or 'no colour'}")
    public = ngx.public
    if public["colour"] and ngx.colour and public["colour"] != ngx.colour:
        warnings.append(f"nginx answers from {public['colour']}, but its include points at {ngx.colour} "
                        f"(include edited without a reload?)")
    if ngx.text and ngx.pid is not None and public["error"]:
        warnings.append(f"nginx at {public['url']} does not answer: {public['error']}")
    return warnings, notes


def in_progress_view(cfg: Config, state: State) -> tuple[dict[str, Any] | None, list[str]]:
    """The deployment in progress (busy or stale) and a warning when it looks stale."""
    in_progress = state.in_progress
    if in_progress is None:
        return None, []
    verdict, reason = holder_status(in_progress, time.time(), cfg.stale_after, socket.gethostname(),
                                    procfs.process_alive)
    view = {"id": in_progress.id, "event": in_progress.event, "stage": in_progress.stage, "target": in_progress.target,
            "started": in_progress.started, "status": verdict, "reason": reason}
    if verdict == "stale":
        return view, [f"deployment {in_progress.id} looks stale ({reason}); the next deployment or rollback takes over"]
    return view, []


# ------------------------------------------------------------------------------------------------- status

def gather_status(cfg: Config) -> dict[str, Any]:
    """Everything ``status`` shows, as a JSON-ready dict with stable keys (no output, changes nothing)."""
    store = open_store(cfg)
    state, problem = read_state(store)
    ngx = nginx_view(cfg)
    conts = containers_view(cfg)
    fill_deployments(state, conts.colours)
    found, notes = disagreements(cfg, state, problem, str(store.path), ngx, conts)
    in_progress, stale = in_progress_view(cfg, state)
    from bluegreen_hooks.operator.maintenance import status_view

    maintenance, maintenance_warnings = status_view(cfg, state, ngx.text)
    warnings = ngx.warnings + conts.warnings + found + stale + maintenance_warnings
    return {
        "app": cfg.app, "config": str(cfg.path), "state_file": str(store.path), "state_problem": problem,
        "instance": {"text": instance.describe(cfg.state_dir), "hostname": socket.gethostname(),
                     "recorded": instance.read(cfg.state_dir)},
        "live": {"colour": state.live, "since": state.live_since, "deployment": state.live_deployment,
                 "image": state.live_image},
        "previous": {"colour": state.previous, "deployment": state.previous_deployment,
                     "image": state.previous_image},
        "in_progress": in_progress,
        "releases": releases.summary(cfg.state_dir, cfg.app),
        "canary": ({"deployment": state.in_progress.id, **state.in_progress.canary.to_json()}
                   if state.in_progress is not None and state.in_progress.canary is not None else None),
        "maintenance": maintenance,
        "receipt": _receipt(state),
        "retiring": _retiring(state, store),
        "nginx": {"running": ngx.pid is not None, "pid": ngx.pid, "include": str(cfg.nginx.include),
                  "include_colour": ngx.colour, "include_deployment": ngx.deployment, "public": ngx.public},
        "docker_error": conts.docker_error,
        "colours": conts.colours,
        "notes": notes,
        "warnings": warnings,
        "ok": not warnings,
    }


def _receipt(state: State) -> dict[str, Any] | None:
    """The receipt of the deployment in progress (its watch window so far) or of the last one that has one."""
    r = state.in_progress.extra.get("receipt") if state.in_progress is not None else None
    if state.in_progress is not None and isinstance(r, dict):
        return {"deployment": state.in_progress.id, **r}
    d = next((d for d in reversed(state.deployments) if isinstance(d.get("receipt"), dict)), None)
    return {"deployment": d.get("id"), "outcome": d.get("outcome"), **d["receipt"]} if d else None


def _retiring(state: State, store: Any) -> dict[str, Any] | None:
    """deploy/retire = "background": the old colour's drain and stop still running (lifecycle/background.py)."""
    from bluegreen_hooks.lifecycle.background import log_path

    r = state.retiring
    if r is None:
        return None
    return {**r.to_json(), "running": procfs.process_alive(r.pid, r.pid_start), "log": str(log_path(store))}


def _colour_lines(s: dict[str, Any]) -> list[str]:
    lines = []
    for colour in COLOURS:
        c = s["colours"].get(colour)
        if c is None:
            lines.append(f"{colour:<12} containers unknown (Docker unreachable)")
            continue
        mark = " (live)" if colour == s["live"]["colour"] else ""
        if not c["containers"]:
            lines.append(f"{colour:<12} :{c['port']}{mark}  no container")
        for cont in c["containers"]:
            port = f":{cont['port']}" if cont.get("port") else "(not routed)"
            lines.append(f"{colour:<12} {port}{mark}  {cont['name']} {cont['status']}"
                         + (f", Docker health {cont['health']}" if cont["health"] else "")
                         + (f", {cont['http']}" if cont.get("http") else "")
                         + f"  (deployment {cont['deployment'] or 'unknown'}, image {cont['image']}"
                         + (f", {cont['restarts']} restarts" if cont["restarts"] else "") + ")")
    return lines


def print_status(s: dict[str, Any]) -> None:
    """Print what ``gather_status`` found, one line per fact, warnings last."""
    live, prev, n = s["live"], s["previous"], s["nginx"]
    print(f"app          {s['app']}  (state {s['state_file']}, config {s['config']})")
    print(f"instance     {s['instance']['text']}")
    if live["colour"]:
        print(f"live         {live['colour']} since {utc(live['since'])} ({ago(live['since'])}), "
              f"deployment {live['deployment']}, image {live['image']}")
    else:
        print("live         none (nothing deployed yet)" if s["state_problem"] == "missing" else "live         none")
    if prev["colour"]:
        print(f"previous     {prev['colour']}, deployment {prev['deployment']}, image {prev['image']}")
    m = s.get("maintenance")
    if m:
        print(f"maintenance  ON since {utc(m['since'])} ({ago(m['since'])}) by {m['user']}@{m['host']}: 503 with "
              f"Retry-After {m['retry_after']}s, \"{m['message']}\"")
    r = s.get("retiring")
    if r:
        print(f"retiring     {r['colour']} in the background ({r['phase']} since {utc(r['since'])}, pid {r['pid']}"
              + ("" if r["running"] else ", no longer running: the next deployment takes it over")
              + f"; output in {r['log']})")
    in_progress = s["in_progress"]
    if in_progress:
        print(f"in progress  {in_progress['id']} -> {in_progress['target']}: {in_progress['status']}, "
              f"{in_progress['reason']}")
    c = s.get("canary")
    if c:
        print(f"canary:      {c['new']} gets {c['share']} % of requests ({c['phase']}, step {c['step'] + 1}, "
              f"deployment {c['deployment']})" + (f"; {c['request']} requested by {c['requested_by']}"
                                                  if c["request"] else ""))
    rc = s.get("receipt")
    if rc:
        from bluegreen_hooks.operator.history import receipt_text

        print(f"receipt      {rc['deployment']}:{receipt_text(rc)}")
    pub = n["public"]
    answer = (f"answers HTTP {pub['status']} from {pub['colour'] or '(no colour header)'}" if pub["status"]
              else f"does not answer ({pub['error']})" if pub["error"] else "not probed")
    running = f"running (pid {n['pid']})" if n["running"] else "NOT running"
    print(f"nginx        {running}; include {n['include']} "
          f"-> {n['include_colour'] or 'no colour'}"
          + (f" (deployment {n['include_deployment']})" if n["include_deployment"] else ""))
    print(f"             {pub['url']} {answer}")
    for dep, rel in (s.get("releases") or {}).items():
        mark = " (live)" if dep == live["deployment"] else " (previous)" if dep == prev["deployment"] else ""
        print(f"release      {dep}{mark}: {rel['colour']}, recorded {utc(rel['created'])}, images "
              f"{images_text(rel['images'])}")
    for line in _colour_lines(s):
        print(line)
    for note in s["notes"]:
        print(f"note: {note}")
    for w in s["warnings"]:
        print(f"WARNING: {w}")
    if s["ok"]:
        print("OK: state, nginx include and containers agree"
              + (f"; {live['colour']} is healthy" if live["colour"] else ""))
