"""The memory keys of [deploy]: the preflight's headroom, and the limits and OOM scores of each colour's
containers (docs/memory.md). One parse function, as for the other tables.

* ``memory_headroom``  — what must stay free once the new colour runs (default 128 MiB; ``"off"``: no preflight)
* ``mem_limit``        — each container's memory limit, the same for both colours (default: none)
* ``oom_score_adj``    — the live colour's containers' OOM score (default: Docker's 0)
* ``new_oom_score_adj`` — the new colour's while it starts and until it is validated (default oom_score_adj + 500,
  at most 1000): under memory pressure the kernel then kills the new colour, not the live one
* ``cgroup_parent``    — the cgroup both colours' containers are created under (a memory budget for the app)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from bluegreen_hooks.config.reader import Reader

MEMORY_KEYS = ("memory_headroom", "mem_limit", "oom_score_adj", "new_oom_score_adj", "cgroup_parent")
MIB = 1024 * 1024
DEFAULT_HEADROOM = 128 * MIB
DEFAULT_NEW_OOM_BOOST = 500
SIZE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,3})?)\s*([kmgKMG]?)[iI]?[bB]?")
CGROUP = re.compile(r"/?[A-Za-z0-9_.-]{1,64}(/[A-Za-z0-9_.-]{1,64}){0,7}")
_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}
SIZE_WHAT = 'a size such as "512m" or "2g" (or a whole number of MiB)'


@dataclass(frozen=True)
class MemoryConfig:
    """The memory keys of [deploy], sizes in bytes."""

    headroom: int | None = DEFAULT_HEADROOM     # None: no preflight
    mem_limit: int | None = None
    oom_score_adj: int | None = None
    new_oom_score_adj: int = DEFAULT_NEW_OOM_BOOST
    cgroup_parent: str | None = None

    @property
    def live_oom_score_adj(self) -> int:
        return self.oom_score_adj or 0


def parse_size(value: object) -> int | None:
    """Bytes for ``"512m"``, ``"1.5g"``, ``"300MiB"``, ``"4096k"`` or a whole number of MiB; None if not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * MIB if 0 < value <= 16 * 1024 * 1024 else None
    if not isinstance(value, str):
        return None
    m = SIZE.fullmatch(value.strip())
    if not m:
        return None
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    return size if size >= MIB else None


def mib(size: int) -> str:
    """``612 MiB`` (``0.4 MiB`` under 10 MiB, ``21.6 GiB`` from 10 GiB on): how sizes appear in messages."""
    if size < 10 * MIB:
        return f"{size / MIB:.1f} MiB"
    return f"{size / MIB:,.0f} MiB" if size < 10 * 1024 * MIB else f"{size / 1024 / MIB:,.1f} GiB"


def _size(r: Reader, key: str, default: int | None) -> int | None:
    value = r.get(key)
    if value is None:
        return default
    size = parse_size(value)
    if size is None:
        r.fail(key, f"should be {SIZE_WHAT}, at least 1 MiB, not {value!r}")
    return size


def parse_memory(deploy: Reader) -> MemoryConfig:
    """deploy/memory_headroom, mem_limit, oom_score_adj, new_oom_score_adj, cgroup_parent."""
    headroom: int | None
    if deploy.get("memory_headroom") == "off":
        headroom = None
    elif deploy.get("memory_headroom") == 0:
        headroom = 0
    else:
        headroom = _size(deploy, "memory_headroom", DEFAULT_HEADROOM)
    score = deploy.integer("oom_score_adj", None, -1000, 1000, "an OOM score adjustment")
    new = deploy.integer("new_oom_score_adj", min(1000, (score or 0) + DEFAULT_NEW_OOM_BOOST), -1000, 1000,
                         "an OOM score adjustment")
    if new < (score or 0):
        deploy.fail("new_oom_score_adj", f"should be at least deploy/oom_score_adj ({score or 0}), not {new}: "
                                         f"the new colour must be the first the kernel kills, not the live one")
    cgroup = deploy.string("cgroup_parent", None, CGROUP, 'a cgroup path such as "/apps/shop"')
    if cgroup is not None and ".." in cgroup.split("/"):
        deploy.fail("cgroup_parent", f"should be a cgroup path without '..', not {cgroup!r}")
    return MemoryConfig(headroom=headroom, mem_limit=_size(deploy, "mem_limit", None), oom_score_adj=score,
                        new_oom_score_adj=new, cgroup_parent=cgroup)
