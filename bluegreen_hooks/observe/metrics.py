"""Figures ops can graph, computed from the app's State (never scraped): a Prometheus textfile-collector
file ``<deploy/metrics_dir>/<app>.prom`` in prometheus_client's text format, and the same figures as
JSON for ``bluegreen-hooks metrics --json``. docs/operator.md lists every metric.

prometheus_client is imported only when figures are written or printed, so hooks start fast.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.host import files
from bluegreen_hooks.host.files import write_atomic
from bluegreen_hooks.model import COLOURS, Record, State

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# the timings a deployment records (lifecycle/events.py, steps.drain) -> (metric, help, factor to seconds)
TIMINGS = (
    ("image", "bluegreen_image_prepare_seconds", "Seconds the last deployment took to build or pull its image", 1),
    ("healthy", "bluegreen_health_wait_seconds", "Seconds the last deployment waited for its colour to be healthy", 1),
    ("switch_ms", "bluegreen_switch_seconds", "Seconds the last switch took (write, nginx -t, reload, verify)",
     0.001),
    ("drain", "bluegreen_drain_seconds", "Seconds the last deployment waited for old nginx workers to drain", 1),
)


def _last(records: list[Record], rollback: bool) -> Record | None:
    return next((d for d in reversed(records) if str(d.get("id", "")).startswith("rollback-") == rollback), None)


def _deployment(app: str, d: Record | None) -> Iterator[Metric]:
    """The last (non-rollback) deployment: when, how it ended, how long it and its steps took."""
    from prometheus_client.core import GaugeMetricFamily

    if d is None:
        return
    labels = [app, d.get("target") or "none"]
    g = GaugeMetricFamily("bluegreen_last_deployment_timestamp_seconds",
                          "When the last deployment ended (Unix time)", labels=["app", "colour"])
    g.add_metric(labels, float(d.get("ended") or 0))
    yield g
    g = GaugeMetricFamily("bluegreen_last_deployment_success", "1 if the last deployment succeeded, else 0",
                          labels=["app", "colour"])
    g.add_metric(labels, 1.0 if d.get("outcome") == "succeeded" else 0.0)
    yield g
    g = GaugeMetricFamily("bluegreen_last_deployment_info", "The last deployment: its id and outcome (always 1)",
                          labels=["app", "colour", "deployment", "outcome"])
    g.add_metric([*labels, str(d.get("id")), str(d.get("outcome"))], 1.0)
    yield g
    g = GaugeMetricFamily("bluegreen_last_deployment_duration_seconds",
                          "Seconds from BeforeInstall to the end of the last deployment", labels=["app", "colour"])
    g.add_metric(labels, float(d.get("seconds") or 0))
    yield g
    timings = d.get("timings") or {}
    for key, name, doc, factor in TIMINGS:
        if isinstance(timings.get(key), (int, float)):
            g = GaugeMetricFamily(name, doc, labels=["app", "colour"])
            g.add_metric(labels, round(float(timings[key]) * factor, 6))
            yield g
    yield from _receipt(app, d.get("receipt"))


def _receipt(app: str, r: Any) -> Iterator[Metric]:
    """The last deployment's receipt (lifecycle/watch.py): what clients got from each colour in its window."""
    from prometheus_client.core import GaugeMetricFamily

    if not isinstance(r, dict):
        return
    labels = ["app", "colour", "role"]
    req = GaugeMetricFamily("bluegreen_last_window_requests", "Attempts nginx logged per colour in the last "
                            "deployment's watch window (role new|old)", labels=labels)
    failed = GaugeMetricFamily("bluegreen_last_window_failed", "Failed attempts per colour and kind in the last "
                               "deployment's watch window", labels=[*labels, "kind"])
    p95 = GaugeMetricFamily("bluegreen_last_window_p95_seconds", "p95 upstream response time per colour in the "
                            "last deployment's watch window", labels=labels)
    for role in ("new", "old"):
        c = r.get(role)
        if not isinstance(c, dict):
            continue
        key = [app, str(c.get("colour")), role]
        req.add_metric(key, float(c.get("requests") or 0))
        for kind, n in (c.get("failures") or {}).items():
            failed.add_metric([*key, str(kind)], float(n))
        if isinstance(c.get("p95"), (int, float)):
            p95.add_metric(key, float(c["p95"]))
    ok = GaugeMetricFamily("bluegreen_last_window_ok", "1 if the last deployment's watch window judged the new "
                           "colour ok, 0 if it switched back", labels=["app"])
    ok.add_metric([app], 1.0 if r.get("verdict") == "ok" else 0.0)
    yield from (req, failed, p95, ok)


