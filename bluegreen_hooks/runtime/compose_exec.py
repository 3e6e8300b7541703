"""Running compose commands: which one (``detect``: v2 or v1), one at a time or several at once, always as
argv lists (never a shell), with our variables and without the bundle on PYTHONPATH; errors name the
command and its last lines."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from bluegreen_hooks.errors import ContainerStartError, DockerUnavailable

_INTERPOLATING = re.compile(r" interpolating \{.*\} in ")
_NOISE = ("DEPRECATED: The legacy builder", "Install the buildx component", "https://docs.docker.com/go/buildx")


class ComposeUnavailable(DockerUnavailable):
    """Neither ``docker compose`` nor ``docker-compose`` can be run on this host."""


# ------------------------------------------------------------------------------------ the compose command

V2: tuple[str, ...] = ("docker", "compose")
V1: tuple[str, ...] = ("docker-compose",)
VERSION_TIMEOUT = 60.0
_detected: dict[str, tuple[str, ...]] = {}
_detecting: list[threading.Thread] = []


def detect_soon() -> None:
    """Start ``detect`` in a thread now (``docker compose version`` takes ~20 ms): the hook looks at nginx and
    the state meanwhile. ``detect`` waits for it; a failure is raised there, where the command is needed."""
    if "cmd" in _detected or _detecting:
        return

    def run() -> None:
        with contextlib.suppress(Exception):
            _detected["cmd"] = detect(use_cache=False)

    _detecting.append(threading.Thread(target=run, daemon=True))
    _detecting[0].start()


def detect(run: Callable[..., Any] = subprocess.run, which: Callable[[str], str | None] = shutil.which,
           use_cache: bool = True) -> tuple[str, ...]:
    """``("docker", "compose")`` when ``docker compose version`` works, else ``("docker-compose",)``."""
    if use_cache:
        for started in _detecting:
            started.join()
        if "cmd" in _detected:
            return _detected["cmd"]
    cmd: tuple[str, ...] | None = None
    if which("docker"):
        try:
            proc = run([*V2, "version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                       stdin=subprocess.DEVNULL)
            if proc.returncode == 0:
                cmd = V2
        except (OSError, subprocess.TimeoutExpired):
            pass
    if cmd is None and which("docker-compose"):
        cmd = V1
    if cmd is None:
        raise ComposeUnavailable("compose: neither `docker compose` (v2 plugin) nor `docker-compose` (v1) works on "
                                 "this host; install one (e.g. apt-get install docker-compose) or set compose/command")
    if use_cache:
        _detected["cmd"] = cmd
    return cmd


def child_env(variables: Mapping[str, str], command: str | None = None) -> dict[str, str]:
    """The environment of a compose command: ours plus ``variables``, without the bundle on PYTHONPATH.

    hooks/launch puts the bundle first on PYTHONPATH; docker-compose v1 is a Python program, and a
    package in the bundle (say ``docker/__init__.py`` or ``yaml/``) must not shadow its own modules.
    With ``command`` (argv[0]) a docker-compose v1 script also gets SETUPTOOLS_USE_DISTUTILS=stdlib when
    its Python has distutils (``stdlib_distutils``).
    """
    env = {**os.environ, **variables}
    if command and "SETUPTOOLS_USE_DISTUTILS" not in env and stdlib_distutils(command):
        env["SETUPTOOLS_USE_DISTUTILS"] = "stdlib"
    if env.get("PYTHONPATH"):
        keep = [p for p in env["PYTHONPATH"].split(os.pathsep)
                if p and not os.path.isdir(os.path.join(p, "bluegreen_hooks"))]
        if keep:
            env["PYTHONPATH"] = os.pathsep.join(keep)
        else:
            del env["PYTHONPATH"]
    return env


_distutils: dict[str, bool] = {}


def stdlib_distutils(command: str) -> bool:
    """Whether ``command`` is a Python script whose interpreter has distutils in its standard library.

    docker-compose 1.29 imports ``distutils.spawn``. With setuptools installed (Debian's python3-setuptools,
    pip's venvs) that import goes through setuptools' own copy and loads pkg_resources: 0.22 s of the
    0.49 s docker-compose spends importing itself, on every run. SETUPTOOLS_USE_DISTUTILS=stdlib keeps
    the standard library's copy, which Python 3.9-3.11 still ship; 3.12 has none, so it is only set when
    ``<prefix>/lib*/pythonX.Y/distutils`` exists for the script's interpreter (its ``#!`` line).
    """
    if command not in _distutils:
        _distutils[command] = _has_stdlib_distutils(command)
    return _distutils[command]


def _has_stdlib_distutils(command: str) -> bool:
    path = shutil.which(command)
    if not path:
        return False
    try:
        with open(path, "rb") as f:
            first = f.readline(256)
    except OSError:
        return False
    if not first.startswith(b"#!"):
        return False                          # a binary (compose v2, a PyInstaller build of v1)
    words = first[2:].decode("utf-8", "replace").split()
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        words = [shutil.which(words[1]) or words[1]]
    if not words:
        return False
    python = Path(os.path.realpath(words[0]))
    m = re.fullmatch(r"python(3\.\d+)", python.name) or re.fullmatch(r"python(3\.\d+)", Path(words[0]).name)
    if not m:
        return False
    prefix = python.parent.parent
    return any((prefix / lib / f"python{m.group(1)}" / "distutils" / "__init__.py").is_file()
               for lib in ("lib", "lib64"))


def _tail(output: str, lines: int = 2, width: int = 220) -> str:
    """The last telling lines of compose's output, joined; v1's dump of a service's settings is cut out."""
    useful = [_INTERPOLATING.sub(" in ", ln.strip()) for ln in output.splitlines()
              if ln.strip() and not any(n in ln for n in _NOISE)]
    return " / ".join(useful[-lines:])[:width]


# compose v2 (BuildKit) names the failing build step in its log: " > [web 2/2] RUN make:"
_BUILD_STEP = re.compile(r"^ > (\[[^\]]+\] .*):$")


def failure(proc: subprocess.CompletedProcess) -> str:
    """What a failed compose run says, in one line: the last telling lines of its stderr, where v1 and v2 write
    their error (stdout holds the build and pull log), else of stdout; v2's failing build step first (it names
    the service); ``exit N`` when there is no output."""
    said = _tail(proc.stderr or "") or _tail(proc.stdout or "")
    steps = [m.group(1) for ln in (proc.stdout or "").splitlines() + (proc.stderr or "").splitlines()
             if (m := _BUILD_STEP.match(ln))]
    if steps:
        said = f"{steps[-1][:120]} / {said}"
    return said or f"exit {proc.returncode}"


def run_compose(argv: Sequence[str], env: Mapping[str, str], cwd: Path, what: str, timeout: float,
                error: type = ContainerStartError, check: bool = True) -> subprocess.CompletedProcess:
    """Run one compose command (argv list, no shell); raise ``error`` with its last telling lines.

    With ``check=False`` a non-zero exit is returned, not raised.
    """
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=str(cwd),
                              env=child_env(env, argv[0]), stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ComposeUnavailable(f"compose: command not found: {argv[0]} (install docker-compose, or set "
                                 f"compose/command)") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what}: `{' '.join(argv)}` did not finish within {timeout:.0f}s") from exc
    return check_exit(proc, what, error) if check else proc


