"""Operator commands for the host: ``status``, ``history``, ``rollback``, ``doctor``.

They answer "what is live, since when, from which deployment, is it healthy?" and undo a bad release
in one command. They find the app through the state directory: ApplicationStart keeps a copy of the
live ``bluegreen.toml`` as ``<state_dir>/<app>.toml`` (recorded in the state as ``config``), so the
commands need no bundle. ``--state-dir`` (default ``$BLUEGREEN_STATE_DIR``, else
/var/lib/bluegreen-hooks), ``--app NAME`` (default: the only app there) or ``--config PATH``.

Rollback takes the same claim as a deployment (``state.claim``), switches nginx through the same
validated ``nginx.switch`` (write, ``nginx -t``, reload, verify), then drains the old nginx workers and
stops the colour it rolled back from (``--keep-other`` leaves it running). See docs/operator.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bluegreen_hooks import config as config_mod
from bluegreen_hooks import state
from bluegreen_hooks.config import COLOURS, Config
from bluegreen_hooks.errors import ConfigError, HookError

ROLLBACK_EVENT = "Rollback"
DISK_FAIL_BYTES = 1 << 30        # doctor: FAIL below 1 GiB free
DISK_WARN_BYTES = 5 << 30        # doctor: WARN below 5 GiB free
_INCLUDE_DEPLOYMENT_RE = re.compile(r"^# bluegreen-hooks: app=\S+ colour=\S+ deployment=(\S+)", re.M)

SELECT_HELP = ("The app is found in the state directory: ApplicationStart keeps a copy of the live bluegreen.toml "
               "there as <app>.toml.")
EXIT_STATUS = ("exit codes: 0 live colour healthy and state, nginx include and containers agree (or nothing deployed "
               "yet); 1 warnings printed (they disagree, or the live colour is not healthy); 2 bad input (no app "
               "found, bad config or arguments)")
EXIT_HISTORY = "exit codes: 0 ok; 2 bad input (no app found, bad config or arguments)"
EXIT_ROLLBACK = ("exit codes: 0 rolled back; 1 refused (no previous release) or a step failed (the last line says "
                 "why; the colour that was live keeps serving); 2 bad input; 3 a deployment is in progress")
EXIT_DOCTOR = "exit codes: 0 every check passed (WARN lines allowed); 1 at least one FAIL line; 2 bad arguments"


class NoPreviousRelease(HookError):
    """Rollback has nothing to go back to."""


# ------------------------------------------------------------------------------------------ finding the app

def default_state_dir(environ=None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get(config_mod.STATE_DIR_ENV) or config_mod.DEFAULT_STATE_DIR)


def apps_in(state_dir: Path) -> list[str]:
    """Apps with a state file or a config copy in ``state_dir`` (sorted)."""
    try:
        names = os.listdir(state_dir)
    except OSError:
        return []
    apps = {n.rsplit(".", 1)[0] for n in names if not n.startswith(".") and n.endswith((".json", ".toml"))}
    return sorted(apps)


def find_config(args: argparse.Namespace) -> Config:
    """The Config of the app the arguments name (see the module docstring); ConfigError if none."""
    environ = dict(os.environ)
    if args.state_dir:
        environ[config_mod.STATE_DIR_ENV] = str(args.state_dir)
    if args.config:
        return config_mod.load(Path(args.config).resolve(), environ, check_files=False)
    sd = Path(args.state_dir) if args.state_dir else default_state_dir()
    environ[config_mod.STATE_DIR_ENV] = str(sd)
    apps = apps_in(sd)
    if args.app:
        if args.app not in apps:
            raise ConfigError(f"no app {args.app!r} in the state directory {sd} "
                              f"(apps there: {', '.join(apps) or 'none'}); check --app or --state-dir")
        app = args.app
    elif not apps:
        raise ConfigError(f"no app has been deployed with state directory {sd} (no <app>.json or <app>.toml there); "
                          f"pass --state-dir DIR, or --config PATH to the app's bluegreen.toml")
    elif len(apps) > 1:
        raise ConfigError(f"several apps in {sd}: {', '.join(apps)}; choose one with --app NAME")
    else:
        app = apps[0]
    path = sd / f"{app}.toml"
    try:
        recorded = json.loads((sd / f"{app}.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded and Path(recorded).is_file():
        path = Path(recorded)
    if not path.is_file():
        raise ConfigError(f"{path}: no copy of {app}'s live config (ApplicationStart writes it); "
                          f"pass --config PATH to the app's bluegreen.toml")
    return config_mod.load(path, environ, check_files=False)


def _select_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("choosing the app")
    g.add_argument("--state-dir", type=Path, default=None,
                   help=f"the state directory (default: ${config_mod.STATE_DIR_ENV}, else {config_mod.DEFAULT_STATE_DIR})")
    g.add_argument("--app", default=None, help="the app's name (default: the only app in the state directory)")
    g.add_argument("--config", type=Path, default=None,
                   help="a bluegreen.toml to use instead of the copy in the state directory")


# ------------------------------------------------------------------------------------------------ helpers

def utc(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    s = max(0, int((time.time() if now is None else now) - ts))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m ago"
    return f"{s // 86400}d ago"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def read_state(store: state.Store) -> tuple[dict[str, Any], str | None]:
    """The state and its problem ("missing" | "corrupt" | None), read without changing anything."""
    data = store.read(quarantine=False)
    return data, store.problem


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------------------- status

def _container_info(cont) -> dict[str, Any]:
    from bluegreen_hooks.containers import LABEL_DEPLOYMENT, LABEL_IMAGE

    attrs = cont.attrs
    st = attrs.get("State", {})
    return {"name": cont.name, "id": cont.short_id, "status": st.get("Status") or cont.status,
            "health": (st.get("Health") or {}).get("Status"), "restarts": attrs.get("RestartCount", 0) or 0,
            "started": st.get("StartedAt"), "deployment": cont.labels.get(LABEL_DEPLOYMENT),
            "image": cont.labels.get(LABEL_IMAGE) or (attrs.get("Config") or {}).get("Image")}


def colour_containers(be, colour: str) -> list:
    """The containers of one colour, through the backend (compose projects have their own labels)."""
    from bluegreen_hooks import containers

    if hasattr(be, "containers"):
        return be.containers(colour)
    return containers.containers(be.client, be.cfg, colour)


def gather_status(cfg: Config) -> dict[str, Any]:
    """Everything ``status`` shows, as a JSON-ready dict with stable keys (no output, changes nothing)."""
    from bluegreen_hooks import containers, health, nginx
    from bluegreen_hooks.errors import DockerUnavailable, NginxError

    store = state.Store(cfg.state_dir, cfg.app, cfg.history)
    st, problem = read_state(store)
    warnings: list[str] = []
    notes: list[str] = []
    live = st.get("live")

    # nginx
    include_error = None
    try:
        text = nginx.read_include(cfg)
    except NginxError as exc:
        text, include_error = None, str(exc)
        warnings.append(include_error)
    inc_colour = nginx.include_colour(cfg, text)
    m = _INCLUDE_DEPLOYMENT_RE.search(text or "")
    pid = nginx.master_pid(cfg)
    public: dict[str, Any] = {"url": cfg.nginx.public_url + cfg.health.path, "status": None, "colour": None,
                              "error": None}
    if pid is None:
        warnings.append(f"nginx is not running (no live pid in {cfg.nginx.pid_file})")
    elif text:
        try:
            a = nginx.probe(cfg, cfg.health.path, timeout=cfg.health.timeout)
            public.update(status=a.status, colour=a.colour or None)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is reported, not raised
            public["error"] = _first_line(exc)

    # containers
    docker_error = None
    per_colour: dict[str, Any] = {}
    try:
        client = containers.connect(timeout=30)
        be = containers.backend(cfg, client)
    except DockerUnavailable as exc:
        client, docker_error = None, str(exc)
        warnings.append(docker_error)
    try:
        for colour in COLOURS:
            conts = [_container_info(c) for c in colour_containers(be, colour)] if client else []
            running = [c for c in conts if c["status"] == "running"]
            http = None
            if running:
                try:
                    http = health.check_http(cfg.host, cfg.port(colour), cfg.health.path, cfg.health.timeout,
                                             cfg.health.statuses)
                except health.NotHealthyYet as exc:
                    http = f"unhealthy: {exc}"
            per_colour[colour] = {"port": cfg.port(colour), "containers": conts, "running": bool(running),
                                  "http": http,
                                  "healthy": bool(running) and http is not None and http.startswith("HTTP")
                                  and all(c["health"] in (None, "healthy") for c in running)}
    finally:
        if client is not None:
            client.close()

    # disagreements
    if problem == "corrupt":
        warnings.append(f"state file {store.path} is corrupt (not a state file of {cfg.app}); the next deployment "
                        f"or rollback rebuilds it from the include and the containers")
    if client is not None:
        up = [c for c in COLOURS if per_colour[c]["running"]]
        if problem == "missing" and (inc_colour or up):
            warnings.append(f"no state file {store.path}, but the nginx include points at {inc_colour or 'nothing'} "
                            f"and running colours are {up or 'none'}")
        if live and not per_colour[live]["running"]:
            warnings.append(f"state says {live} is live, but no {live} container runs")
        if inc_colour and inc_colour != live and not per_colour[inc_colour]["running"]:
            warnings.append(f"nginx sends traffic to {inc_colour}, but no {inc_colour} container runs "
                            f"(requests get 502)")
        if live and per_colour[live]["running"]:
            # (compose services carry the label only when their file sets it)
            deps = {c["deployment"] for c in per_colour[live]["containers"] if c["status"] == "running"} - {None}
            if st.get("live_deployment") and deps and deps != {st.get("live_deployment")}:
                warnings.append(f"state says {live} runs deployment {st.get('live_deployment')}, but its container "
                                f"is labelled {', '.join(sorted(str(d) for d in deps))}")
            if not per_colour[live]["healthy"]:
                warnings.append(f"live colour {live} is not healthy: {per_colour[live]['http'] or 'no answer'}"
                                + "".join(f"; {c['name']} Docker health {c['health']}"
                                          for c in per_colour[live]["containers"]
                                          if c["health"] not in (None, "healthy")))
        for c in COLOURS:
            if c != live and per_colour[c]["running"]:
                notes.append(f"{c} also runs (not live)")
    if inc_colour != live and include_error is None:
        warnings.append(f"state says live={live or 'none'}, but the nginx include {cfg.nginx.include} "
                        f"points at {inc_colour or 'no colour'}")
    if public["colour"] and inc_colour and public["colour"] != inc_colour:
        warnings.append(f"nginx answers from {public['colour']}, but its include points at {inc_colour} "
                        f"(include edited without a reload?)")
    if text and pid is not None and public["error"]:
        warnings.append(f"nginx at {public['url']} does not answer: {public['error']}")

    ip = st.get("in_progress")
    in_progress = None
    if ip:
        verdict, reason = state.holder_status(ip, time.time(), cfg.stale_after)
        in_progress = {"id": ip.get("id"), "event": ip.get("event"), "stage": ip.get("stage"),
                       "target": ip.get("target"), "started": ip.get("started"), "status": verdict, "reason": reason}
        if verdict == "stale":
            warnings.append(f"deployment {ip.get('id')} looks stale ({reason}); the next deployment or rollback "
                            f"takes over")
    return {
        "app": cfg.app, "config": str(cfg.path), "state_file": str(store.path), "state_problem": problem,
        "live": {"colour": live, "since": st.get("live_since"), "deployment": st.get("live_deployment"),
                 "image": st.get("live_image")},
        "previous": {"colour": st.get("previous"), "deployment": st.get("previous_deployment"),
                     "image": st.get("previous_image")},
        "in_progress": in_progress,
        "nginx": {"running": pid is not None, "pid": pid, "include": str(cfg.nginx.include), "include_colour": inc_colour,
                  "include_deployment": m.group(1) if m else None, "public": public},
        "docker_error": docker_error,
        "colours": per_colour,
        "notes": notes,
        "warnings": warnings,
        "ok": not warnings,
    }


def print_status(s: dict[str, Any]) -> None:
    live, prev, n = s["live"], s["previous"], s["nginx"]
    print(f"app          {s['app']}  (state {s['state_file']}, config {s['config']})")
    if live["colour"]:
        print(f"live         {live['colour']} since {utc(live['since'])} ({ago(live['since'])}), "
              f"deployment {live['deployment']}, image {live['image']}")
    else:
        print("live         none (nothing deployed yet)" if s["state_problem"] == "missing" else "live         none")
    if prev["colour"]:
        print(f"previous     {prev['colour']}, deployment {prev['deployment']}, image {prev['image']}")
    ip = s["in_progress"]
    if ip:
        print(f"in progress  {ip['id']} -> {ip['target']}: {ip['status']}, {ip['reason']}")
    pub = n["public"]
    answer = (f"answers HTTP {pub['status']} from {pub['colour'] or '(no colour header)'}" if pub["status"]
              else f"does not answer ({pub['error']})" if pub["error"] else "not probed")
    print(f"nginx        {'running (pid %s)' % n['pid'] if n['running'] else 'NOT running'}; include {n['include']} "
          f"-> {n['include_colour'] or 'no colour'}"
          + (f" (deployment {n['include_deployment']})" if n["include_deployment"] else ""))
    print(f"             {pub['url']} {answer}")
    for colour in COLOURS:
        c = s["colours"].get(colour)
        if c is None:
            print(f"{colour:<12} containers unknown (Docker unreachable)")
            continue
        mark = " (live)" if colour == live["colour"] else ""
        if not c["containers"]:
            print(f"{colour:<12} :{c['port']}{mark}  no container")
        for cont in c["containers"]:
            print(f"{colour:<12} :{c['port']}{mark}  {cont['name']} {cont['status']}"
                  + (f", Docker health {cont['health']}" if cont["health"] else "")
                  + (f", {c['http']}" if cont["status"] == "running" and c["http"] else "")
                  + f"  (deployment {cont['deployment']}, image {cont['image']}"
                  + (f", {cont['restarts']} restarts" if cont["restarts"] else "") + ")")
    for note in s["notes"]:
        print(f"note: {note}")
    for w in s["warnings"]:
        print(f"WARNING: {w}")
    if s["ok"]:
        print("OK: state, nginx include and containers agree" + (f"; {live['colour']} is healthy" if live["colour"] else ""))


def _status(args: argparse.Namespace) -> int:
    s = gather_status(find_config(args))
    if args.json:
        _dump(s)
    else:
        print_status(s)
    return 0 if s["ok"] else 1


# ------------------------------------------------------------------------------------------------ history

def _history(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError(f"-n: should be a positive number of records, not {args.n}")
    cfg = find_config(args)
    store = state.Store(cfg.state_dir, cfg.app, cfg.history)
    st, _ = read_state(store)
    events, deployments = st.get("events", [])[-args.n:], st.get("deployments", [])[-args.n:]
    if args.json:
        _dump({"app": cfg.app, "state_file": str(store.path), "events": events, "deployments": deployments})
        return 0
    if args.deployments:
        if not deployments:
            print(f"no deployments recorded in {store.path}")
        for d in deployments:
            print(f"{utc(d.get('ended'))}  {d.get('id') or '-':<28} {d.get('outcome') or '-':<10} "
                  f"{(d.get('from') or '-') + ' -> ' + (d.get('target') or '-'):<14} {d.get('seconds') or 0:8.2f}s  "
                  f"image {d.get('image') or '-'}" + (f"  cause: {d['cause']}" if d.get("cause") else ""))
        return 0
    if not events:
        print(f"no events recorded in {store.path}")
    for e in events:
        colours = f"{e.get('live') or '-'}/{e.get('target') or '-'}"
        print(f"{utc(e.get('at'))}  {e.get('deployment') or '-':<28} {e.get('event') or '-':<16} "
              f"{e.get('outcome') or '-':<10} {e.get('seconds') or 0:7.2f}s  live/target {colours:<12} "
              f"{e.get('user') or '?'}@{e.get('host') or '?'}" + (f"  cause: {e['cause']}" if e.get("cause") else ""))
    return 0


# ----------------------------------------------------------------------------------------------- rollback

def rollback_id(now: float | None = None) -> str:
    return "rollback-" + datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")


def rollback(cfg: Config, say: Callable[[str], None], keep_other: bool = False) -> dict[str, Any]:
    """Make the previous release live again; return what was done. Raises HookError (nothing else changed).

    Under the app's claim: if the previous colour still runs the previous deployment, switch nginx to it
    at once; else start the previous image as that colour, wait until healthy, then switch. Then wait
    for the old nginx workers to drain, and stop the colour rolled back from unless ``keep_other``.
    """
    from bluegreen_hooks import containers, health, nginx

    t0 = time.monotonic()
    rid = rollback_id()
    store = state.Store(cfg.state_dir, cfg.app, cfg.history)
    be = containers.backend(cfg)
    with store.update() as st:
        running = be.running()
        for note in state.reconcile(st, nginx.include_colour(cfg, nginx.read_include(cfg)), running, store.problem):
            say(f"reconciled: {note}")
        live, prev = st.get("live"), st.get("previous")
        prev_d, prev_image = st.get("previous_deployment"), st.get("previous_image")
        if not live:
            raise NoPreviousRelease(f"nothing to roll back: no colour is live for {cfg.app} (see `bluegreen-hooks status`)")
        if not prev or prev == live or not (prev_image or running.get(prev)):
            raise NoPreviousRelease(f"nothing to roll back to: {cfg.app} has no previous release recorded "
                                    f"(live: {live}, deployment {st.get('live_deployment')})")
        failed = next((d for d in reversed(st.get("deployments", [])) if d.get("id") == prev_d), None)
        if failed and failed.get("outcome") == "failed" and prev_d != st.get("live_deployment"):
            raise NoPreviousRelease(f"the previous release {prev_d} on {prev} failed its deployment "
                                    f"({(failed.get('cause') or 'no cause recorded')[:120]}); refusing to roll back "
                                    f"to it: {live} ({st.get('live_deployment')}) stays live")
        up = running.get(prev)
        mode = "switch" if up and (be.kind != "docker" or up.get("deployment") == prev_d or not prev_image) else "restart"
        if mode == "restart" and be.kind != "docker":
            raise NoPreviousRelease(f"{prev} ({prev_d}) no longer runs, and a {be.kind} app is started from its "
                                    f"bundle's files: deploy revision {prev_d} again instead")
        if mode == "restart":
            _require_image(be, prev_image, prev_d)
        note = state.claim(st, rid, ROLLBACK_EVENT, prev, cfg.stale_after)
        if note:
            say(note)
        ip = st["in_progress"]
        ip.update({"from": live, "image": prev_image})
        live_d, live_image = st.get("live_deployment"), st.get("live_image")
    say(f"rolling {cfg.app} back from {live} ({live_d}) to {prev} ({prev_d}, image {prev_image})")

    started = False
    try:
        if mode == "switch":
            say(f"{prev} still runs {up.get('name')} (deployment {up.get('deployment') or prev_d}): "
                f"switching nginx to it at once")
            prev_d = up.get("deployment") or prev_d
        else:
            say(f"{prev} is not running: starting it from {prev_image}")
            started = True
            be.start(prev, prev_image, prev_d or rid, live, say)
            health.wait_healthy(cfg, prev, lambda: be.watch(prev), say)
        include_id = prev_d if prev_d and nginx.DEPLOYMENT_ID_RE.match(prev_d) else rid
        sw = nginx.switch(cfg, prev, include_id, say)
    except BaseException as exc:
        if started:
            say(f"removing {prev}: {live} keeps serving")
            try:
                be.remove_colour(prev, live, say, grace=0)
            except Exception as cleanup:  # noqa: BLE001 - report the first failure, not the cleanup's
                say(f"warning: could not remove {prev}: {_first_line(cleanup)}")
        _record(store, rid, "failed", time.monotonic() - t0, live, prev, _first_line(exc))
        if isinstance(exc, HookError):
            exc.args = (f"rollback failed: {exc.args[0]}; {live} keeps serving",)
        raise
    with store.update() as st:
        state.set_live(st, prev, prev_d, prev_image)
        st["drain_workers"] = sw.old_workers   # as a deployment's switch records them (events.py)
        state.finish_event(st, rid, "switched")
    say(f"{prev} is live again (deployment {prev_d})")
    stopped = False
    try:
        drained, left = nginx.wait_drained(sw.old_workers, cfg.drain_timeout)
        say("old nginx workers finished their requests" if drained else
            f"drain timeout ({cfg.drain_timeout:g}s) reached with {left} old nginx worker(s) still busy")
        if keep_other:
            say(f"{live} keeps running (--keep-other); roll back again to switch to it at once")
        else:
            be.remove_colour(live, prev, say)
            stopped = True
    except BaseException as exc:
        _record(store, rid, "failed", time.monotonic() - t0, prev, prev,
                f"{prev} is live, but stopping {live} failed: {_first_line(exc)}")
        raise
    seconds = time.monotonic() - t0
    _record(store, rid, "succeeded", seconds, prev, prev)
    say(f"rollback {rid} done in {seconds:.1f}s: {prev} live ({prev_d})"
        + (f", {live} stopped" if stopped else f", {live} still running"))
    return {"id": rid, "mode": mode, "from": live, "from_deployment": live_d, "from_image": live_image,
            "to": prev, "deployment": prev_d, "image": prev_image, "stopped_other": stopped,
            "seconds": round(seconds, 3)}


def _require_image(be, image: str | None, deployment: str | None) -> None:
    import docker.errors

    if not image:
        raise NoPreviousRelease(f"the previous release ({deployment}) has no recorded image to restart")
    try:
        be.client.images.get(image)
    except docker.errors.ImageNotFound:
        raise NoPreviousRelease(f"image {image} of the previous release ({deployment}) is gone (pruned or removed); "
                                f"deploy that revision again instead") from None


def _record(store: state.Store, rid: str, outcome: str, seconds: float, live: str | None, target: str | None,
            cause: str | None = None) -> None:
    """Audit the rollback as one event and one deployment record; release the claim."""
    try:
        with store.update() as st:
            state.record_event(st, rid, ROLLBACK_EVENT, outcome, seconds, st.get("live") or live, target, cause)
            ip = st.get("in_progress")
            if ip and ip.get("id") == rid:
                state.record_deployment(st, ip, outcome, cause=cause)
    except HookError as exc:
        print(f"warning: could not record the rollback in the state file: {exc}", file=sys.stderr)


def _rollback(args: argparse.Namespace) -> int:
    from bluegreen_hooks.events import Reporter

    cfg = find_config(args)
    say = Reporter(ROLLBACK_EVENT, sys.stderr if args.json else sys.stdout)
    result = rollback(cfg, say, keep_other=args.keep_other)
    if args.json:
        _dump(result)
    return 0


# ------------------------------------------------------------------------------------------------- doctor

class Checks:
    """Collects doctor lines: level is "ok", "warn" or "fail"."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, name: str, level: str, detail: str) -> None:
        self.items.append({"name": name, "level": level, "detail": detail})

    def run(self, name: str, fn: Callable[[], tuple[str, str]]) -> None:
        try:
            level, detail = fn()
        except HookError as exc:
            level, detail = "fail", str(exc)
        except Exception as exc:  # noqa: BLE001 - a check that crashes is a failed check, with its reason
            level, detail = "fail", f"{type(exc).__name__}: {_first_line(exc)}"
        self.add(name, level, detail)

    @property
    def failed(self) -> bool:
        return any(i["level"] == "fail" for i in self.items)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def _existing_parent(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on TCP ``port`` (any address), from /proc/net/tcp{,6}."""
    out: set[int] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                out.add(int(f[9]))
    return out


def socket_owners(inodes: set[int]) -> list[tuple[int, str]]:
    """(pid, command) of the processes holding any of ``inodes`` (needs root to see other users')."""
    if not inodes:
        return []
    targets = {f"socket:[{i}]" for i in inodes}
    owners = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                    comm = Path(f"/proc/{entry}/comm").read_text().strip()
                    owners.append((int(entry), comm))
                    break
            except OSError:
                continue
    return sorted(owners)


def doctor(args: argparse.Namespace) -> Checks:
    from bluegreen_hooks import containers, nginx

    checks = Checks()
    v = sys.version_info
    checks.add("python", "ok" if v >= (3, 9) else "fail",
               f"Python {v.major}.{v.minor}.{v.micro} at {sys.executable}" + ("" if v >= (3, 9) else "; needs 3.9+"))

    client_box: list[Any] = []

    def docker_check() -> tuple[str, str]:
        client = containers.connect(timeout=15)
        client_box.append(client)
        ver = client.version()
        return "ok", f"Docker {ver.get('Version', '?')} (API {ver.get('ApiVersion', '?')}) reachable"
    checks.run("docker", docker_check)

    def compose_check() -> tuple[str, str]:
        for argv in (["docker", "compose", "version", "--short"], ["docker-compose", "version", "--short"]):
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if p.returncode == 0:
                return "ok", f"{' '.join(argv[:-2])} {p.stdout.strip()}"
        return "warn", "neither `docker compose` nor `docker-compose` works (needed only for apps with a [compose] table)"
    checks.run("compose", compose_check)

    try:
        cfg: Config | None = find_config(args)
        checks.add("config", "ok", f"{cfg.path} (app {cfg.app})")
    except HookError as exc:
        cfg = None
        checks.add("config", "fail", str(exc))

    if cfg is not None and getattr(cfg, "compose", None) is not None:
        for item in checks.items:
            if item["name"] == "compose" and item["level"] == "warn":
                item["level"] = "fail"
                item["detail"] += f"; {cfg.app} has a [compose] table"

    if cfg is not None:
        def nginx_binary() -> tuple[str, str]:
            exe = cfg.nginx.test[0]
            found = shutil.which(exe)
            if not found:
                return "fail", f"{exe} not found (nginx/test is {' '.join(cfg.nginx.test)}); install nginx"
            p = subprocess.run([found, "-v"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL) \
                if os.path.basename(found).startswith("nginx") else None
            version = (p.stderr or p.stdout).strip() if p is not None else ""
            return "ok", f"{found}" + (f" ({version})" if version else "")
        checks.run("nginx binary", nginx_binary)

        def nginx_test() -> tuple[str, str]:
            nginx.test_config(cfg)
            return "ok", f"`{' '.join(cfg.nginx.test)}` passes"
        checks.run("nginx config", nginx_test)

        def nginx_running() -> tuple[str, str]:
            return "ok", f"master pid {nginx.check_running(cfg)} ({cfg.nginx.pid_file})"
        checks.run("nginx running", nginx_running)

        def include_writable() -> tuple[str, str]:
            inc = cfg.nginx.include
            if not inc.parent.is_dir():
                return "fail", f"folder {inc.parent} of nginx/include does not exist"
            if not os.access(inc.parent, os.W_OK | os.X_OK):
                return "fail", f"cannot create files in {inc.parent} (the include is replaced by a rename there)"
            if inc.exists() and not os.access(inc, os.W_OK):
                return "fail", f"{inc} is not writable"
            return "ok", f"{inc} writable" + ("" if inc.exists() else " (does not exist yet: created at the first deployment)")
        checks.run("include writable", include_writable)

        def state_dir() -> tuple[str, str]:
            d = cfg.state_dir
            if not d.exists():
                parent = _existing_parent(d)
                if os.access(parent, os.W_OK | os.X_OK):
                    return "warn", f"{d} does not exist yet (created at the first deployment in {parent})"
                return "fail", f"{d} does not exist and {parent} is not writable"
            if not d.is_dir():
                return "fail", f"{d} is not a folder"
            st = d.stat()
            mode = st.st_mode & 0o7777
            if not os.access(d, os.W_OK | os.X_OK):
                return "fail", f"{d} (mode {mode:o}) is not writable by uid {os.getuid()}"
            if mode & 0o002 and not mode & 0o1000:
                return "fail", f"{d} is world-writable (mode {mode:o}): anyone could rewrite the state; chmod 700 {d}"
            return "ok", f"{d} mode {mode:o}, owner uid {st.st_uid}, writable"
        checks.run("state dir", state_dir)

        def state_file() -> tuple[str, str]:
            path = cfg.state_dir / f"{cfg.app}.json"
            if not path.exists():
                return "ok", f"{path} does not exist yet (nothing deployed)"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                return "fail", f"{path} is unreadable or not JSON ({_first_line(exc)}); the next deployment rebuilds it"
            if not state._valid(data, cfg.app):
                return "fail", f"{path} is not a valid state file for {cfg.app}; the next deployment rebuilds it"
            return "ok", f"{path}: live {data.get('live') or 'none'}"
        checks.run("state file", state_file)

        running: dict[str, Any] = {}
        if client_box:
            try:
                running = containers.backend(cfg, client_box[0]).running()
            except Exception:  # noqa: BLE001 - the port check still reports the listeners
                running = {}
        for colour in COLOURS:
            def port_check(colour=colour) -> tuple[str, str]:
                port = cfg.port(colour)
                inodes = listening_inodes(port)
                owners = socket_owners(inodes)
                who = ", ".join(f"pid {p} ({c})" for p, c in owners) or "a process this user cannot see"
                mine = running.get(colour)
                if not inodes:
                    if mine:
                        return "fail", f"port {port} free, but container {mine['name']} runs as {colour}: it does not listen"
                    return "ok", f"port {port} free"
                if mine:
                    return "ok", f"port {port} held by container {mine['name']} (deployment {mine['deployment']}; {who})"
                return "fail", (f"port {port} held by {who}, not a {cfg.app} container: starting {colour} would fail; "
                                f"stop it or change colours/{colour}")
            checks.run(f"port {colour}", port_check)

        def disk() -> tuple[str, str]:
            places = {"state dir": _existing_parent(cfg.state_dir)}
            if client_box:
                try:
                    root = client_box[0].info().get("DockerRootDir")
                    if root and Path(root).exists():
                        places["Docker root"] = Path(root)
                except Exception:  # noqa: BLE001 - Docker info is optional here
                    pass
            level, parts = "ok", []
            for what, p in places.items():
                free = shutil.disk_usage(p).free
                parts.append(f"{what} {p}: {_gib(free)} free")
                if free < DISK_FAIL_BYTES:
                    level = "fail"
                elif free < DISK_WARN_BYTES and level == "ok":
                    level = "warn"
            return level, "; ".join(parts)
        checks.run("disk space", disk)
    else:
        def nginx_on_path() -> tuple[str, str]:
            found = shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin:/sbin"))
            return ("ok", found) if found else ("fail", "nginx not found on PATH; install nginx")
        checks.run("nginx binary", nginx_on_path)
    for client in client_box:
        client.close()
    return checks


def _doctor(args: argparse.Namespace) -> int:
    checks = doctor(args)
    if args.json:
        _dump({"ok": not checks.failed, "checks": checks.items})
    else:
        for i in checks.items:
            print(f"{i['level'].upper():<4} {i['name']:<17} {i['detail']}")
        print("FAILED: fix the FAIL lines above" if checks.failed else "all checks passed")
    return 1 if checks.failed else 0


# ---------------------------------------------------------------------------------------------- the parsers

def add_commands(sub) -> None:
    p = sub.add_parser("status", help="what is live, since when, from which deployment, and is it healthy",
                       description="Show the live colour, since when, its deployment and image, the previous release, "
                                   "a deployment in progress, each colour's containers with their state and health "
                                   "(Docker health and a direct HTTP check), and what the nginx include points at. "
                                   "Warns when the state file, the include and the containers disagree. Changes "
                                   "nothing. " + SELECT_HELP,
                       epilog=EXIT_STATUS)
    p.add_argument("--json", action="store_true", help="print one JSON object (stable keys; see docs/operator.md)")
    _select_args(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("history", help="the audit log: one record per event run (and per deployment)",
                       description="Print the audit log kept in the state file: one record per lifecycle event run "
                                   "(and rollback), with deployment id, event, outcome, duration, live/target colours, "
                                   "user and host. The log is bounded (deploy/history deployments, 5x as many "
                                   "events). " + SELECT_HELP,
                       epilog=EXIT_HISTORY)
    p.add_argument("-n", type=int, default=20, metavar="N", help="show the last N records (default: 20)")
    p.add_argument("--deployments", action="store_true", help="show one line per deployment instead of per event")
    p.add_argument("--json", action="store_true", help="print {app, state_file, events, deployments} as JSON")
    _select_args(p)
    p.set_defaults(func=_history)

    p = sub.add_parser("rollback", help="make the previous release live again",
                       description="Make the previous release live again, under the same lock as deployments. If "
                                   "the previous colour still runs, nginx is switched to it at once (write the "
                                   "include, nginx -t, reload, verify through nginx). Otherwise the previous image "
                                   "(still tagged bluegreen-<app>:<deployment>) is started as that colour, "
                                   "health-checked, and then nginx is switched. Afterwards it waits until the old nginx "
                                   "workers have finished their requests (at most deploy/drain_timeout) and stops "
                                   "the colour rolled back from, unless --keep-other. "
                                   "Refuses when there is no previous release. Recorded in history as a "
                                   "'Rollback' event. " + SELECT_HELP,
                       epilog=EXIT_ROLLBACK)
    p.add_argument("--keep-other", action="store_true",
                   help="leave the colour rolled back from running (a second rollback then switches back at once)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    _select_args(p)
    p.set_defaults(func=_rollback)

    p = sub.add_parser("doctor", help="check the host: Python, Docker, compose, nginx, include, state dir, ports, disk",
                       description="Print one OK/WARN/FAIL line per check: Python version, Docker reachable (and "
                                   "its version), compose available, the nginx binary and its config test, nginx "
                                   "running, the include path writable, the state directory's permissions, each "
                                   "colour's port free or held by whom, and free disk space (FAIL below 1 GiB, WARN "
                                   "below 5 GiB). Changes nothing. " + SELECT_HELP,
                       epilog=EXIT_DOCTOR)
    p.add_argument("--json", action="store_true", help="print {ok, checks: [{name, level, detail}]} as JSON")
    _select_args(p)
    p.set_defaults(func=_doctor)
