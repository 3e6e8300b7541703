"""``setup-host --user NAME``: prepare a host for hooks that run as a non-root deploy user (``runas:``).

Run once as root; idempotent; prints one line per piece, saying whether it changed it:

* the state directory and the venv root (``$BLUEGREEN_VENV_ROOT``, else /opt/bluegreen-hooks, where
  hooks/launch builds the bundle's virtual environment) owned by the user, mode 0700;
* the nginx include owned by the user (created empty when missing; nginx.conf and its folder untouched:
  the hooks rewrite the include in place when they may not create files next to it);
* the user in the group of the Docker socket;
* ``/etc/sudoers.d/bluegreen-hooks-<user>`` (0440, checked with ``visudo -c -f``) allowing exactly the
  configured nginx/test, nginx/reload and nginx/dump commands without a password. Commands with
  wildcards, shells or characters sudoers would read specially are refused.

``doctor``, run as the user, checks the same pieces (``user_checks``) and names the missing one.
"""
from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError, SetupError
from bluegreen_hooks.model import Say

VENV_ROOT_ENV = "BLUEGREEN_VENV_ROOT"          # the same variable hooks/launch reads
DEFAULT_VENV_ROOT = "/opt/bluegreen-hooks"
SUDOERS_DIR = Path("/etc/sudoers.d")
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "busybox", "env", "sudo", "su",
                    "python", "python3", "perl", "ruby", "xargs", "find", "vi", "vim", "less", "more"})
_SPECIAL = re.compile(r"[*?\[\]\\,:=!#\s\"'`$;&|<>(){}]")
NGINX_KEYS = ("test", "reload", "dump")



def venv_root(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(VENV_ROOT_ENV) or DEFAULT_VENV_ROOT)


def without_sudo(argv: Sequence[str]) -> tuple[str, ...] | None:
    """The command ``argv`` runs through ``sudo -n`` (None when it does not start with sudo)."""
    if not argv or os.path.basename(argv[0]) != "sudo":
        return None
    rest = list(argv[1:])
    while rest and rest[0].startswith("-"):
        if rest[0] not in ("-n", "--non-interactive", "--"):
            raise SetupError(f"nginx command {' '.join(argv)}: sudo option {rest[0]} is not supported here "
                             f"(use `sudo -n <command>`)")
        rest.pop(0)
    return tuple(rest)


def sudo_commands(cfg: Config) -> list[tuple[str, tuple[str, ...]]]:
    """(config key, command) of each nginx command that runs through sudo."""
    out = []
    for key in NGINX_KEYS:
        cmd = without_sudo(getattr(cfg.nginx, key))
        if cmd is not None:
            out.append((f"nginx/{key}", cmd))
    return out


def sudoers_command(key: str, cmd: Sequence[str]) -> str:
    """One command as sudoers holds it: absolute executable, plain arguments; SetupError otherwise."""
    if not cmd:
        raise SetupError(f"{key}: `sudo` without a command")
    exe = cmd[0] if cmd[0].startswith("/") else shutil.which(cmd[0], path=SECURE_PATH)
    if exe is None:
        raise SetupError(f"{key}: {cmd[0]} not found on sudo's secure_path ({SECURE_PATH})")
    if os.path.basename(exe) in SHELLS:
        raise SetupError(f"{key}: refusing to allow a shell or interpreter through sudo: {' '.join(cmd)}")
    for part in (exe, *cmd[1:]):
        if not part or _SPECIAL.search(part):
            raise SetupError(f"{key}: {part!r} has a wildcard, space or character sudoers reads specially; "
                             f"use plain arguments")
    return " ".join((exe, *cmd[1:]))


def sudoers_text(user: str, cfg: Config) -> str:
    lines = [sudoers_command(key, cmd) for key, cmd in sudo_commands(cfg)]
    if not lines:
        return ""
    return (f"# bluegreen-hooks setup-host --user {user} (config {cfg.path}): exactly the nginx commands of\n"
            f"# nginx/test, nginx/reload and nginx/dump, without a password. Rewritten by setup-host.\n"
            f"{user} ALL=(root) NOPASSWD: {', '.join(dict.fromkeys(lines))}\n")


def sudoers_path(user: str, sudoers_dir: Path = SUDOERS_DIR) -> Path:
    return sudoers_dir / f"bluegreen-hooks-{user}"


# ------------------------------------------------------------------------------------------- the pieces

def own_dir(path: Path, pw: Any, say: Say, what: str) -> None:
    created = not path.exists()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    changed = created or (st.st_uid, st.st_gid) != (pw.pw_uid, pw.pw_gid) or st.st_mode & 0o777 != 0o700
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o700)
    say(f"{what} {path}: " + ("created, " if created else "") + f"owner {pw.pw_name}, mode 0700"
        + ("" if changed else " (unchanged)"))


