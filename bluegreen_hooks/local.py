"""``bluegreen-hooks local``: run a revision's lifecycle the way the CodeDeploy agent does, without it.

    bluegreen-hooks local [BUNDLE_DIR or ZIP] [--events E ...] [--dry-run] [--root DIR]

What the agent does (aws-codedeploy-agent 1.8.1, ``HookExecutor``/``CommandExecutor``), and so this does:

* events in the agent's order: BeforeBlockTraffic, AfterBlockTraffic, ApplicationStop, DownloadBundle,
  BeforeInstall, Install, AfterInstall, ApplicationStart, ValidateService, BeforeAllowTraffic,
  AfterAllowTraffic; ``--events`` picks some (DownloadBundle and Install are always added);
* ApplicationStop and the BlockTraffic events run from the revision whose Install last succeeded in
  this deployment group (nothing on the group's first deployment), every other event from this one;
* each script: environment = the caller's + LIFECYCLE_EVENT, DEPLOYMENT_ID, APPLICATION_NAME,
  DEPLOYMENT_GROUP_NAME, DEPLOYMENT_GROUP_ID; stdin closed; its own process group; the caller's
  current directory; ``runas`` through ``su``; made executable if it is not;
* one deadline (the script's ``timeout``, default 3600 s) for the script to exit AND close its
  stdout/stderr: on expiry the process group gets SIGTERM and our ends of its pipes are closed, as the
  agent does; a script that exits but leaves a background process holding its output fails with
  "failed to close STDOUT" at the deadline (agent error code 6);
* stop at the first failure; ``Install`` copies the appspec's ``files:`` into a staging root (not /),
  first deleting what the group's previous Install created;
* everything under ``--root`` (default /var/lib/bluegreen-hooks/local) in the agent's layout:
  ``deployment-root/<group-id>/<deployment-id>/{deployment-archive,logs/scripts.log}``,
  ``deployment-root/deployment-instructions/<group-id>_last_successful_install`` …; 5 revisions kept.

The appspec is read by appspec.py (the same parser ``bundle`` checks it with); of the keys CodeDeploy
EC2 revisions use, ``permissions`` and a script's ``sudo`` are refused here with one line.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import re
import selectors
import shutil
import signal
import stat
import string
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bluegreen_hooks.appspec import FILE_EXISTS, AppSpec, Script, parse
from bluegreen_hooks.appspec import near as _near
from bluegreen_hooks.errors import ConfigError, HookError

DEFAULT_ROOT = "/var/lib/bluegreen-hooks/local"
DEFAULT_GROUP_NAME = "LocalFleet"
DEFAULT_GROUP_ID = "default-local-deployment-group"
MAX_REVISIONS = 5
LOG_TAIL = 2048
KILL_GRACE = 60.0   # after SIGTERM on a timeout: wait this long for the group, then SIGKILL

ORDER = ("BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop", "DownloadBundle", "BeforeInstall",
         "Install", "AfterInstall", "ApplicationStart", "ValidateService", "BeforeAllowTraffic",
         "AfterAllowTraffic")
REQUIRED = ("DownloadBundle", "Install")
FROM_PREVIOUS = ("BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop")
APPSPEC_NAMES = ("appspec.yml", "appspec.yaml")

# agent error codes (ScriptError)
SCRIPT_MISSING, SCRIPT_NOT_EXECUTABLE, SCRIPT_TIMED_OUT, SCRIPT_FAILED, UNKNOWN_ERROR, OUTPUTS_LEFT_OPEN = 1, 2, 3, 4, 5, 6


# ================================================================================ appspec (appspec.py)

LOCAL_KEYS = ("version", "os", "files", "hooks", "file_exists_behavior")
LOCAL_HOOK_KEYS = ("location", "timeout", "runas")


def parse_appspec(text: str, file: str = "appspec.yml") -> AppSpec:
    """appspec.parse, then refuse what the local runner does not do (permissions, sudo). Pure."""
    spec = parse(text, file)
    if spec.permissions is not None:
        raise ConfigError(f"{file}: permissions: not supported by the local runner (known: {', '.join(LOCAL_KEYS)})")
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
            return parse_appspec(p.read_text(encoding="utf-8"), name)
    raise ConfigError(f"{archive}: no appspec.yml at the bundle root")


# ================================================================================ running one script

class EventFailed(HookError):
    """A lifecycle event failed (the agent's ScriptError): ``code`` is the agent's error code."""

    def __init__(self, msg: str, code: int = SCRIPT_FAILED, script: str | None = None) -> None:
        super().__init__(msg)
        self.code, self.script = code, script


class ScriptLog:
    """scripts.log in the agent's format, plus the agent's 2048-character tail of whole lines."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path, self.echo = path, echo
        self.tail: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, entry: str, show: str | None = None) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + entry)
        self.tail.append(entry)
        total, keep = 0, 0
        for item in reversed(self.tail):      # the agent keeps whole lines totalling under 2048 characters
            if total + len(item) >= LOG_TAIL:
                break
            total += len(item)
            keep += 1
        self.tail = self.tail[len(self.tail) - keep:]
        if show is not None:
            self.echo(show)


