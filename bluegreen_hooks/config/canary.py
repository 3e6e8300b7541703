"""The [canary] table: shift a share of the requests to the new colour first, watch it, then promote or abort.

```toml
[canary]
steps = [10, 50]          # percent of requests to the new colour, in order; then 100
step_seconds = 30         # how long each step is watched
min_requests = 50         # fewer requests through the new colour: the step is extended (up to max_wait), then judged
max_error_rate = 0.01     # failed share of the new colour's attempts that aborts (95 % Wilson lower bound above it)
max_wait = 300            # the longest one step may last (seconds)
on_too_few = "abort"      # fewer than min_requests by max_wait: "abort" | "extend" (into the next step) | "promote"
latency_factor = 2.0      # the new colour's p95/p99 may be up to this times the old colour's ...
latency_margin = 0.1      # ... and more than this many seconds above it; beyond both: abort
probe_paths = []          # our own requests forced to the new colour; [] = nginx/validate_path
probe_interval = 0.5      # seconds between two probes (0: no probes)
probe_timeout = 5         # a probe with no answer by then counts as a failure
```
The split follows nginx/form (the include is where the split happens). See docs/canary.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from bluegreen_hooks.config.reader import URL_PATH, Reader

CANARY_KEYS = ("steps", "step_seconds", "min_requests", "max_error_rate", "max_wait", "on_too_few",
               "latency_factor", "latency_margin", "probe_paths", "probe_interval", "probe_timeout")
ON_TOO_FEW = ("abort", "extend", "promote")
DEFAULT_STEPS = (10, 50)
DEFAULT_STEP_SECONDS = 30.0
DEFAULT_MIN_REQUESTS = 50
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MAX_WAIT = 300.0
DEFAULT_LATENCY_FACTOR = 2.0
DEFAULT_LATENCY_MARGIN = 0.1
DEFAULT_PROBE_INTERVAL = 0.5
DEFAULT_PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class CanaryConfig:
    """The [canary] table, validated: percent steps (1..99, rising) and how each is watched and judged."""

    steps: tuple[int, ...]
    step_seconds: float
    min_requests: int
    max_error_rate: float
    max_wait: float
    on_too_few: str = "abort"
    latency_factor: float = DEFAULT_LATENCY_FACTOR
    latency_margin: float = DEFAULT_LATENCY_MARGIN
    probe_paths: tuple[str, ...] = ()         # empty: nginx/validate_path
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT

    @property
    def step_limit(self) -> float:
        """The longest one step can last: ``max_wait``, but never less than ``step_seconds``."""
        return max(self.step_seconds, self.max_wait)

    @property
    def longest(self) -> float:
        """The longest the whole canary can last (every step extended to its limit)."""
        return len(self.steps) * self.step_limit


def parse_canary(r: Reader) -> CanaryConfig:
    """[canary]: the steps (whole percents 1..99, strictly rising) and the watch/judge numbers."""
    steps = r.get("steps", list(DEFAULT_STEPS))
    ok = isinstance(steps, list) and bool(steps) and all(
        isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 99 for s in steps)
    if not ok or any(b <= a for a, b in zip(steps, steps[1:])):
        r.fail("steps", f"should be a rising list of percents from 1 to 99 such as [10, 50], not {steps!r}")
    step_seconds = r.number("step_seconds", DEFAULT_STEP_SECONDS, 0.5, 3600)
    max_wait = r.number("max_wait", DEFAULT_MAX_WAIT, 0.5, 3600)
    if max_wait < step_seconds:
        r.fail("max_wait", f"should be at least canary/step_seconds ({step_seconds:g}), not {max_wait:g}")
    return CanaryConfig(
        steps=tuple(steps), step_seconds=step_seconds,
        min_requests=r.integer("min_requests", DEFAULT_MIN_REQUESTS, 0, 10_000_000),
        max_error_rate=_rate(r), max_wait=max_wait, on_too_few=_choice(r, "on_too_few", ON_TOO_FEW, "abort"),
        latency_factor=_factor(r),
        latency_margin=r.number("latency_margin", DEFAULT_LATENCY_MARGIN, 0, 60),
        probe_paths=_paths(r), probe_interval=r.number("probe_interval", DEFAULT_PROBE_INTERVAL, 0, 60),
        probe_timeout=r.number("probe_timeout", DEFAULT_PROBE_TIMEOUT, 0.1, 60))


def _factor(r: Reader) -> float:
    value = r.get("latency_factor", DEFAULT_LATENCY_FACTOR)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 100:
        r.fail("latency_factor", f"should be a factor from 1 to 100 such as 2.0, not {value!r}")
    return float(value)


def _choice(r: Reader, key: str, choices: tuple[str, ...], default: str) -> str:
    value = r.get(key, default)
    if value not in choices:
        r.fail(key, f"should be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
    return str(value)


def _paths(r: Reader) -> tuple[str, ...]:
    value = r.get("probe_paths", [])
    if not isinstance(value, list) or len(value) > 20 or not all(
            isinstance(p, str) and URL_PATH.fullmatch(p) for p in value):
        r.fail("probe_paths", f"should be a list of at most 20 HTTP paths starting with / (no spaces, ';', '$', "
                              f"'{{', '}}') such as [\"/\", \"/health\"], not {value!r:.80}")
    return tuple(value)


def _rate(r: Reader) -> float:
    value = r.get("max_error_rate", DEFAULT_MAX_ERROR_RATE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        r.fail("max_error_rate", f"should be a share from 0 to below 1 such as 0.01 (1 %), not {value!r}")
    return float(value)
