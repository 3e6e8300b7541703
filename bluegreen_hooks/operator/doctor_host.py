"""The doctor checks of this issue's host setup: what nginx's effective config routes (and how switches will
be verified), and the pieces ``setup-host`` prepares for a non-root deploy user (venv root, sudo rules).

Each check returns ``(level, detail)`` or raises (a FAIL with its reason), like the checks in doctor.py.
"""
from __future__ import annotations

import getpass
import os
import subprocess

from bluegreen_hooks.config import Config
from bluegreen_hooks.host import nginx_conf
from bluegreen_hooks.operator.setup_host import sudo_commands, venv_root


def _setup_hint(user: str) -> str:
    return f"run `bluegreen-hooks setup-host --user {user} --config <bluegreen.toml>` as root"


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def check_nginx_routing(cfg: Config) -> tuple[str, str]:
    """The server block public_url reaches includes our include and proxies through its variable."""
    return "ok", nginx_conf.check(cfg).describe()


def check_verification(cfg: Config) -> tuple[str, str]:
    """Which proof switches will use; without the colour header, the lines that add it."""
    found = nginx_conf.inspect(cfg)
    text = f"switches will be {nginx_conf.mode_text(found, cfg)}"
    if found.mode == "header" or found.server is None:
        return "ok", text
    return "ok", (f"{text}; for a proof by colour add to the server block at {found.server.where}: "
                  + " | ".join(nginx_conf.header_lines(cfg)))


def check_venv_root(cfg: Config) -> tuple[str, str]:
    """hooks/launch builds the bundle's venv under the venv root: it must be the deploy user's."""
    root = venv_root()
    if os.geteuid() == 0:
        return "ok", f"running as root; venv root {root}"
    if not root.is_dir():
        return "fail", f"venv root {root} does not exist; {_setup_hint(user_name())}"
    st = root.stat()
    if st.st_uid != os.getuid() or not os.access(root, os.W_OK | os.X_OK):
        return "fail", (f"venv root {root} (owner uid {st.st_uid}, mode {st.st_mode & 0o777:o}) is not "
                        f"{user_name()}'s; {_setup_hint(user_name())}")
    return "ok", f"venv root {root} owned by {user_name()}, mode {st.st_mode & 0o777:o}"


def check_sudo(cfg: Config) -> tuple[str, str]:
    """Every nginx command that runs through ``sudo -n`` is allowed without a password."""
    cmds = sudo_commands(cfg)
    if not cmds:
        return "ok", "no nginx command runs through sudo" + (" (running as root)" if os.geteuid() == 0 else "")
    allowed = []
    for key, cmd in cmds:
        p = subprocess.run(["sudo", "-n", "-l", *cmd], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            return "fail", (f"sudo does not allow {user_name()} to run {key} `{' '.join(cmd)}` without a password; "
                            f"{_setup_hint(user_name())}")
        allowed.append(key)
    return "ok", f"sudo -n allows {user_name()}: {', '.join(allowed)}"
