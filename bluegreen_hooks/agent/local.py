"""``bluegreen-hooks local``: run a revision's lifecycle the way the CodeDeploy agent does, without it.

    bluegreen-hooks local [BUNDLE_DIR or ZIP] [--events E ...] [--dry-run] [--root DIR]

What the agent does (aws-codedeploy-agent 1.8.1, ``HookExecutor``/``CommandExecutor``), and so this does:

* events in the agent's order: BeforeBlockTraffic, AfterBlockTraffic, ApplicationStop, DownloadBundle,
  BeforeInstall, Install, AfterInstall, ApplicationStart, ValidateService, BeforeAllowTraffic,
  AfterAllowTraffic; ``--events`` picks some (DownloadBundle and Install are always added);
* ApplicationStop and the BlockTraffic events run from the revision whose Install last succeeded in
  this deployment group (nothing on the group's first deployment), every other event from this one;
* each script (scripts.py): environment = the caller's + LIFECYCLE_EVENT, DEPLOYMENT_ID, APPLICATION_NAME,
  DEPLOYMENT_GROUP_NAME, DEPLOYMENT_GROUP_ID; stdin closed; its own process group; the caller's
  current directory; ``runas`` through ``su``; made executable if it is not; its ``timeout`` (default
  3600 s) for the script to exit and close its outputs;
* stop at the first failure; ``Install`` copies the appspec's ``files:`` into a staging root (not /),
  first deleting what the group's previous Install created (unpack.py), then applies ``permissions:``
  to what it copied, as the agent does (permissions.py; paths mapped into the staging root);
* everything under ``--root`` (default /var/lib/bluegreen-hooks/local) in the agent's layout:
  ``deployment-root/<group-id>/<deployment-id>/{deployment-archive,logs/scripts.log}``,
  ``deployment-root/deployment-instructions/<group-id>_last_successful_install`` …; 5 revisions kept.

The appspec is read by appspec.py (the same parser ``bundle`` checks it with); of the keys CodeDeploy
EC2 revisions use, a script's ``sudo`` and a permission's ``acls``/``context`` are refused here with one line.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import string
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bluegreen_hooks.agent import permissions
from bluegreen_hooks.agent.scripts import UNKNOWN_ERROR, EventFailed, ScriptLog, Stop, run_script
from bluegreen_hooks.agent.unpack import copy_files, remove_installed, unpack
from bluegreen_hooks.config.appspec import AppSpec, decode, parse
from bluegreen_hooks.errors import ConfigError, HookError
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.model import AGENT_EVENTS

DEFAULT_ROOT = "/var/lib/bluegreen-hooks/local"
DEFAULT_GROUP_NAME = "LocalFleet"
DEFAULT_GROUP_ID = "default-local-deployment-group"
MAX_REVISIONS = 5

# the agent's own events (no hooks), each after the hook event it follows
_BUILT_IN_AFTER = {"ApplicationStop": "DownloadBundle", "BeforeInstall": "Install"}
# every event in the agent's order: model.AGENT_EVENTS with DownloadBundle and Install in their places
ORDER: tuple[str, ...] = tuple(e for hook in AGENT_EVENTS for e in (hook, _BUILT_IN_AFTER.get(hook)) if e)
REQUIRED = ("DownloadBundle", "Install")
FROM_PREVIOUS = ("BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop")
APPSPEC_NAMES = ("appspec.yml", "appspec.yaml")

LOCAL_KEYS = ("version", "os", "files", "permissions", "hooks", "file_exists_behavior")
LOCAL_HOOK_KEYS = ("location", "timeout", "runas")


def parse_appspec(text: str, file: str = "appspec.yml") -> AppSpec:
    """appspec.parse, then refuse what the local runner does not do (sudo, acls, context). Pure."""
    spec = parse(text, file)
    permissions.parse(spec.permissions, file)
    for event, scripts in spec.hooks.items():
        for n, s in enumerate(scripts):
            if s.sudo is not None:
                raise ConfigError(f"{file}: hooks/{event}/{n}/sudo: not supported by the local runner "
                                  f"(known: {', '.join(LOCAL_HOOK_KEYS)})")
    return spec


def load_appspec(archive: Path) -> AppSpec:
    for name in APPSPEC_NAMES:
        p = archive / name
        if p.is_file():
            return parse_appspec(decode(p.read_bytes(), name), name)
    raise ConfigError(f"{archive}: no appspec.yml at the bundle root")


def new_deployment_id() -> str:
    """``d-LOCAL`` + 5 random characters: shaped like a CodeDeploy id (d- and 9 upper-case letters/digits)."""
    return "d-LOCAL" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(5))


@dataclass
class Options:
    bundle: Path
    root: Path
    application_name: str
    group_name: str = DEFAULT_GROUP_NAME
    group_id: str = DEFAULT_GROUP_ID
    deployment_id: str = field(default_factory=new_deployment_id)
    events: tuple[str, ...] = ()
    file_exists_behavior: str | None = None
    install_root: Path | None = None


@dataclass
class EventResult:
    event: str
    status: str          # succeeded | failed | skipped
    seconds: float
    note: str = ""


class Runner:
    """One local deployment: the agent's folders under ``root``, the events in order."""

    def __init__(self, opts: Options, out: TextIO | None = None) -> None:
        self.o = opts
        self.out = out or sys.stdout
        self.deployment_root = opts.root / "deployment-root"
        self.instructions = self.deployment_root / "deployment-instructions"
        self.group_dir = self.deployment_root / opts.group_id
        self.dir = self.group_dir / opts.deployment_id
        self.archive = self.dir / "deployment-archive"
        self.install_root = opts.install_root or (opts.root / "install-root" / opts.group_id)
        self.results: list[EventResult] = []
        self.failure: EventFailed | None = None
        self.bad_input = False        # the failure is the bundle's fault (appspec, zip, links): exit 2
        self.stop = Stop()            # SIGTERM/SIGINT: forwarded to the running hook, then no more events

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    # -- paths of the agent's instruction files
    def _instr(self, suffix: str) -> Path:
        return self.instructions / f"{self.o.group_id}{suffix}"

    def _write_instr(self, suffix: str, text: str) -> None:
        self.instructions.mkdir(parents=True, exist_ok=True)
        write_atomic(self._instr(suffix), text)

    def last_successful(self) -> Path | None:
        try:
            d = Path(self._instr("_last_successful_install").read_text().strip())
        except OSError:
            return None
        return d if (d / "deployment-archive").is_dir() else None

    def events(self) -> list[str]:
        wanted = list(self.o.events) or list(ORDER)
        return [e for e in ORDER if e in wanted or e in REQUIRED]

    def env(self, event: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(LIFECYCLE_EVENT=event, DEPLOYMENT_ID=self.o.deployment_id, APPLICATION_NAME=self.o.application_name,
                   DEPLOYMENT_GROUP_NAME=self.o.group_name, DEPLOYMENT_GROUP_ID=self.o.group_id)
        return env

    # -- built-in events
    def download_bundle(self) -> None:
        if self.archive.exists():
            shutil.rmtree(self.archive)
        self.archive.parent.mkdir(parents=True, exist_ok=True)
        unpack(self.o.bundle, self.archive)
        self._write_instr("_most_recent_install", str(self.dir))

    def install(self) -> None:
        spec = load_appspec(self.archive)
        remove_installed(self._instr("-cleanup"))
        behaviour = self.o.file_exists_behavior or spec.file_exists_behavior or "DISALLOW"
        created: list[str] = []
        try:
            for src, dst in spec.files:
                copy_files(self.archive / src.lstrip("/"), self.install_root / dst.lstrip("/"), behaviour, created,
                           root=self.install_root)
            changed = self._permissions(spec, created)
        finally:
            self._write_instr("-cleanup", "".join(f"{c}\n" for c in created))
        self._write_instr("-install.json", json.dumps({"install_root": str(self.install_root), "files": created}))
        self._write_instr("_last_successful_install", str(self.dir))
        if created:
            self.say(f"  installed {len(created)} path(s) under {self.install_root}")
        if changed:
            self.say(f"  permissions: set on {changed} path(s)")

    def _permissions(self, spec: AppSpec, created: list[str]) -> int:
        """The appspec's permissions on what this Install created (appspec paths: / is the staging root)."""
        perms = permissions.parse(spec.permissions)
        if not perms:
            return 0
        root = self.install_root
        real_root = os.path.realpath(root)

        def appspec_path(made: str) -> str | None:
            rel = os.path.relpath(made, root)     # the folders made above a fresh install root are not ours
            return None if rel == "." or rel.startswith(".." + os.sep) or rel == ".." else "/" + rel

        def real(path: str) -> str:
            return os.path.join(real_root, path.lstrip("/"))

        ours = [(a, c) for a, c in ((appspec_path(c), c) for c in created) if a is not None]
        files = [a for a, c in ours if not Path(c).is_dir() or Path(c).is_symlink()]
        dirs = [a for a, c in ours if Path(c).is_dir() and not Path(c).is_symlink()]
        pairs = permissions.targets(perms, files, dirs,
                                    lambda p: os.path.isdir(real(p)) and not os.path.islink(real(p)))
        return permissions.apply(pairs, real)

    def hook(self, event: str, log: ScriptLog) -> str:
        """Run the event's scripts; return a note ("" when scripts ran)."""
        if event in FROM_PREVIOUS and not self.archive.is_dir():
            prev = self.last_successful()
            if prev is None:
                return "no previous revision in this deployment group"
            archive, note = prev / "deployment-archive", f"from the previous revision {prev.name}"
        else:
            archive, note = self.archive, ""
        spec = load_appspec(archive)
        scripts = spec.hooks.get(event) or ()
        if not scripts:
            return "no hooks in the appspec"
        log.tail = []            # the agent's tail (what CodeDeploy shows) covers the failed event only
        log.add(f"LifecycleEvent - {event}\n")
        for script in scripts:
            self.say(f"  {script.location} (timeout {script.timeout}s{', as ' + script.runas if script.runas else ''})"
                     + (f", {note}" if note else ""))
            run_script(script, archive, self.env(event), log, self.say, self.stop)
        return note

    # -- the deployment
    def run(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = ScriptLog(self.dir / "logs" / "scripts.log", self.say)
        self.say(f"local deployment {self.o.deployment_id} of {self.o.bundle} "
                 f"(application {self.o.application_name}, group {self.o.group_name} / {self.o.group_id}; "
                 f"folder {self.dir})")
        t_all = time.monotonic()
        with self.stop.installed():
            for event in self.events():
                if not self._run_event(event, log):
                    break
                if self.stop.signum is not None:
                    self.failure = EventFailed(f"stopped by {self.stop.name} after {event}; the later events "
                                               f"were not run", UNKNOWN_ERROR)
                    break
        self._cleanup_old_archives()
        self.say("")
        for r in self.results:
            note = r.note if r.status == "skipped" else ""
            self.say(f"{r.event:<20} {r.status:<10} {r.seconds:8.2f}s  {note}".rstrip())
        total = time.monotonic() - t_all
        if self.failure is None:
            self.say(f"local deployment {self.o.deployment_id} succeeded in {total:.1f}s")
            return 0
        self._report_failure(self.failure, log, total)
        if self.stop.signum is not None:
            return 128 + self.stop.signum
        return 2 if self.bad_input else 1

    def _run_event(self, event: str, log: ScriptLog) -> bool:
        """Run one event and record its result; False when it failed (``self.failure`` says why)."""
        self.say(f"==> {event}")
        t0 = time.monotonic()
        note = ""
        try:
            if event == "DownloadBundle":
                self.download_bundle()
            elif event == "Install":
                self.install()
            else:
                note = self.hook(event, log)
        except EventFailed as exc:
            self.failure = exc
        except ConfigError as exc:
            self.failure, self.bad_input = EventFailed(str(exc), UNKNOWN_ERROR), True
        except HookError as exc:
            self.failure = EventFailed(str(exc), UNKNOWN_ERROR)
        except OSError as exc:
            self.failure = EventFailed(f"{event}: {exc}", UNKNOWN_ERROR)
        seconds = time.monotonic() - t0
        if self.failure is not None:
            self.results.append(EventResult(event, "failed", seconds, str(self.failure)))
            self.say(f"<== {event} failed after {seconds:.2f}s: {self.failure}")
            return False
        status = "skipped" if note and not note.startswith("from ") else "succeeded"
        self.results.append(EventResult(event, status, seconds, note))
        self.say(f"<== {event} {status} in {seconds:.2f}s" + (f" ({note})" if note else ""))
        return True

    def _report_failure(self, failure: EventFailed, log: ScriptLog, total: float) -> None:
        """diagnostics.json as the agent writes it, the output's tail and the last line."""
        diag = {"error_code": failure.code, "script_name": failure.script or "",
                "message": str(failure), "log": "".join(log.tail)}
        write_atomic(self.dir / "logs" / "diagnostics.json", json.dumps(diag))
        if log.tail:
            self.say(f"--- the last {len(''.join(log.tail))} characters of the output (what CodeDeploy shows) ---")
            for entry in log.tail:
                self.say(entry.rstrip("\n"))
        where = self.results[-1].event if self.results else "the start"
        self.say(f"ERROR local deployment {self.o.deployment_id} failed at {where} after "
                 f"{total:.1f}s: {failure} (log: {log.path})")

    def _cleanup_old_archives(self) -> None:
        """Keep MAX_REVISIONS deployment folders per group (never the last successful install)."""
        dirs = [d for d in self.group_dir.iterdir() if d.is_dir() and d != self.dir]
        extra = len(dirs) - MAX_REVISIONS + 1
        if extra <= 0:
            return
        last = self.last_successful()
        dirs = sorted((d for d in dirs if d != last), key=lambda d: d.stat().st_mtime)
        for d in dirs[:extra]:
            shutil.rmtree(d, ignore_errors=True)