def _command(path: Path, runas: str | None) -> list[str]:
    if runas and runas != pwd.getpwuid(os.getuid()).pw_name:
        return ["su", runas, "-c", str(path)]
    return [str(path)]


def run_script(script: Script, archive: Path, env: dict[str, str], log: ScriptLog,
               say: Callable[[str], None]) -> None:
    """Run one hook script as the agent does; raise EventFailed with the agent's error code."""
    path = archive / script.location
    if not path.exists():
        raise EventFailed(f"Script does not exist at specified location: {path}", SCRIPT_MISSING, script.location)
    if not os.access(path, os.X_OK):
        say(f"warning: {script.location} is not executable; making it executable")
        try:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            raise EventFailed(f"Unable to set script at specified location: {script.location} as executable",
                              SCRIPT_NOT_EXECUTABLE, script.location) from None
    log.add(f"Script - {script.location}\n")
    deadline = time.monotonic() + script.timeout
    try:
        proc = subprocess.Popen(_command(path, script.runas), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise EventFailed(f"Script at specified location: {script.location} failed with error {type(exc).__name__} "
                          f"with message {exc}", SCRIPT_FAILED, script.location) from exc
    sel = selectors.DefaultSelector()
    partial = {"stdout": b"", "stderr": b""}
    for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        sel.register(pipe, selectors.EVENT_READ, name)

    def emit(name: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        log.add(f"[{name}]{text}" + ("" if text.endswith("\n") else "\n"), f"  | {text.rstrip()}")

    warned, exited_at = False, None
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(min(left, 0.5)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                name = key.data
                if not chunk:
                    sel.unregister(key.fileobj)
                    if partial[name]:
                        emit(name, partial[name])
                        partial[name] = b""
                    continue
                lines = (partial[name] + chunk).split(b"\n")
                partial[name] = lines.pop()
                for ln in lines:
                    emit(name, ln + b"\n")
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            if not warned and exited_at is not None and sel.get_map() and time.monotonic() - exited_at > 1.0:
                warned = True
                say(f"warning: {script.location} exited but a background process keeps its stdout/stderr open; "
                    f"the agent waits for it until the timeout ({script.timeout}s)")
        left = deadline - time.monotonic()
        if proc.poll() is None and left > 0:     # outputs closed, process still running: wait for it
            try:
                proc.wait(left)
            except subprocess.TimeoutExpired:
                pass
    except BaseException:              # Ctrl-C: the hook is in its own session, so stop its group here
        _kill_group(proc, signal.SIGTERM)
        raise
    finally:
        open_pipes = [k.data for k in sel.get_map().values()]
        sel.close()
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        _close(proc)                       # the agent closes its ends of the pipes right after the kill
        try:
            proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            proc.wait()
        raise EventFailed(f"Script at specified location: {script.location} failed to complete in "
                          f"{script.timeout} seconds", SCRIPT_TIMED_OUT, script.location)
    if open_pipes:
        _kill_group(proc, signal.SIGTERM)  # the agent leaves the background process running; we do not
        _close(proc)
        raise EventFailed(f"Script at specified location: {script.location} failed to close "
                          f"{open_pipes[0].upper()}", OUTPUTS_LEFT_OPEN, script.location)
    _close(proc)
    if proc.returncode != 0:
        who = f" run as user {script.runas}" if script.runas else ""
        code = proc.returncode if proc.returncode >= 0 else f"{proc.returncode} (signal {-proc.returncode})"
        raise EventFailed(f"Script at specified location: {script.location}{who} failed with exit code {code}",
                          SCRIPT_FAILED, script.location)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _close(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


# ================================================================================ the deployment

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

    def __init__(self, opts: Options, out=None) -> None:
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
        self.log: ScriptLog | None = None

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    # -- paths of the agent's instruction files
    def _instr(self, suffix: str) -> Path:
        return self.instructions / f"{self.o.group_id}{suffix}"

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
        self.instructions.mkdir(parents=True, exist_ok=True)
        _write(self._instr("_most_recent_install"), str(self.dir))

    def install(self) -> None:
        spec = load_appspec(self.archive)
        cleanup = self._instr("-cleanup")
        if cleanup.exists():
            for line in reversed(cleanup.read_text().splitlines()):
                p = Path(line)
                if p.is_dir() and not p.is_symlink():
                    if not any(p.iterdir()):
                        p.rmdir()
                elif p.exists() or p.is_symlink():
                    p.unlink()
            cleanup.unlink()
        behaviour = self.o.file_exists_behavior or spec.file_exists_behavior or "DISALLOW"
        created: list[str] = []
        try:
            for src, dst in spec.files:
                copy_files(self.archive / src.lstrip("/"), self.install_root / dst.lstrip("/"), behaviour, created)
        finally:
            _write(cleanup, "".join(f"{c}\n" for c in created))
        _write(self._instr("-install.json"), json.dumps({"install_root": str(self.install_root), "files": created}))
        _write(self._instr("_last_successful_install"), str(self.dir))
        if created:
            self.say(f"  installed {len(created)} path(s) under {self.install_root}")

    def hook(self, event: str) -> str:
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
        assert self.log is not None
        self.log.tail = []            # the agent's tail (what CodeDeploy shows) covers the failed event only
        self.log.add(f"LifecycleEvent - {event}\n")
        for script in scripts:
            self.say(f"  {script.location} (timeout {script.timeout}s{', as ' + script.runas if script.runas else ''})"
                     + (f", {note}" if note else ""))
            run_script(script, archive, self.env(event), self.log, self.say)
        return note

    def run(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = ScriptLog(self.dir / "logs" / "scripts.log", self.say)
        self.say(f"local deployment {self.o.deployment_id} of {self.o.bundle} "
                 f"(application {self.o.application_name}, group {self.o.group_name} / {self.o.group_id}; "
                 f"folder {self.dir})")
        t_all = time.monotonic()
        for event in self.events():
            self.say(f"==> {event}")
            t0 = time.monotonic()
            try:
                if event == "DownloadBundle":
                    self.download_bundle()
                    note = ""
                elif event == "Install":
                    self.install()
                    note = ""
                else:
                    note = self.hook(event)
            except EventFailed as exc:
                self.failure = exc
            except HookError as exc:
                self.failure = EventFailed(str(exc), UNKNOWN_ERROR)
            except OSError as exc:
                self.failure = EventFailed(f"{event}: {exc}", UNKNOWN_ERROR)
            seconds = time.monotonic() - t0
            if self.failure is not None:
                self.results.append(EventResult(event, "failed", seconds, str(self.failure)))
                self.say(f"<== {event} failed after {seconds:.2f}s: {self.failure}")
                break
            status = "skipped" if note and not note.startswith("from ") else "succeeded"
            self.results.append(EventResult(event, status, seconds, note))
            self.say(f"<== {event} {status} in {seconds:.2f}s" + (f" ({note})" if note else ""))
        self._cleanup_old_archives()
        self.say("")
        for r in self.results:
            self.say(f"{r.event:<20} {r.status:<10} {r.seconds:8.2f}s  {r.note if r.status == 'skipped' else ''}".rstrip())
        total = time.monotonic() - t_all
        if self.failure is None:
            self.say(f"local deployment {self.o.deployment_id} succeeded in {total:.1f}s")
            return 0
        diag = {"error_code": self.failure.code, "script_name": self.failure.script or "",
                "message": str(self.failure), "log": "".join(self.log.tail)}
        _write(self.dir / "logs" / "diagnostics.json", json.dumps(diag))
        if self.log.tail:
            self.say(f"--- the last {len(''.join(self.log.tail))} characters of the output (what CodeDeploy shows) ---")
            for entry in self.log.tail:
                self.say(entry.rstrip("\n"))
        self.say(f"ERROR local deployment {self.o.deployment_id} failed at {self.results[-1].event} after "
                 f"{total:.1f}s: {self.failure} (log: {self.log.path})")
        return 1

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


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def unpack(bundle: Path, dest: Path) -> None:
    """Copy a bundle folder, or extract a zip (keeping the modes stored in it), into ``dest``."""
    if bundle.is_dir():
        shutil.copytree(bundle, dest, symlinks=True)
        return
    if not zipfile.is_zipfile(bundle):
        raise ConfigError(f"{bundle}: not a folder or a zip file")
    dest.mkdir(parents=True)
    with zipfile.ZipFile(bundle) as zf:
        for info in zf.infolist():
            target = (dest / info.filename).resolve()
            if not str(target).startswith(str(dest.resolve()) + os.sep) and target != dest.resolve():
                raise ConfigError(f"{bundle}: entry {info.filename!r} would be extracted outside the bundle")
            zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o7777
            if mode and not info.is_dir():
                os.chmod(target, mode)


def copy_files(src: Path, dest: Path, behaviour: str, created: list[str]) -> None:
    """The agent's ``files:`` copy: a file into ``dest/``, a folder's contents into ``dest``."""
    if not src.exists():
        raise EventFailed(f"files: source {src} does not exist in the bundle", UNKNOWN_ERROR)
    pairs = [(src, dest / src.name)] if src.is_file() else \
        [(p, dest / p.relative_to(src)) for p in sorted(src.rglob("*"))]
    for d in [dest] + [t for p, t in pairs if p.is_dir()]:
        if not d.exists():
            missing = []
            up = d
            while not up.exists():
                missing.append(up)
                up = up.parent
            d.mkdir(parents=True)
            created += [str(m) for m in reversed(missing)]
    for p, t in pairs:
        if p.is_dir():
            continue
        if t.exists():
            if behaviour == "DISALLOW":
                raise EventFailed(f"The deployment failed because a specified file already exists at this "
                                  f"location: {t}", UNKNOWN_ERROR)
            if behaviour == "RETAIN":
                continue
        t.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, t, follow_symlinks=False)
        created.append(str(t))


# ================================================================================ dry run

def dry_run(opts: Options, out=None) -> int:
    """Print what a local deployment would do; write nothing under the root, run no hook."""
    out = out or sys.stdout

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="bgh-dry-") as tmp:
        archive = opts.bundle if opts.bundle.is_dir() else Path(tmp) / "bundle"
        if not opts.bundle.is_dir():
            unpack(opts.bundle, archive)
        spec = load_appspec(archive)
        r = Runner(opts, out)
        prev = r.last_successful()
        say(f"DRY RUN (nothing is changed): local deployment {opts.deployment_id} of {opts.bundle} "
            f"(application {opts.application_name}, group {opts.group_name} / {opts.group_id})")
        for event in r.events():
            if event == "DownloadBundle":
                say(f"{event}: unpack into {r.archive}")
            elif event == "Install":
                if spec.files:
                    for src, dst in spec.files:
                        say(f"{event}: copy {src} -> {r.install_root / dst.lstrip('/')}")
                else:
                    say(f"{event}: no files to copy")
            elif event in FROM_PREVIOUS:
                if prev is None:
                    say(f"{event}: skipped (no previous revision in this deployment group)")
                else:
                    pspec = load_appspec(prev / "deployment-archive")
                    scripts = pspec.hooks.get(event) or ()
                    say(f"{event}: " + (", ".join(f"{s.location} ({s.timeout}s)" for s in scripts) or "no hooks")
                        + f" from the previous revision {prev.name}")
            else:
                scripts = spec.hooks.get(event) or ()
                say(f"{event}: " + (", ".join(f"{s.location} ({s.timeout}s)" for s in scripts) or "no hooks"))
        from bluegreen_hooks import config as config_mod
        cfg_path = config_mod.find(archive)
        if cfg_path.exists():
            from bluegreen_hooks import plan
            cfg = config_mod.load(cfg_path)
            ours = [e for e in plan.EVENT_ORDER if e in r.events() and spec.hooks.get(e)]
            say("")
            for ln in plan.describe(cfg, opts.deployment_id, ours):
                say(ln)
    return 0


# ================================================================================ CLI

def _events(value: str) -> list[str]:
    out = []
    for e in re.split(r"[,\s]+", value.strip()):
        if not e:
            continue
        if e not in ORDER:
            raise argparse.ArgumentTypeError(f"unknown lifecycle event {e!r}{_near(e, ORDER)}")
        out.append(e)
    return out


def _local(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle).resolve()
    if not bundle.exists():
        raise ConfigError(f"{args.bundle}: no such bundle folder or zip file")
    events = tuple(e for group in (args.events or []) for e in group)
    root = Path(args.root).resolve()
    app = args.application_name or (bundle.stem if bundle.is_file() else bundle.name)
    opts = Options(bundle, root, app, args.deployment_group_name, args.deployment_group_id,
                   args.deployment_id or new_deployment_id(), events, args.file_exists_behavior,
                   Path(args.install_root).resolve() if args.install_root else None)
    if args.dry_run:
        return dry_run(opts)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root)
        probe.close()
    except OSError as exc:
        raise ConfigError(f"--root {root}: not writable ({exc.strerror}); pass --root DIR") from exc
    return Runner(opts).run()


def add_commands(sub) -> None:
    p = sub.add_parser("local", help="run a revision's lifecycle hooks here, the way the CodeDeploy agent does",
                       description="Run the appspec's hooks in the CodeDeploy agent's order, with its environment, "
                                   "timeouts and stop-at-first-failure rule (ApplicationStop from the previous "
                                   "revision run here). --dry-run prints the plan and changes nothing.")
    p.add_argument("bundle", nargs="?", default=".", help="bundle folder or .zip (default: the current directory)")
    p.add_argument("--events", "-e", action="append", type=_events, metavar="E1,E2",
                   help=f"run only these events (DownloadBundle and Install are always added); order: {', '.join(ORDER)}")
    p.add_argument("--dry-run", action="store_true", help="print what would happen; run nothing, change nothing")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"runner folder, kept between runs (default: {DEFAULT_ROOT})")
    p.add_argument("--application-name", "-a", help="APPLICATION_NAME (default: the bundle's name)")
    p.add_argument("--deployment-group-name", "-d", default=DEFAULT_GROUP_NAME, help="DEPLOYMENT_GROUP_NAME")
    p.add_argument("--deployment-group-id", "-g", default=DEFAULT_GROUP_ID, type=_deployment_id,
                   help="DEPLOYMENT_GROUP_ID; the previous revision is looked up per group id")
    p.add_argument("--deployment-id", type=_deployment_id, help="DEPLOYMENT_ID (default: a new d-LOCALxxxxx)")
    p.add_argument("--file-exists-behavior", "-b", choices=FILE_EXISTS,
                   help="when a files: destination exists (default: the appspec's, else DISALLOW)")
    p.add_argument("--install-root", help="where files: are installed (default: ROOT/install-root/GROUP_ID)")
    p.set_defaults(func=_local)


def _deployment_id(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", value):
        raise argparse.ArgumentTypeError(f"should be letters, digits, '.', '_' or '-', not {value!r}")
    return value