def own_include(cfg: Config, pw: Any, say: Say) -> None:
    inc = cfg.nginx.include
    if not inc.parent.is_dir():
        raise SetupError(f"nginx/include: folder {inc.parent} does not exist")
    created = not inc.exists()
    if created:
        inc.touch(mode=0o644)
    st = inc.stat()
    changed = created or st.st_uid != pw.pw_uid
    os.chown(inc, pw.pw_uid, -1)
    say(f"nginx include {inc}: " + ("created empty, " if created else "") + f"owner {pw.pw_name}, mode "
        f"{st.st_mode & 0o777:04o}" + ("" if changed else " (unchanged)") + "; nginx.conf untouched")


def docker_socket(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        raise SetupError(f"DOCKER_HOST={host}: only a unix socket can be shared through a group")
    return Path(host[len("unix://"):])


def join_docker_group(pw: Any, say: Say) -> None:
    sock = docker_socket()
    try:
        gid = sock.stat().st_gid
    except OSError as exc:
        raise SetupError(f"Docker socket {sock}: {exc.strerror}") from exc
    if gid == 0:
        raise SetupError(f"Docker socket {sock} belongs to group root: give it a docker group first")
    group = grp.getgrgid(gid)
    if pw.pw_gid == gid or pw.pw_name in group.gr_mem:
        say(f"docker: {pw.pw_name} is in group {group.gr_name} of {sock} (unchanged)")
        return
    subprocess.run(["usermod", "-aG", group.gr_name, pw.pw_name], check=True, capture_output=True, text=True)
    say(f"docker: added {pw.pw_name} to group {group.gr_name} of {sock} (takes effect at its next login/su)")


def install_sudoers(user: str, cfg: Config, say: Say, sudoers_dir: Path = SUDOERS_DIR) -> None:
    text = sudoers_text(user, cfg)
    path = sudoers_path(user, sudoers_dir)
    if not text:
        say(f"sudo: no nginx command of {cfg.path.name} runs through sudo; {path} not written")
        return
    if path.exists() and path.read_text() == text and path.stat().st_mode & 0o777 == 0o440:
        say(f"sudo: {path} allows {user}: {text.splitlines()[-1].split(': ', 1)[1]} (unchanged)")
        return
    fd, tmp = tempfile.mkstemp(prefix=".bluegreen-hooks.", dir=sudoers_dir)   # '.' names: sudo skips them
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o440)
        check = subprocess.run(["visudo", "-c", "-f", tmp], capture_output=True, text=True)
        if check.returncode != 0:
            raise SetupError(f"visudo -c refused the drop-in: {(check.stderr or check.stdout).strip()}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    say(f"sudo: wrote {path} (0440, visudo -c ok): {user} may run {text.splitlines()[-1].split(': ', 1)[1]}")


def setup_host(cfg: Config, user: str, say: Say, sudoers_dir: Path = SUDOERS_DIR) -> None:
    """Every piece, in order; SetupError when one cannot be done (the pieces before it stay done)."""
    if os.geteuid() != 0:
        raise SetupError("setup-host changes owners, groups and sudoers: run it as root (sudo bluegreen-hooks …)")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SetupError(f"--user {user}: no such user (create it first, e.g. useradd -m {user})") from None
    if pw.pw_uid == 0:
        raise SetupError(f"--user {user} is root: setup-host is for a non-root deploy user")
    own_dir(cfg.state_dir, pw, say, "state dir")
    own_dir(venv_root(), pw, say, "venv root")
    own_include(cfg, pw, say)
    join_docker_group(pw, say)
    install_sudoers(user, cfg, say, sudoers_dir)
    say(f"done: hooks may run as {user} (appspec `runas: {user}`); check with `bluegreen-hooks doctor` as {user}")


# ------------------------------------------------------------------------------------------ the command

def load_for_user(path: Path | None) -> Config:
    """The config the deploy user's hooks will see (its defaults as for a non-root user)."""
    from bluegreen_hooks import config as config_mod

    if path is not None:
        return config_mod.load(path.resolve(), check_files=False, as_root=False)
    found = config_mod.find()
    if found.is_file():
        return config_mod.load(found, check_files=False, as_root=False)
    raise ConfigError(f"{found}: no bluegreen.toml here; pass --config PATH (its include, state dir and nginx "
                      f"commands are what setup-host prepares)")


def _run(args: argparse.Namespace) -> int:
    cfg = load_for_user(args.config)
    setup_host(cfg, args.user, lambda m: print(f"setup-host: {m}", flush=True))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("setup-host", help="prepare the host for hooks that run as a non-root user (run as root)",
                       description="Make the state dir and venv root owned by USER (0700), the nginx include owned "
                                   "by USER (nginx.conf untouched), USER a member of the Docker socket's group, and "
                                   "write /etc/sudoers.d/bluegreen-hooks-USER allowing exactly the configured nginx "
                                   "test/reload/dump commands. Idempotent; prints each change.",
                       epilog="exit codes: 0 done; 1 a step failed; 2 bad input (not root, unknown user, config)")
    p.add_argument("--user", required=True, help="the deploy user (the appspec's runas)")
    p.add_argument("--config", type=Path, default=None, help="the app's bluegreen.toml (default: ./bluegreen.toml)")
    p.set_defaults(func=_run)
