"""Finding the app the operator commands act on, and reading its state without changing anything.

ApplicationStart keeps a copy of the live ``bluegreen.toml`` as ``<state_dir>/<app>.toml`` (and records
its path in the state as ``config``), so the commands need no bundle: a state directory, an app name
(default: the only app there) or an explicit config path is enough.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import trust
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import State


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$BLUEGREEN_STATE_DIR``, else the default state directory."""
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


def choose_app(state_dir: Path, app: str | None) -> str:
    """``app`` if the state directory has it, else the only app there; ConfigError naming the choices."""
    apps = apps_in(state_dir)
    if app:
        if app not in apps:
            raise ConfigError(f"no app {app!r} in the state directory {state_dir} "
                              f"(apps there: {', '.join(apps) or 'none'}); check --app or --state-dir")
        return app
    if not apps:
        raise ConfigError(f"no app has been deployed with state directory {state_dir} (no <app>.json or <app>.toml "
                          f"there); pass --state-dir DIR, or --config PATH to the app's bluegreen.toml")
    if len(apps) > 1:
        raise ConfigError(f"several apps in {state_dir}: {', '.join(apps)}; choose one with --app NAME")
    return apps[0]


def config_copy(state_dir: Path, app: str) -> Path:
    """The live config of ``app``: the path its state records, else ``<state_dir>/<app>.toml``.

    The state dir, the state file and the copy must be trusted (host/trust.py): the copy's nginx commands
    are run by doctor, status and rollback, as root."""
    Store(state_dir, app).check()
    path = state_dir / f"{app}.toml"
    try:
        recorded = json.loads(trust.read_text(state_dir / f"{app}.json")).get("config")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str) and recorded and Path(recorded).is_file():
        path = Path(recorded)
    if not path.is_file():
        raise ConfigError(f"{path}: no copy of {app}'s live config (ApplicationStart writes it); "
                          f"pass --config PATH to the app's bluegreen.toml")
    key = trust.STATE_KEY if path.parent == state_dir else None   # a recorded config elsewhere: not the state dir's
    trust.check_folder(path.parent, key)
    trust.check_file(path, key)
    return path


def find_config(state_dir: Path | None = None, app: str | None = None, config: Path | None = None) -> Config:
    """The Config of the app: ``config`` if given, else the copy in the state directory; ConfigError if none.

    ``state_dir`` defaults to ``$BLUEGREEN_STATE_DIR``, else the default state directory; ``app`` to the
    only app there.
    """
    environ = dict(os.environ)
    if state_dir is not None:
        state_dir = state_dir_arg(state_dir)
        environ[config_mod.STATE_DIR_ENV] = str(state_dir)
    if config is not None:
        path = Path(config).resolve()
        trust.check_file(path, None)   # its nginx commands run as root: refuse one another user could change
        return config_mod.load(path, environ, check_files=False)
    sd = Path(state_dir) if state_dir is not None else default_state_dir()
    environ[config_mod.STATE_DIR_ENV] = str(sd)
    return config_mod.load(config_copy(sd, choose_app(sd, app)), environ, check_files=False)


def state_dir_arg(state_dir: Path) -> Path:
    """``--state-dir`` made absolute (relative to the current directory); ConfigError naming --state-dir."""
    from bluegreen_hooks.config.reader import SAFE_PATH

    absolute = os.path.abspath(state_dir)
    if not SAFE_PATH.fullmatch(absolute):
        raise ConfigError(f"--state-dir: should be a path of letters, digits, '.', '_', '-', '@', '+' and '/', "
                          f"not {str(state_dir)!r}")
    return Path(absolute)


def open_store(cfg: Config) -> Store:
    """The state store of the app ``cfg`` describes."""
    return Store(cfg.state_dir, cfg.app, cfg.history)


def read_state(store: Store) -> tuple[State, str | None]:
    """The state and its problem ("missing" | "corrupt" | None), read without changing anything."""
    read = store.read(quarantine=False)
    return read.state, read.problem
