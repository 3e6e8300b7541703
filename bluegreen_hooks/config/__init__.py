"""The deploy config: ``bluegreen.toml`` at the bundle root, validated in full when it is loaded.

Every value that ends up in the nginx include, a container name or an argv is checked here, so the
rest of the package can trust a ``Config``. A bad value is refused with one line that names the file
and the key path, e.g. ``bluegreen.toml: colours/green: should be a port (1-65535), not '80; evil'``.
See docs/config.md for every key and its default.

* ``model``: the frozen objects (``Config`` and one per table) and their derived values;
* ``reader``: typed getters for one table, the value patterns (always matched in full);
* ``parsing``: one parse function per table, ``parse``/``load``/``find``;
* one module per table family: ``compose`` ([compose]), ``canary`` ([canary]), ``memory`` (the memory keys of
  [deploy]), ``operability`` ([maintenance], [notify] and their [deploy] keys), ``tasks`` ([[tasks]]).
* ``appspec``: the bundle's other config file, appspec.yml: THE parser and model (read by ``bundle``, ``local``,
  and by the canary and the watch for their hook timeouts).
"""
from __future__ import annotations

from bluegreen_hooks.config.model import (
    CONFIG_ENV,
    CONFIG_NAME,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEALTH_DEADLINE,
    DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_MAX_INTERVAL,
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_HISTORY,
    DEFAULT_KEEP_IMAGES,
    DEFAULT_STALE_AFTER,
    DEFAULT_STATE_DIR,
    DEFAULT_STOP_GRACE,
    DEFAULT_VERIFY_TIMEOUT,
    STATE_DIR_ENV,
    ComposeConfig,
    ComposeRoute,
    Config,
    ContainerConfig,
    Form,
    HealthConfig,
    Network,
    NginxConfig,
)
from bluegreen_hooks.config.parsing import default_reload, find, load, parse, tomllib
from bluegreen_hooks.model import COLOURS, Colour

__all__ = [
    "COLOURS", "CONFIG_ENV", "CONFIG_NAME", "DEFAULT_DRAIN_TIMEOUT", "DEFAULT_HEALTH_DEADLINE",
    "DEFAULT_HEALTH_INTERVAL", "DEFAULT_HEALTH_MAX_INTERVAL", "DEFAULT_HEALTH_TIMEOUT", "DEFAULT_HISTORY",
    "DEFAULT_KEEP_IMAGES", "DEFAULT_STALE_AFTER", "DEFAULT_STATE_DIR", "DEFAULT_STOP_GRACE", "DEFAULT_VERIFY_TIMEOUT",
    "STATE_DIR_ENV", "Colour", "ComposeConfig", "ComposeRoute", "Config", "ContainerConfig", "Form", "HealthConfig",
    "Network", "NginxConfig", "default_reload", "find", "load", "parse",
    "tomllib",   # read by delivery's bundle check (until it goes through load)
]
