"""Every path the config names that the hooks open, checked for its type in one place (host/files.py)."""
from __future__ import annotations

from pathlib import Path

from bluegreen_hooks.config import Config
from bluegreen_hooks.host.files import Kind, check_type


def config_paths(cfg: Config) -> list[tuple[str, Path, Kind, bool]]:
    """(key, path, kind, follow symlinks) of every path the config names that the hooks open, but the include
    (host/include_guard.py checks it whole) and the state directory (host/trust.py)."""
    out: list[tuple[str, Path, Kind, bool]] = [("nginx/pid_file", cfg.nginx.pid_file, "file", True)]
    if cfg.metrics.dir is not None:
        out += [("deploy/metrics_dir", cfg.metrics.dir, "folder", True),
                ("deploy/metrics_dir", cfg.metrics.dir / f"{cfg.app}.prom", "file", False)]
    if cfg.metrics.emf and cfg.metrics.emf != "stdout":
        out.append(("deploy/emf", Path(cfg.metrics.emf), "file", False))
    n = cfg.notify
    for key, path in (("notify/webhook_file", n.webhook_file if n else None),
                      ("notify/auth_file", n.auth_file if n else None),
                      ("maintenance/bypass_token_file", cfg.maintenance.bypass_token_file)):
        if path is not None:
            out.append((key, path, "file", True))
    return out


def check_paths(cfg: Config) -> None:
    """Refuse (ConfigError, one line naming the key and the path) any path of ``config_paths`` that exists and
    is not of its kind: BeforeInstall calls this before anything changes."""
    for key, path, kind, follow in config_paths(cfg):
        check_type(path, key, kind, follow)
