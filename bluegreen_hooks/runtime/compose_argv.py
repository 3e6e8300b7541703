"""A compose colour's command lines, pure: the variables every compose command of a colour gets, the project
name, and the argv of each command we run (tested on their exact output, tests/test_compose_unit.py); the
paths of the files ``up`` reads (the memory override) and of BeforeInstall's start record, in the state dir."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bluegreen_hooks.config import Config
from bluegreen_hooks.model import Colour


def variables(cfg: Config, colour: Colour, deployment_id: str | None = None) -> dict[str, str]:
    """The variables every compose command of ``colour`` gets (compose/env first; ours win)."""
    assert cfg.compose is not None
    out = dict(cfg.compose.env)
    out.update(BLUEGREEN_APP=cfg.app, BLUEGREEN_COLOUR=colour, BLUEGREEN_OTHER_COLOUR=Config.other(colour),
               BLUEGREEN_HOST=cfg.host, BLUEGREEN_PORT=str(cfg.port(colour)),
               BLUEGREEN_PROJECT=cfg.compose.project_name(cfg.app, colour),
               BLUEGREEN_DEPLOYMENT=deployment_id or "-")
    for r in cfg.compose.routed:
        out[r.port_env] = str(r.ports[colour])
    return out


def project_name(cfg: Config, colour: Colour) -> str:
    assert cfg.compose is not None
    return cfg.compose.project_name(cfg.app, colour)


def base_argv(cmd: Sequence[str], cfg: Config, colour: Colour) -> list[str]:
    assert cfg.compose is not None
    return [*cmd, "-p", project_name(cfg, colour), "-f", str(cfg.compose.files[colour])]


def up_argv(cmd: Sequence[str], cfg: Config, colour: Colour) -> list[str]:
    """``-f <memory override> up -d --remove-orphans`` (+ ``--build`` with compose/build)."""
    assert cfg.compose is not None
    return (base_argv(cmd, cfg, colour) + ["-f", str(memory_override_path(cfg, colour)), "up", "-d",
                                           "--remove-orphans"] + (["--build"] if cfg.compose.build else []))


def detached_record(cfg: Config, colour: Colour) -> Path:
    """The record of the ``up`` BeforeInstall started for ``colour`` (compose_exec.Detached), in the state dir."""
    return cfg.state_dir / f"{cfg.app}-{colour}.up"


def memory_override_path(cfg: Config, colour: Colour) -> Path:
    """The override file ``up`` gets after the user's compose file (memory_override): in the state dir."""
    return cfg.state_dir / f"{cfg.app}-{colour}.memory.yml"


def pull_argv(cmd: Sequence[str], cfg: Config, colour: Colour) -> list[str]:
    """``pull`` (with compose/build too, services that are built here may have nothing to pull)."""
    assert cfg.compose is not None
    return base_argv(cmd, cfg, colour) + ["pull"] + (["--ignore-pull-failures"] if cfg.compose.build else [])


def down_argv(cmd: Sequence[str], cfg: Config, colour: Colour, grace: float) -> list[str]:
    """``down --remove-orphans --timeout N`` (+ ``--volumes`` only with compose/remove_volumes)."""
    assert cfg.compose is not None
    return (base_argv(cmd, cfg, colour) + ["down", "--remove-orphans", "--timeout", str(round(grace))]
            + (["--volumes"] if cfg.compose.remove_volumes else []))


def config_argv(cmd: Sequence[str], cfg: Config, colour: Colour, services: bool = False,
                render: bool = False) -> list[str]:
    """``config -q`` / ``config --services`` / ``config`` (``render``: the whole file, variables applied)."""
    return [*base_argv(cmd, cfg, colour), "config"] + ([] if render else ["--services" if services else "-q"])
