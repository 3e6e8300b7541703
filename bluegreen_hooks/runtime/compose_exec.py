"""Running compose commands: one at a time or several at once, always as argv lists (never a shell),
with our variables and without the bundle on PYTHONPATH; errors name the command and its last lines."""
from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bluegreen_hooks.errors import ContainerStartError, DockerUnavailable

_INTERPOLATING = re.compile(r" interpolating \{.*\} in ")
_NOISE = ("DEPRECATED: The legacy builder", "Install the buildx component", "https://docs.docker.com/go/buildx")


class ComposeUnavailable(DockerUnavailable):
    """Neither ``docker compose`` nor ``docker-compose`` can be run on this host."""


def child_env(variables: Mapping[str, str]) -> dict[str, str]:
    """The environment of a compose command: ours plus ``variables``, without the bundle on PYTHONPATH.

    hooks/launch puts the bundle first on PYTHONPATH; docker-compose v1 is a Python program, and a
    package in the bundle (say ``docker/__init__.py`` or ``yaml/``) must not shadow its own modules.
    """
    env = {**os.environ, **variables}
    if env.get("PYTHONPATH"):
        keep = [p for p in env["PYTHONPATH"].split(os.pathsep)
                if p and not os.path.isdir(os.path.join(p, "bluegreen_hooks"))]
        if keep:
            env["PYTHONPATH"] = os.pathsep.join(keep)
        else:
            del env["PYTHONPATH"]
    return env


def _tail(output: str, lines: int = 2, width: int = 220) -> str:
    """The last telling lines of compose's output, joined; v1's dump of a service's settings is cut out."""
    useful = [_INTERPOLATING.sub(" in ", ln.strip()) for ln in output.splitlines()
              if ln.strip() and not any(n in ln for n in _NOISE)]
    return " / ".join(useful[-lines:])[:width]


def run_compose(argv: Sequence[str], env: Mapping[str, str], cwd: Path, what: str, timeout: float,
                error: type = ContainerStartError, check: bool = True) -> subprocess.CompletedProcess:
    """Run one compose command (argv list, no shell); raise ``error`` with its last telling lines.

    With ``check=False`` a non-zero exit is returned, not raised.
    """
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=str(cwd),
                              env=child_env(env), stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ComposeUnavailable(f"compose: command not found: {argv[0]} (install docker-compose, or set "
                                 f"compose/command)") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{what}: `{' '.join(argv)}` did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        raise error(f"{what} failed: {_tail(proc.stderr + proc.stdout) or f'exit {proc.returncode}'}")
    return proc


def run_parallel(jobs: Sequence[tuple[Sequence[str], Mapping[str, str], Path]], timeout: float
                 ) -> list[subprocess.CompletedProcess]:
    """Run (argv, variables, cwd) jobs at the same time; return their results in order (never raises on exit)."""
    procs: list[subprocess.Popen] = []
    try:
        for argv, env, cwd in jobs:
            procs.append(subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          cwd=str(cwd), env=child_env(env), stdin=subprocess.DEVNULL))
    except FileNotFoundError as exc:
        for p in procs:
            p.kill()
            p.wait()
        raise ComposeUnavailable(f"compose: command not found: {jobs[0][0][0]} (install docker-compose, or set "
                                 f"compose/command)") from exc
    out = []
    deadline = time.monotonic() + timeout
    try:
        for (argv, _, _), p in zip(jobs, procs):
            try:
                stdout, stderr = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise ContainerStartError(f"`{' '.join(argv)}` did not finish within {timeout:.0f}s") from exc
            out.append(subprocess.CompletedProcess(list(argv), p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out
