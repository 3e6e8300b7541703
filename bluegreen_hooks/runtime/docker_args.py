"""The single-container backend's pure builders: the image tag of a deployment and the arguments of
``containers.run`` for a colour (no Docker needed to compute them; the dry run prints them, a release
record keeps them: runtime/docker_release.py).
"""
from __future__ import annotations

import re
from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.model import Colour
from bluegreen_hooks.runtime.base import LABEL_APP, LABEL_COLOUR, LABEL_DEPLOYMENT, LABEL_IMAGE


def image_tag(cfg: Config, deployment_id: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", deployment_id)[:128]
    return f"{cfg.image_repo}:{tag}"


def run_kwargs(cfg: Config, colour: Colour, image: str, deployment_id: str) -> dict[str, Any]:
    """The arguments of ``containers.run`` for a colour (pure: no Docker needed to compute them)."""
    c = cfg.container
    env = dict(c.env)
    labels = {LABEL_APP: cfg.app, LABEL_COLOUR: colour, LABEL_DEPLOYMENT: deployment_id, LABEL_IMAGE: image}
    kwargs: dict[str, Any] = {
        "image": image, "name": cfg.container_name(colour), "detach": True, "labels": labels,
        "restart_policy": {"Name": "unless-stopped"}, "stop_signal": "SIGTERM",
    }
    if c.network == "host":
        kwargs["network_mode"] = "host"
        if c.port_env:
            env[c.port_env] = str(cfg.port(colour))
    else:
        kwargs["network_mode"] = "bridge"
        kwargs["ports"] = {f"{c.port}/tcp": (cfg.host, cfg.port(colour))}
    if c.command:
        kwargs["command"] = list(c.command)
    kwargs["environment"] = env
    kwargs.update(memory_kwargs(cfg))
    return kwargs


def memory_kwargs(cfg: Config) -> dict[str, Any]:
    """deploy/mem_limit, cgroup_parent and the new colour's OOM score (docs/memory.md): a colour always starts
    as the new one; ValidateService lowers the score to deploy/oom_score_adj once it is live."""
    m = cfg.memory
    kwargs: dict[str, Any] = {"oom_score_adj": m.new_oom_score_adj}
    if m.mem_limit:
        kwargs["mem_limit"] = m.mem_limit
    if m.cgroup_parent:
        kwargs["cgroup_parent"] = m.cgroup_parent
    return kwargs
