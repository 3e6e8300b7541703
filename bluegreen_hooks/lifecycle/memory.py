"""Memory preflight and OOM protection (docs/memory.md).

BeforeInstall: the new colour will need about what the live colour uses now (each live container's usage
as ``docker stats`` counts it: read from its memory cgroup, else Docker's one-shot stats; all asked in parallel
and bounded by ``STATS_TIMEOUT``), or, with
deploy/mem_limit, that limit per container; a compose service whose new compose file declares a limit
(``mem_limit`` or ``deploy.resources.limits.memory``) counts with that limit instead. While both colours
run, that must fit in ``MemAvailable`` (/proc/meminfo: what can be allocated without swapping; the live
colour's own memory is already outside it) with deploy/memory_headroom to spare; if not, the deployment
is refused with one line naming both figures, before anything is started or stopped.

ValidateService: the new colour started with deploy/new_oom_score_adj (higher than the live colour's, so
the kernel kills it first under memory pressure during the switch window); once it is validated and live,
its processes get deploy/oom_score_adj.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bluegreen_hooks.config import Config
from bluegreen_hooks.config.memory import mib
from bluegreen_hooks.errors import HookError
from bluegreen_hooks.host import procfs
from bluegreen_hooks.model import Colour
from bluegreen_hooks.runtime.base import Backend, Container, DeclaredMemory, Say
from bluegreen_hooks.runtime.sdk import usage_of as usage_of  # parses Docker's stats (runtime/sdk); tests use it here

MEMINFO = Path("/proc/meminfo")
STATS_TIMEOUT = 5.0   # seconds for all the live colour's stats calls together
LOWER_LIMITS = "lower those limits or use a larger instance"   # the refusal's advice with compose file limits


class NotEnoughMemory(HookError):
    """The host cannot hold both colours: refused in BeforeInstall, nothing started or stopped."""


@dataclass(frozen=True)
class Estimate:
    """What the new colour will need, and how that was found (for the message)."""

    need: int
    how: str
    unmeasured: tuple[str, ...] = ()
    fix: str = "free memory, use a larger instance, set deploy/mem_limit lower, or lower deploy/memory_headroom"


def mem_available(meminfo: Path = MEMINFO) -> int | None:
    """``MemAvailable`` in bytes (None where the kernel does not report it)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Measurement:
    """Some containers' memory use, asked in parallel on daemon threads as soon as it is made; ``result``
    waits at most until ``timeout`` after the start. A stats call that hangs is left behind, never waited for.

    Each container's memory cgroup is read from /sys (``procfs.memory_in_use``: at once, what ``docker stats``
    shows); where that cannot be read, Docker's one-shot stats, which answer at its collector's next tick (once
    a second): up to ~1 s of waiting (no CPU), whatever the number of containers. BeforeInstall starts it
    before its nginx checks (``start``) and collects it after the claim."""

    def __init__(self, containers: Sequence[Container], used: Callable[[str], int | None],
                 timeout: float = STATS_TIMEOUT) -> None:
        self.containers, self._of = list(containers), used
        self.end = time.monotonic() + timeout
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._one, args=(c,), daemon=True, name=f"stats-{c.name}")
                         for c in self.containers]
        for t in self._threads:
            t.start()

    def _one(self, cont: Container) -> None:
        used = procfs.memory_in_use(cont.pid) if cont.pid > 0 else None
        try:
            if used is None:
                used = self._of(cont.id)   # Backend.memory_used: Docker's one-shot stats
        except Exception:
            return
        if used is not None:
            with self._lock:
                self._used[cont.name] = used

    def result(self) -> tuple[dict[str, int], list[str]]:
        """Each container's use, and the names not measured in time."""
        for t in self._threads:
            t.join(max(0.0, self.end - time.monotonic()))
        with self._lock:
            done = dict(self._used)
        return done, [c.name for c in self.containers if c.name not in done]


def measure(containers: Sequence[Container], used: Callable[[str], int | None],
            timeout: float = STATS_TIMEOUT) -> tuple[dict[str, int], list[str]]:
    """Each container's memory use (``used``: one-shot stats, in parallel); and the names not measured in time."""
    return Measurement(containers, used, timeout).result()


def start(cfg: Config, backend: Backend, live: Colour | None) -> Measurement | None:
    """Start measuring the live colour's running containers now (None when there is nothing to measure)."""
    if cfg.memory.headroom is None or cfg.memory.mem_limit or live is None:
        return None
    conts = [c for c in backend.containers(live) if c.status == "running"]
    return Measurement(conts, backend.memory_used) if conts else None


