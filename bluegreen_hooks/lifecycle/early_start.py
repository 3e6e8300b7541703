"""``compose/start_in = "BeforeInstall"`` (opt-in): a compose app's new colour started by BeforeInstall, collected
by ApplicationStart (docs/compose.md).

Once BeforeInstall's checks passed and the target is chosen, ``start_soon`` starts the target's ``up`` in its own
session (runtime/compose.start_soon, compose_exec.Detached), so that it runs on while the agent installs the
revision and asks for the next event, and while ApplicationStart's interpreter starts. ApplicationStart's early
claim (steps.claim_early) then waits for that ``up`` instead of starting its own. Only when nothing between the
two hooks can change what ``up`` starts (``start_blocker``). It is not the default: on a 2-core host, through
codedeploy-local (whose gap between the hooks is ~0.2-0.3 s), the start competes with ApplicationStart's own for
the CPU and gains nothing (bench/agent_start_in.py); it pays where the agent's gap is long. An ``up`` nobody
collects is ended before its colour is removed (compose.remove_colour) or when ApplicationStart's claim chose
otherwise (``end_uncollected``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from bluegreen_hooks.config import Config
from bluegreen_hooks.model import COLOURS, Colour

if TYPE_CHECKING:
    from bluegreen_hooks.lifecycle.steps import Context
    from bluegreen_hooks.runtime.base import Backend


def start_blocker(cfg: Config) -> str | None:
    """Why ApplicationStart, not BeforeInstall, starts a compose app's new colour (None: BeforeInstall may:
    compose/start_in asks for it and nothing stands in the way).

    BeforeInstall may when nothing the agent does between the two hooks can change what ``up`` starts: the
    appspec installs no files (``files:``) and runs no AfterInstall script, and no pull has to run first."""
    assert cfg.compose is not None
    if cfg.compose.start_in != "BeforeInstall":
        return f"compose/start_in is {cfg.compose.start_in!r}"
    if cfg.compose.pull:
        return "compose/pull is on: the pull runs first"
    from bluegreen_hooks.config import appspec
    from bluegreen_hooks.errors import ConfigError

    path = cfg.root / "appspec.yml"
    try:
        spec = appspec.parse(appspec.decode(path.read_bytes()))
    except FileNotFoundError:
        return None   # no appspec (a local run): no Install step either
    except (OSError, ConfigError) as exc:
        return f"{path.name} could not be read ({exc})"
    if spec.files:
        return f"{path.name} installs files (files:) the new version may need"
    if spec.hooks.get("AfterInstall"):
        return f"{path.name} runs AfterInstall scripts first"
    return None


def start_soon(ctx: Context, backend: Backend, target: Colour) -> None:
    """A compose app's target starts now (runtime/compose.start_soon) when ``start_blocker`` allows: its `up`
    runs on while the agent installs the revision and ApplicationStart's interpreter starts. A start that
    cannot be made is left to ApplicationStart (it says why)."""
    if ctx.cfg.compose is None or ctx.cfg.compose.start_in != "BeforeInstall":   # the default: not asked for
        return
    why = start_blocker(ctx.cfg)
    if why is not None:
        ctx.say(f"{target} starts in ApplicationStart: {why}")
        return
    try:
        backend.start_soon(target, ctx.deployment_id, ctx.say)
    except Exception as exc:   # ApplicationStart starts it, and says what fails, if it still does
        ctx.say(f"warning: could not start {target} now ({exc}); ApplicationStart starts it")


def end_uncollected(cfg: Config) -> None:
    """End any ``up`` BeforeInstall started that ApplicationStart will not collect (its claim chose otherwise):
    never two `up` of a colour at once; what it started is then the claim's to judge."""
    from bluegreen_hooks.runtime.compose_argv import detached_record
    from bluegreen_hooks.runtime.compose_exec import Detached

    for colour in COLOURS:
        up = Detached.find(detached_record(cfg, colour)) if cfg.compose is not None else None
        if up is not None:
            up.kill()
