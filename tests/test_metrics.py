"""Metrics against the real test bed: the .prom file (parsed with prometheus_client's own parser) after a
successful deployment, a failed one and a rollback; the EMF lines against the documented shape; the
``metrics`` command."""
from __future__ import annotations

import json
import time

import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from bluegreen_hooks.cli import main
from bluegreen_hooks.model import InProgress, State, record_deployment
from bluegreen_hooks.observe import metrics
from testbed.bundle import deploy
from tests.helpers import Bed, ok

# AWS "Specification: Embedded metric format" (the root node and its MetricDirective), as docs/operator.md shows
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws", "App", "Event", "Outcome", "Deployment", "EventDuration", "EventFailed"],
    "properties": {
        "_aws": {
            "type": "object", "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["Namespace", "Dimensions", "Metrics"],
                    "properties": {
                        "Namespace": {"type": "string", "minLength": 1, "maxLength": 255},
                        "Dimensions": {"type": "array", "items": {
                            "type": "array", "minItems": 1, "maxItems": 30, "items": {"type": "string"}}},
                        "Metrics": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
                            "type": "object", "required": ["Name"],
                            "properties": {"Name": {"type": "string", "minLength": 1, "maxLength": 255},
                                           "Unit": {"enum": ["Seconds", "Milliseconds", "Count", "None"]}}}},
                    }}},
            }},
        "App": {"type": "string"}, "Event": {"type": "string"}, "Outcome": {"type": "string"},
        "Colour": {"type": "string"}, "Deployment": {"type": "string"},
    },
}


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted label items without app): value} from the text format, by prometheus_client."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "app")))] = s.value
    return out


def check_emf(line: str, app: str) -> dict:
    obj = json.loads(line)
    jsonschema.validate(obj, EMF_SCHEMA)
    directive = obj["_aws"]["CloudWatchMetrics"][0]
    assert obj["App"] == app
    for dims in directive["Dimensions"]:       # every dimension is a string member of the root
        assert all(isinstance(obj[d], str) for d in dims)
    for m in directive["Metrics"]:             # every metric is a number member of the root
        assert isinstance(obj[m["Name"]], (int, float))
    return obj


def test_metrics_are_computed_from_the_state_with_prometheus_client():
    """Pure: a state with one succeeded and one failed deployment and a rollback gives the documented figures."""
    st = State("shop", live="blue")
    for ident, outcome, target in (("d-1", "succeeded", "green"), ("d-2", "failed", "blue"),
                                   ("rollback-1", "succeeded", "blue")):
        ip = InProgress(id=ident, target=target, started=100.0, timings={"healthy": 1.5, "switch_ms": 250.0})
        record_deployment(st, ip, outcome, 110.0)
    got = samples(metrics.exposition("shop", st))
    assert got[("bluegreen_live_colour", (("colour", "blue"),))] == 1.0
    assert got[("bluegreen_last_deployment_success", (("colour", "blue"),))] == 0.0
    assert got[("bluegreen_switch_seconds", (("colour", "blue"),))] == 0.25
    assert got[("bluegreen_deployments_failed_total", ())] == 1.0
    assert got[("bluegreen_rollbacks_total", (("outcome", "succeeded"),))] == 1.0
    j = metrics.as_json("shop", st)["metrics"]
    assert j["bluegreen_health_wait_seconds"]["samples"][0]["value"] == 1.5


