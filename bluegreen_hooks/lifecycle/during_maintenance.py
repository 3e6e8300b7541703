"""What a deployment (or a rollback) does while maintenance mode is on (operator/maintenance.py).

* ``guard``: BeforeInstall and ApplicationStart refuse to deploy while maintenance is on, unless
  ``deploy/during_maintenance = "keep"``; then the deployment goes on behind the maintenance page.
* ``include_for``: every switch during maintenance (``steps.switch``) writes the maintenance include for the
  new colour (same message, same Retry-After), so the page stays up and the new colour is what
  ``maintenance off`` makes live; the check after the reload looks for the page, not for the colour.
* ``validate``: ValidateService validates through nginx normally; during maintenance nginx answers the
  page, so it validates on the colour's own port instead (as the health check does).
"""
from __future__ import annotations

import time

from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import HookError, NginxError
from bluegreen_hooks.host import maintenance as page
from bluegreen_hooks.host import nginx
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.model import Colour, Maintenance, Say, VerifyMode


class MaintenanceOn(HookError):
    """Maintenance mode is on and deploy/during_maintenance refuses deployments."""


def current(store: Store) -> Maintenance | None:
    """The maintenance record of the app's state (None: maintenance is off)."""
    return store.read(quarantine=False).state.maintenance


def describe(m: Maintenance) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(m.since))
    return f"maintenance is on since {since} (by {m.user or '?'}@{m.host or '?'})"


def guard(cfg: Config, store: Store, say: Say) -> None:
    """Refuse a deployment while maintenance is on, unless deploy/during_maintenance = "keep"."""
    m = current(store)
    if m is None:
        return
    if cfg.maintenance.during != "keep":
        raise MaintenanceOn(f"{describe(m)}: deployments are refused; run `bluegreen-hooks maintenance off` first, "
                            f"or set deploy/during_maintenance = \"keep\" to deploy behind the maintenance page")
    say(f"{describe(m)}: deploying behind the maintenance page (deploy/during_maintenance = \"keep\"); the "
            f"new colour serves when `bluegreen-hooks maintenance off` runs")


def check_environment(cfg: Config) -> None:
    """BeforeInstall's check of what the maintenance page of a later event would read from the environment
    or a file (the bypass token): with deploy/during_maintenance = "keep" a deployment may have to render the
    page, so a missing or bad token is refused now (ConfigError naming the key and the variable or file),
    not after the build. With "refuse" the hooks never render it: only `maintenance on` reads it."""
    if cfg.maintenance.during == "keep":
        page.read_bypass_token(cfg)


def include_for(cfg: Config, m: Maintenance | None, colour: Colour, include_id: str) -> tuple[str, str | None]:
    """(the include text that points at ``colour``, its maintenance marker or None when maintenance is off)."""
    if m is None:
        return nginx.render_include(cfg, colour, include_id), None
    return page.render(cfg, colour, include_id, m.message or cfg.maintenance.message, m.retry_after,
                       page.read_bypass_token(cfg))


def validate(cfg: Config, store: Store, target: Colour, path: str | None = None, mode: VerifyMode | None = None
             ) -> str:
    """Validate ``target`` through nginx (proven by header or worker generation: nginx.verify_serving, by
    ``mode``, the deployment's recorded verify mode; None: decided now), or on its own port during maintenance;
    the line to print. ``path`` defaults to nginx/validate_path.

    Raises NginxError when it does not answer as it should."""
    from bluegreen_hooks.host import health  # http.client: not on the no-op hook's import path

    path = path or cfg.nginx.validate_path
    if current(store) is None:
        answer, proof = nginx.verify_serving(cfg, target, mode or nginx.verify_mode(cfg), path=path)
        return f"validated through nginx: {cfg.nginx.public_url}{path} -> HTTP {answer.status} from {target} ({proof})"
    try:
        got = health.check_http(cfg.host, cfg.port(target), path, cfg.health.timeout, cfg.health.statuses)
    except health.NotHealthyYet as exc:
        raise NginxError(f"{target} does not answer {path} on its port: {exc}") from exc
    return (f"validated on {target}'s own port (maintenance is on, nginx answers the maintenance page): "
            f"{cfg.upstream_url(target)}{path} -> {got}")
