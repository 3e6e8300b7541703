"""The load balancer's events (in-place deployments WITH_TRAFFIC_CONTROL): accepted, and harmless.

CodeDeploy deregisters an instance from its load balancer (BlockTraffic) before it deploys there and
registers it again (AllowTraffic) after ValidateService; an appspec may hook Before/After each. Our
blue/green switch happens behind this host's own nginx, so none of them has anything to do: they report
which colour serves here and succeed. ApplicationStop and the BlockTraffic hooks run from the previous
revision (the agent's rule), so a bundle that adds them keeps working when rolled back.
"""
from __future__ import annotations

from typing import Callable

from bluegreen_hooks.lifecycle.steps import Context

TRAFFIC_EVENTS: tuple[str, ...] = ("BeforeBlockTraffic", "AfterBlockTraffic", "BeforeAllowTraffic",
                                   "AfterAllowTraffic")

_WHAT = {
    "BeforeBlockTraffic": "the load balancer is about to deregister this instance",
    "AfterBlockTraffic": "the load balancer has deregistered this instance (its requests are drained)",
    "BeforeAllowTraffic": "the load balancer is about to register this instance again",
    "AfterAllowTraffic": "the load balancer sends this instance requests again",
}


def traffic_event(ctx: Context) -> None:
    live = ctx.store.read(quarantine=False).state.live
    ctx.say(f"nothing to do: {_WHAT[ctx.event]}; bluegreen-hooks switches colours behind this host's nginx "
            f"(live: {live or 'none recorded'})")


TRAFFIC_HANDLERS: dict[str, Callable[[Context], None]] = dict.fromkeys(TRAFFIC_EVENTS, traffic_event)