def check_exit(proc: subprocess.CompletedProcess, what: str, error: type = ContainerStartError
               ) -> subprocess.CompletedProcess:
    """``proc`` when it exited 0, else ``error`` naming ``what`` and compose's last telling lines."""
    if proc.returncode != 0:
        raise error(f"{what} failed: {failure(proc)}")
    return proc


class Parallel:
    """(argv, variables, cwd) jobs started at once, here; ``results`` waits for them (``timeout`` counts from
    now). BeforeInstall starts the compose renders before it connects to Docker, so that both overlap."""

    def __init__(self, jobs: Sequence[tuple[Sequence[str], Mapping[str, str], Path]], timeout: float) -> None:
        self.jobs, self.timeout = list(jobs), timeout
        self.deadline = time.monotonic() + timeout
        self.procs: list[subprocess.Popen] = []
        try:
            for argv, env, cwd in self.jobs:
                self.procs.append(subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   text=True, cwd=str(cwd), env=child_env(env, argv[0]),
                                                   stdin=subprocess.DEVNULL))
        except FileNotFoundError as exc:
            self.kill()
            raise ComposeUnavailable(f"compose: command not found: {self.jobs[0][0][0]} (install docker-compose, "
                                     f"or set compose/command)") from exc

    def results(self) -> list[subprocess.CompletedProcess]:
        """Their results in order (a non-zero exit is returned, not raised); a job past the deadline raises."""
        out = []
        try:
            for (argv, _, _), p in zip(self.jobs, self.procs):
                try:
                    stdout, stderr = p.communicate(timeout=max(0.1, self.deadline - time.monotonic()))
                except subprocess.TimeoutExpired as exc:
                    raise ContainerStartError(f"`{' '.join(argv)}` did not finish within {self.timeout:.0f}s") from exc
                out.append(subprocess.CompletedProcess(list(argv), p.returncode, stdout, stderr))
        finally:
            self.kill()
        return out

    def kill(self) -> bool:
        """End the jobs still running (the hook failed before it needed them); True when one still ran."""
        ran = False
        for p in self.procs:
            if p.poll() is None:
                ran = True
                p.kill()
                p.wait()
        return ran


# ----------------------------------------------------------------------- a start that outlives BeforeInstall