def _rollback(app: str, d: Record | None) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    if d is None:
        return
    g = GaugeMetricFamily("bluegreen_last_rollback_timestamp_seconds", "When the last rollback ended (Unix time)",
                          labels=["app", "colour", "outcome"])
    g.add_metric([app, d.get("target") or "none", str(d.get("outcome"))], float(d.get("ended") or 0))
    yield g


def _events(app: str, events: list[Record]) -> Iterator[Metric]:
    """The duration of the last run of each event (BeforeInstall, ..., Rollback, Maintenance)."""
    from prometheus_client.core import GaugeMetricFamily

    last: dict[str, Record] = {}
    for e in events:
        last[str(e.get("event"))] = e
    if not last:
        return
    g = GaugeMetricFamily("bluegreen_event_duration_seconds", "Seconds the last run of each event took",
                          labels=["app", "colour", "event", "outcome"])
    for name, e in sorted(last.items()):
        g.add_metric([app, e.get("target") or e.get("live") or "none", name, str(e.get("outcome"))],
                     float(e.get("seconds") or 0))
    yield g


def _totals(app: str, state: State) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily

    c = state.counters
    by_outcome = CounterMetricFamily("bluegreen_deployments", "Deployments ended, by outcome",
                                     labels=["app", "outcome"])
    for outcome in ("succeeded", "failed", "abandoned"):
        by_outcome.add_metric([app, outcome], c.get(f"deployments_{outcome}", 0))
    yield by_outcome
    yield _one(CounterMetricFamily("bluegreen_deployments_failed", "Deployments that failed", labels=["app"]),
               app, c.get("deployments_failed", 0))
    rollbacks = CounterMetricFamily("bluegreen_rollbacks", "Rollbacks run, by outcome", labels=["app", "outcome"])
    for outcome in ("succeeded", "failed"):
        rollbacks.add_metric([app, outcome], c.get(f"rollbacks_{outcome}", 0))
    yield rollbacks
    yield _one(CounterMetricFamily("bluegreen_notifications_failed", "Notifications that could not be delivered",
                                   labels=["app"]), app, c.get("notify_failed", 0))


def _one(family: Any, app: str, value: float) -> Any:
    family.add_metric([app], value)
    return family


def families(app: str, state: State) -> list[Metric]:
    """Every metric of the app, computed from its state."""
    from prometheus_client.core import GaugeMetricFamily

    live = GaugeMetricFamily("bluegreen_live_colour", "1 for the colour nginx sends traffic to, else 0",
                             labels=["app", "colour"])
    for colour in COLOURS:
        live.add_metric([app, colour], 1.0 if state.live == colour else 0.0)
    m = state.maintenance
    maint = GaugeMetricFamily("bluegreen_maintenance", "1 while maintenance mode is on, else 0", labels=["app"])
    maint.add_metric([app], 1.0 if m else 0.0)
    out: list[Metric] = [live, maint]
    if m is not None:
        out.append(_one(GaugeMetricFamily("bluegreen_maintenance_since_timestamp_seconds",
                                          "When maintenance mode was turned on (Unix time)", labels=["app"]),
                        app, m.since))
    out += [*_deployment(app, _last(state.deployments, False)), *_rollback(app, _last(state.deployments, True)),
            *_events(app, state.events), *_totals(app, state)]
    return out


def exposition(app: str, state: State) -> str:
    """The text format (what node_exporter's textfile collector reads), from prometheus_client."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _StateCollector:
        def collect(self) -> list[Metric]:
            return families(app, state)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector())
    return generate_latest(registry).decode("utf-8")


def as_json(app: str, state: State) -> dict[str, Any]:
    """``{app, generated, metrics: {name: {type, help, samples: [{labels, value}]}}}``."""
    metrics: dict[str, Any] = {}
    for fam in families(app, state):
        metrics[fam.name] = {"type": fam.type, "help": fam.documentation,
                             "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value}
                                         for s in fam.samples]}
    return {"app": app, "generated": time.time(), "metrics": metrics}


def write(cfg: Config, state: State) -> bool:
    """Write ``<deploy/metrics_dir>/<app>.prom`` atomically (node_exporter never reads half a file); False
    when no metrics_dir is configured. The canary helper calls this after each step, too."""
    folder = cfg.metrics.dir
    if folder is None:
        return False
    files.check_type(folder, "deploy/metrics_dir", "folder")
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    files.check_type(folder / f"{cfg.app}.prom", "deploy/metrics_dir", "file", follow=False)
    write_atomic(folder / f"{cfg.app}.prom", exposition(cfg.app, state), mode=0o644)
    return True
