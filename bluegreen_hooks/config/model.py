"""The validated deploy config: frozen objects, with the values derived from them as methods.

Built only by ``bluegreen_hooks.config.parse``; the rest of the package trusts what it holds.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bluegreen_hooks import model
from bluegreen_hooks.config.canary import CanaryConfig
from bluegreen_hooks.config.memory import MemoryConfig
from bluegreen_hooks.config.operability import MaintenanceConfig, MetricsConfig, NotifyConfig
from bluegreen_hooks.config.tasks import Task
from bluegreen_hooks.model import COLOURS, Colour

Form = Literal["set", "upstream"]
Network = Literal["host", "bridge"]
Retire = Literal["wait", "background"]   # deploy/retire: ValidateService drains and stops, or hands it over

CONFIG_NAME = "bluegreen.toml"
DEFAULT_STATE_DIR = "/var/lib/bluegreen-hooks"
STATE_DIR_ENV = "BLUEGREEN_STATE_DIR"
CONFIG_ENV = "BLUEGREEN_CONFIG"

# defaults, as numbers (seconds unless stated)
DEFAULT_HEALTH_TIMEOUT = 2.0
DEFAULT_HEALTH_DEADLINE = 120.0
DEFAULT_HEALTH_INTERVAL = 0.2
DEFAULT_HEALTH_MAX_INTERVAL = 0.5
DEFAULT_VERIFY_TIMEOUT = 15.0
DEFAULT_DRAIN_TIMEOUT = 30.0
DEFAULT_STOP_GRACE = 10.0
DEFAULT_KEEP_IMAGES = 2
DEFAULT_STALE_AFTER = 900.0
DEFAULT_HISTORY = 100


@dataclass(frozen=True)
class ContainerConfig:
    """The [container] table: one container per colour, run with the docker SDK."""

    image: str | None
    build: Path | None
    dockerfile: str
    build_args: Mapping[str, str]
    build_network: str | None
    network: Network
    port: int | None
    port_env: str
    env: Mapping[str, str]
    stop_grace_period: float
    command: tuple[str, ...] | None


@dataclass(frozen=True)
class HealthConfig:
    """The [health] table: what a healthy colour answers, and how long to wait for it."""

    path: str
    statuses: tuple[int, ...]
    timeout: float
    deadline: float
    interval: float
    max_interval: float


@dataclass(frozen=True)
class NginxConfig:
    """The [nginx] table: the include to write, how to test and reload nginx, where to verify."""

    include: Path
    form: Form
    variable: str
    upstream: str
    colour_variable: str
    test: tuple[str, ...]
    reload: tuple[str, ...]
    pid_file: Path
    public_url: str
    validate_path: str
    colour_header: str
    verify_timeout: float
    dump: tuple[str, ...] = ("nginx", "-T")   # prints the effective configuration (host/nginx_conf.py)


@dataclass(frozen=True)
class ComposeRoute:
    """A routed compose service: its port per colour and the nginx variable that points at it."""

    service: str
    variable: str
    ports: Mapping[str, int]

    @property
    def port_env(self) -> str:
        """The variable holding its port for the compose file, e.g. BLUEGREEN_PORT_API."""
        return "BLUEGREEN_PORT_" + re.sub(r"[^A-Z0-9]", "_", self.service.upper())


@dataclass(frozen=True)
class ComposeConfig:
    """The [compose] table: run each colour as a docker-compose project (see docs/compose.md)."""

    files: Mapping[str, Path]          # colour -> compose file (the same file for both in the one-file form)
    single: bool                       # True for `file = ...` (colours differ only by the variables we set)
    project: str                       # template with {app} and {colour}
    build: bool
    pull: bool
    services: tuple[str, ...] | None   # services to wait for (None: all of the file)
    routed: tuple[ComposeRoute, ...]   # the first uses colours/blue, colours/green and nginx/variable
    remove_volumes: bool
    env: Mapping[str, str]
    command: tuple[str, ...] | None    # None: `docker compose` if it works, else `docker-compose`
    stop_grace_period: float
    start_in: str = "ApplicationStart"   # which hook starts the new colour's `up` (BeforeInstall: when it may)

    def project_name(self, app: str, colour: str) -> str:
        return self.project.format(app=app, colour=colour)


@dataclass(frozen=True)
class Config:
    """The whole bluegreen.toml, validated: the tables above plus the top-level and [deploy] values."""

    path: Path
    app: str
    ports: Mapping[str, int]
    host: str
    container: ContainerConfig
    health: HealthConfig
    nginx: NginxConfig
    drain_timeout: float
    keep_images: int
    state_dir: Path
    stale_after: float
    history: int
    retire: Retire = "wait"            # deploy/retire: "background" hands the drain and stop to lifecycle/background.py
    watch_seconds: float = 0.0         # deploy/watch_seconds: watch live traffic after the switch (lifecycle/watch.py)
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    compose: ComposeConfig | None = None
    canary: CanaryConfig | None = None     # [canary]: shift a share first (docs/canary.md)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    notify: NotifyConfig | None = None
    tasks: tuple[Task, ...] = ()       # [[tasks]] (config/tasks.py), in the order written
    memory: MemoryConfig = field(default_factory=MemoryConfig)   # deploy/memory_headroom, mem_limit … (docs/memory.md)

    @property
    def extra_routes(self) -> tuple[ComposeRoute, ...]:
        """Routed services beyond the first (each one more ``set $var ...;`` line in the include)."""
        return self.compose.routed[1:] if self.compose else ()

    @property
    def root(self) -> Path:
        """The bundle root: the folder holding the config file."""
        return self.path.parent

    def port(self, colour: Colour) -> int:
        return self.ports[colour]

    def colour_port_keys(self, colour: Colour) -> list[tuple[str, int]]:
        """Every port ``colour`` serves on, each with the config key that sets it: colours/<colour> first, then
        each further routed compose service's."""
        return [(f"colours/{colour}", self.ports[colour])] + [
            (f"compose/routes/{r.service}/{colour}", r.ports[colour]) for r in self.extra_routes]

    def colour_ports(self, colour: Colour) -> list[int]:
        """Every port ``colour`` serves on (``colour_port_keys`` without the keys)."""
        return [port for _, port in self.colour_port_keys(colour)]

    @staticmethod
    def other(colour: Colour) -> Colour:
        return model.other(colour)

    def colour_of_port(self, port: int) -> Colour | None:
        return next((c for c in COLOURS if self.ports[c] == port), None)

    @property
    def host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def upstream_url(self, colour: Colour) -> str:
        return f"http://{self.host_for_url}:{self.port(colour)}"

    def health_url(self, colour: Colour) -> str:
        return self.upstream_url(colour) + self.health.path

    def container_name(self, colour: Colour) -> str:
        return f"{self.app}-{colour}"

    @property
    def image_repo(self) -> str:
        return f"bluegreen-{self.app}"