def test_prom_file_and_emf_after_success_failure_and_rollback(docker_client, nginx, site, app_name, tmp_path,
                                                              capsys):
    """deploy v1, v2 (succeed), v3 (never healthy: fails), rollback: after each the .prom file holds the right
    live colour, last outcome, durations and totals; one EMF line per event run, each of the documented shape."""
    bed = Bed(app_name, docker_client, nginx, site, tmp_path)
    prom, emf = tmp_path / "metrics" / f"{app_name}.prom", tmp_path / "emf.log"
    extra = {"deploy": {"metrics_dir": str(prom.parent), "emf": str(emf), "drain_timeout": 30}}
    t0 = time.time()
    ok(deploy(bed.bundle("v1", **extra), "d-one"))
    ok(deploy(bed.bundle("v2", **extra), "d-two"))
    got = samples(prom.read_text())
    green = (("colour", "green"),)
    assert got[("bluegreen_live_colour", green)] == 1.0 and got[("bluegreen_live_colour", (("colour", "blue"),))] == 0
    assert got[("bluegreen_last_deployment_success", green)] == 1.0
    assert t0 < got[("bluegreen_last_deployment_timestamp_seconds", green)] <= time.time()
    assert got[("bluegreen_last_deployment_info", (*green, ("deployment", "d-two"), ("outcome", "succeeded")))] == 1
    for name in ("bluegreen_last_deployment_duration_seconds", "bluegreen_health_wait_seconds",
                 "bluegreen_switch_seconds"):
        assert 0 < got[(name, green)] < 120, name
    assert 0 <= got[("bluegreen_drain_seconds", green)] < 30
    assert got[("bluegreen_deployments_total", (("outcome", "succeeded"),))] == 2
    assert got[("bluegreen_deployments_failed_total", ())] == 0
    assert got[("bluegreen_event_duration_seconds", (*green, ("event", "ValidateService"), ("outcome", "succeeded")))]

    bad = bed.bundle("v3", container={"env": {"HOST": "127.0.0.1", "UNHEALTHY": "1"}}, health={"deadline": 3},
                     **extra)
    runs = deploy(bad, "d-three")
    assert (runs[-1].event, runs[-1].returncode) == ("ApplicationStart", 1), runs[-1].output
    got = samples(prom.read_text())
    blue = (("colour", "blue"),)
    assert got[("bluegreen_live_colour", green)] == 1.0
    assert got[("bluegreen_last_deployment_success", blue)] == 0.0
    assert got[("bluegreen_last_deployment_info", (*blue, ("deployment", "d-three"), ("outcome", "failed")))] == 1
    assert got[("bluegreen_deployments_failed_total", ())] == 1
    assert got[("bluegreen_rollbacks_total", (("outcome", "succeeded"),))] == 0

    assert main(["rollback", "--state-dir", str(bed.state_dir)]) == 0
    got = samples(prom.read_text())
    assert got[("bluegreen_live_colour", blue)] == 1.0 and got[("bluegreen_live_colour", green)] == 0.0
    assert got[("bluegreen_rollbacks_total", (("outcome", "succeeded"),))] == 1
    assert t0 < got[("bluegreen_last_rollback_timestamp_seconds", (*blue, ("outcome", "succeeded")))] <= time.time()
    assert got[("bluegreen_deployments_failed_total", ())] == 1
    assert got[("bluegreen_event_duration_seconds", (*blue, ("event", "Rollback"), ("outcome", "succeeded")))] > 0

    lines = emf.read_text().splitlines()
    objs = [check_emf(ln, app_name) for ln in lines]
    assert len(objs) == len(bed.state()["events"])        # one line per event run (and rollback)
    validate = [o for o in objs if o["Event"] == "ValidateService"]
    assert [o["DeploymentSucceeded"] for o in validate] == [1, 1] and all(o["HealthWait"] > 0 for o in validate)
    failed = [o for o in objs if o["Outcome"] == "failed"]
    assert [(o["Event"], o["Deployment"], o["EventFailed"]) for o in failed] == [("ApplicationStart", "d-three", 1)]
    assert objs[-1]["Event"] == "Rollback" and objs[-1]["DeploymentSucceeded"] == 1

    capsys.readouterr()
    assert main(["metrics", "--state-dir", str(bed.state_dir)]) == 0
    assert samples(capsys.readouterr().out) == got
    assert main(["metrics", "--json", "--state-dir", str(bed.state_dir)]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["app"] == app_name and j["metrics"]["bluegreen_rollbacks"]["type"] == "counter"
