"""Names shared by every part of the package: colours, lifecycle events, the deployment-id pattern.

Pure and import-light (no docker, no tenacity): hooks, the local runner and the plan all start here.
"""
from __future__ import annotations

import re
from typing import Literal, get_args

Colour = Literal["blue", "green"]
COLOURS: tuple[Colour, ...] = get_args(Colour)

# the events bluegreen-hooks acts on, in the order the CodeDeploy agent runs them
EVENTS: tuple[str, ...] = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")
# every event an appspec may name (in-place deployments, with and without a load balancer)
AGENT_EVENTS: tuple[str, ...] = (
    "BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop", "BeforeInstall", "AfterInstall",
    "ApplicationStart", "ValidateService", "BeforeAllowTraffic", "AfterAllowTraffic")

# a CodeDeploy deployment id (d-XXXXXXXXX), a manual-… or rollback-… id: what may reach a label,
# an image tag and the include's header line
DEPLOYMENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def is_deployment_id(value: object) -> bool:
    """True when ``value`` is a whole deployment id (``fullmatch``: no trailing newline slips through)."""
    return isinstance(value, str) and DEPLOYMENT_ID_RE.fullmatch(value) is not None


def other(colour: Colour) -> Colour:
    """The colour that is not ``colour``."""
    return "green" if colour == "blue" else "blue"