def estimate(cfg: Config, live: Colour | None, containers: Sequence[Container],
             used: Callable[[str], int | None] | None = None, timeout: float = STATS_TIMEOUT,
             started: Measurement | None = None, declared: Mapping[str, DeclaredMemory] | None = None) -> Estimate:
    """The new colour's memory: deploy/mem_limit per live container when set; else the limits the new colour's
    compose file declares (``declared``: {service: DeclaredMemory}) for its services that have one, and the
    live colour's usage (from ``started`` when it measured these containers, else ``used``: Backend.memory_used)
    for the others."""
    if cfg.memory.mem_limit:
        n = max(1, len(containers))
        return Estimate(cfg.memory.mem_limit * n,
                        f"deploy/mem_limit {mib(cfg.memory.mem_limit)} x {n} container{'s' * (n != 1)}")
    limited = {svc: (d.limit, d.containers) for svc, d in (declared or {}).items() if d.limit}
    need, how = sum(limit * n for limit, n in limited.values()), []
    if limited:
        how.append("compose file limits: " + ", ".join(
            f"{svc} {mib(limit)}" + (f" x {n}" if n != 1 else "")
            for svc, (limit, n) in sorted(limited.items())))
    rest = [c for c in containers if c.service not in limited]
    if limited and not rest:
        return Estimate(need, how[0], fix=LOWER_LIMITS)
    names = {c.name for c in rest}
    if started is None or not names <= {c.name for c in started.containers}:
        assert used is not None, "estimate: nothing measured these containers and no way to measure them given"
        started = Measurement(rest, used, timeout)
    got, missing = started.result()
    got = {name: u for name, u in got.items() if name in names}
    n = len(got)
    how.append(f"{live}'s use of {n} other container{'s' * (n != 1)}" if limited else
               f"{live}'s measured use, {n} container{'s' * (n != 1)}")
    return Estimate(need + sum(got.values()), "; ".join(how), tuple(m for m in missing if m in names),
                    **({"fix": LOWER_LIMITS} if limited else {}))


def refusal(target: Colour, live: Colour | None, est: Estimate, headroom: int, available: int) -> str | None:
    """The one-line refusal when ``est`` plus ``headroom`` does not fit in ``available`` (None when it fits)."""
    if est.need + headroom <= available:
        return None
    serving = f"{live} keeps serving" if live else "nothing was serving"
    return (f"not enough memory for both colours: {target} needs ~{mib(est.need)} ({est.how}) + {mib(headroom)} "
            f"headroom (deploy/memory_headroom), but MemAvailable is {mib(available)}; {serving}; {est.fix}")


def preflight(cfg: Config, backend: Backend, live: Colour | None, target: Colour, say: Say,
              meminfo: Path = MEMINFO, started: Measurement | None = None,
              deployment_id: str | None = None) -> Estimate | None:
    """BeforeInstall's memory check (see the module docstring); raises NotEnoughMemory, says what it found.

    compose without deploy/mem_limit: the limits the target's compose file declares (``mem_limit``,
    ``deploy.resources.limits.memory``; BeforeInstall's rendered config) count for their services."""
    headroom = cfg.memory.headroom
    if headroom is None:
        return None
    t0 = time.monotonic()
    declared: dict[str, DeclaredMemory] = {}
    if cfg.compose is not None and not cfg.memory.mem_limit and deployment_id:
        declared = backend.declared_memory(target, deployment_id)   # BeforeInstall's render, cached
    all_declared = bool(declared) and all(d.limit for d in declared.values())
    conts = [c for c in backend.containers(live) if c.status == "running"] if live else []
    if not conts and not (cfg.memory.mem_limit and cfg.compose is None) and not all_declared:
        say("memory preflight: nothing live to measure; skipped")
        return None
    available = mem_available(meminfo)
    if available is None:
        say(f"memory preflight: {meminfo} has no MemAvailable; skipped")
        return None
    if live or all_declared:
        est = estimate(cfg, live, conts, backend.memory_used, started=started, declared=declared)
    else:   # the first deployment of a single container with deploy/mem_limit
        limit = cfg.memory.mem_limit or 0
        est = Estimate(limit, f"deploy/mem_limit {mib(limit)} x 1 container")
    waited = time.monotonic() - t0
    if est.unmeasured:
        say(f"memory preflight: no stats in {STATS_TIMEOUT:g}s for {', '.join(est.unmeasured)} (not counted)")
    why = refusal(target, live, est, headroom, available)
    if why:
        raise NotEnoughMemory(why)
    say(f"memory ok: {target} needs ~{mib(est.need)} ({est.how}) + {mib(headroom)} headroom, "
        f"MemAvailable {mib(available)} (waited {waited:.2f}s for it)")
    return est


def set_oom_score(pids: Sequence[int], score: int, proc: Path = Path("/proc")) -> list[int]:
    """Write ``score`` to each process's oom_score_adj; return the pids that could not be changed (gone,
    or lowering without CAP_SYS_RESOURCE)."""
    failed = []
    for pid in pids:
        try:
            (proc / str(pid) / "oom_score_adj").write_text(f"{score}\n")
        except OSError:
            failed.append(pid)
    return failed


def settle_live(cfg: Config, backend: Backend, colour: Colour, say: Say) -> None:
    """The validated new colour is live: its processes get deploy/oom_score_adj (from new_oom_score_adj)."""
    m = cfg.memory
    if m.new_oom_score_adj == m.live_oom_score_adj:
        return
    pids = [p for c in backend.containers(colour) if c.status == "running" for p in backend.process_ids(c.id)]
    if not pids:
        return
    failed = set_oom_score(pids, m.live_oom_score_adj)
    if len(failed) == len(pids):
        say(f"{colour} keeps OOM score {m.new_oom_score_adj}: lowering it to {m.live_oom_score_adj} needs "
            f"CAP_SYS_RESOURCE (root); the next new colour starts with the same score, so the kernel no longer "
            f"prefers it under memory pressure")
        return
    say(f"{colour} is live: OOM score {m.new_oom_score_adj} -> {m.live_oom_score_adj} "
        f"({len(pids) - len(failed)} of {len(pids)} process(es))")