# A minimal Python (-I -S: no site, no PYTHON* variables) runs the compose argv (its own arguments, no shell), its
# stdout and stderr to two files (``failure`` reads them apart), then writes the exit status to the result file in
# one rename: a result file is always whole.
_DETACHED_PY = """import os, subprocess, sys
out_path, rc = sys.argv[1], sys.argv[2]
with open(out_path, "wb") as out, open(out_path + ".err", "wb") as err:
    try:
        code = subprocess.call(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    except OSError as exc:
        err.write(("%s\\n" % exc).encode())
        code = 127
with open(rc + ".tmp", "w") as f:
    f.write("%d\\n" % code)
os.replace(rc + ".tmp", rc)
"""


class Detached:
    """One compose command BeforeInstall starts in its own session, so that it runs on while the agent installs
    the revision and ApplicationStart's interpreter starts; ApplicationStart collects it (``results``) as it
    collects a ``Parallel`` job. Found again by its record (``<record>``: deployment, colour, pid and the
    kernel's start time of the pid, so a reused pid is never taken for it); its output goes to ``<record>.log`` and
    ``<record>.log.err``, its exit status to ``<record>.rc``."""

    def __init__(self, record: Path, data: dict[str, Any]) -> None:
        self.record, self.data = record, data
        self.deployment_id, self.colour = str(data.get("deployment", "")), str(data.get("colour", ""))
        self.argv = [str(a) for a in data.get("argv", [])]
        self.timeout = float(data.get("timeout", 0) or 0)
        self.started = float(data.get("started", 0) or 0)   # wall clock (time.time) when it was started

    @staticmethod
    def paths(record: Path) -> tuple[Path, Path]:
        return record.with_name(record.name + ".log"), record.with_name(record.name + ".rc")

    @classmethod
    def spawn(cls, record: Path, argv: Sequence[str], env: Mapping[str, str], cwd: Path, deployment_id: str,
              colour: str, timeout: float) -> Detached:
        import json

        from bluegreen_hooks.host import procfs
        from bluegreen_hooks.host.files import write_atomic

        if not shutil.which(argv[0]):
            raise ComposeUnavailable(f"compose: command not found: {argv[0]} (install docker-compose, or set "
                                     f"compose/command)")
        log, rc = cls.paths(record)
        for stale in (log, log.with_name(log.name + ".err"), rc, record):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        runner = [sys.executable, "-I", "-S", "-c", _DETACHED_PY, str(log), str(rc)]
        proc = subprocess.Popen([*runner, *argv], cwd=str(cwd), env=child_env(env, argv[0]), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        data = {"deployment": deployment_id, "colour": colour, "pid": proc.pid,
                "pid_start": procfs.process_start_time(proc.pid), "started": time.time(), "timeout": timeout,
                "argv": list(argv)}
        try:
            write_atomic(record, json.dumps(data) + "\n", mode=0o600)
        except BaseException:
            proc.kill()
            raise
        return cls(record, data)

    @classmethod
    def find(cls, record: Path) -> Detached | None:
        """The start recorded at ``record``, or None (none, or an unreadable record)."""
        import json

        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            return cls(record, data) if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError):   # none, half-written by hand, or not ours: not a start
            return None

    def running(self) -> bool:
        from bluegreen_hooks.host import procfs

        pid, start = self.data.get("pid"), self.data.get("pid_start")
        return isinstance(pid, int) and isinstance(start, int) and procfs.process_alive(pid, start)

    def exit_status(self) -> int | None:
        try:
            return int(self.paths(self.record)[1].read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def results(self) -> list[subprocess.CompletedProcess | None]:
        """``[its result]`` once it has ended (its output as stdout), ``[None]`` when it was killed before it
        could say how it ended (the caller runs the command again); past its deadline it is killed and
        ContainerStartError is raised."""
        from bluegreen_hooks.host.wait import poll

        def ended() -> tuple[int | None] | None:
            status = self.exit_status()
            if status is not None:
                return (status,)
            return None if self.running() else (None,)   # gone without a result: killed
        left = self.started + self.timeout - time.time()
        done = poll(ended, timeout=max(0.1, left), interval=0.02, max_interval=0.1)
        if done is None:
            self.kill()
            raise ContainerStartError(f"`{' '.join(self.argv)}` did not finish within {self.timeout:.0f}s")
        self.forget()
        if done[0] is None:
            return [None]
        log = self.paths(self.record)[0]
        out, err = self._read(log), self._read(log.with_name(log.name + ".err"))
        return [subprocess.CompletedProcess(self.argv, done[0], out, err)]

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def kill(self) -> bool:
        """End it (its whole session: the runner and compose) if it still runs, and forget it; True when it ran."""
        import signal

        from bluegreen_hooks.host import procfs
        from bluegreen_hooks.host.wait import poll

        if self.running():
            pgid = int(self.data["pid"])
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
            # gone before the caller removes what it made (a compose still running could create one more)
            poll(lambda: not procfs.group_members(pgid), timeout=10.0, interval=0.02, max_interval=0.1)
            self.forget()
            return True
        self.forget()
        return False

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
