"""The watch window's pure parts: deploy/watch_seconds, the watch-form include in both forms (accepted by the real
`nginx -t`, the old colour as backup, the bounded retry), the receipt's text and metrics, and the state round trip."""
from __future__ import annotations

import subprocess

import pytest

from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import nginx_watch
from bluegreen_hooks.host.nginx_canary import user_access_logs
from bluegreen_hooks.model import InProgress, State, record_deployment
from bluegreen_hooks.observe import metrics
from bluegreen_hooks.operator.history import deployment_line, receipt_text
from tests.test_canary_units import _nginx_tree, cfg_of

RECEIPT = {"window": "watch", "form": "upstream", "watch_seconds": 15, "seconds": 2.1, "verdict": "switched back",
           "reason": "green refuses connections on port 8082", "notes": [],
           "new": {"colour": "green", "requests": 40, "failed": 3, "failures": {"refused": 3}, "p95": 0.004},
           "old": {"colour": "blue", "requests": 500, "failed": 0, "failures": {}, "p95": 0.009}}


def test_watch_seconds_defaults_to_off_and_bad_values_name_the_key():
    assert cfg_of().watch_seconds == 0
    assert cfg_of(deploy={"state_dir": "/var/lib/bg", "watch_seconds": 30}).watch_seconds == 30
    for bad in (-1, "30", 3601, True):
        with pytest.raises(ConfigError) as err:
            cfg_of(deploy={"state_dir": "/var/lib/bg", "watch_seconds": bad})
        assert "deploy/watch_seconds" in str(err.value), str(err.value)


def test_upstream_watch_include_has_the_old_colour_as_backup_and_a_bounded_retry():
    cfg = cfg_of(nginx={"form": "upstream"}, colours={"blue": 8081, "green": 8082})
    text = nginx_watch.render(cfg, "green", "blue", "d-new")
    assert text.startswith("# bluegreen-hooks: app=shop colour=green deployment=d-new watch=blue\n")
    assert ("upstream shop_backend {\n    server 127.0.0.1:8082 max_fails=1 fail_timeout=10s;\n"
            "    server 127.0.0.1:8081 backup;\n}\n") in text
    assert ("proxy_next_upstream error timeout http_502 http_503 http_504;\nproxy_next_upstream_tries 2;\n"
            "proxy_next_upstream_timeout 10s;\n") in text
    assert "non_idempotent" not in text
    assert nginx_watch.include_watch(cfg, text) == ("green", "blue")
    assert nginx_watch.include_watch(cfg_of(app="other"), text) is None


def test_set_watch_points_the_variable_at_an_http_level_group():
    cfg = cfg_of(colours={"blue": 8081, "green": 8082})
    text = nginx_watch.render(cfg, "green", "blue", "d-new", absorb=True)
    assert "set $service_url http://bluegreen_shop_watch;\n" in text and "proxy_next_upstream_tries 2;" in text
    assert "upstream" not in text.replace("proxy_next_upstream", "")      # no upstream block at server level
    group = nginx_watch.format_file_text(cfg, "green", "blue")
    assert group.startswith("# bluegreen-hooks: the log format")         # still the canary's file (ours)
    assert "upstream bluegreen_shop_watch {\n    server 127.0.0.1:8082 max_fails=1" in group
    assert "    server 127.0.0.1:8081 backup;\n" in group


@pytest.mark.parametrize("form", ["set", "upstream"])
def test_watch_include_passes_the_real_nginx_test(tmp_path, form):
    """The watch-form include (and, set form, the http-level file with the group) is accepted by `nginx -t`."""
    d = tmp_path / "ngx"
    cfg, d = _nginx_tree(tmp_path, form, http_log=f"access_log {d}/theirs.log;")
    found = user_access_logs(cfg)
    assert found.problem is None, found.problem
    if found.format_file:
        found.format_file.write_text(nginx_watch.format_file_text(cfg, "green", "blue"))
    cfg.nginx.include.write_text(nginx_watch.render(cfg, "green", "blue", "d-new", found.restated,
                                                    absorb=True))
    proc = subprocess.run(list(cfg.nginx.test), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + cfg.nginx.include.read_text()


def test_the_receipt_in_history_metrics_and_the_state():
    st = State(app="shop")
    ip = InProgress(id="d-new", target="green", started=1.0, from_colour="blue", extra={"receipt": RECEIPT})
    assert InProgress.from_json(ip.to_json()).extra["receipt"] == RECEIPT
    record_deployment(st, ip, "failed", 5.0, cause="the watch window failed")
    d = st.deployments[-1]
    assert d["receipt"] == RECEIPT
    line = deployment_line(d)
    assert "watch switched back after 2.1s: green 40 requests, 3 failed (refused 3), p95 0.004s; blue 500" in line
    assert receipt_text(None) == ""
    with_baseline = receipt_text({**RECEIPT, "baseline": {"colour": "blue", "samples": 412, "p95": 0.2624}})
    assert with_baseline.endswith("; blue p95 0.262s before the switch (412 requests)"), with_baseline
    assert receipt_text({**RECEIPT, "baseline": {"colour": "blue", "samples": 0, "p95": None}}) == receipt_text(RECEIPT)
    prom = metrics.exposition("shop", st)
    assert 'bluegreen_last_window_ok{app="shop"} 0.0' in prom
    assert 'bluegreen_last_window_failed{app="shop",colour="green",kind="refused",role="new"} 3.0' in prom
    assert 'bluegreen_last_window_requests{app="shop",colour="blue",role="old"} 500.0' in prom


def test_the_watch_fails_closed_on_too_few_and_its_probes_can_meet_min_requests():
    """No [canary]: too few requests at the end of the window switch back (on_too_few "abort"), and min_requests
    is at most half the probes the window sends (a quiet site passes on probes alone); with a [canary] its numbers,
    "extend" aborting (no window to extend into), "promote" going on. The probes: validate_path, else probe_paths."""
    from types import SimpleNamespace

    from bluegreen_hooks.lifecycle import watch
    from bluegreen_hooks.lifecycle.canary import Prober, probe_settings

    dep = {"state_dir": "/var/lib/bg", "watch_seconds": 15}
    cfg = cfg_of(deploy=dep, nginx={"validate_path": "/"})
    r = watch.rules(SimpleNamespace(cfg=cfg))
    assert (r.on_too_few, r.min_requests, r.max_error_rate) == ("abort", 15, 0.01)
    assert watch.rules(SimpleNamespace(cfg=cfg_of(deploy={**dep, "watch_seconds": 600}))).min_requests == 50
    assert watch.rules(SimpleNamespace(cfg=cfg_of(deploy={**dep, "watch_seconds": 0.5}))).min_requests == 1
    assert probe_settings(cfg) == (("/",), 0.5, 5.0)
    p = Prober(cfg, "", "green")
    assert (p.paths, p.token, p.sent_ids()) == (("/",), "", set())
    for choice, expect in (("abort", "abort"), ("extend", "abort"), ("promote", "promote")):
        c = cfg_of(deploy=dep, canary={"min_requests": 7, "on_too_few": choice, "probe_paths": ["/a", "/b"],
                                       "probe_interval": 0.2, "probe_timeout": 1})
        r = watch.rules(SimpleNamespace(cfg=c))
        assert (r.on_too_few, r.min_requests) == (expect, 7), choice
        assert probe_settings(c) == (("/a", "/b"), 0.2, 1.0)


# ---------------------------------------------------------------------------------- the latency baseline

def _entries(*lines):
    from bluegreen_hooks.observe.clients import parse_line

    out = [parse_line(x) for x in lines]
    assert None not in out
    return out


def test_the_baseline_is_the_old_colours_successful_client_attempts_just_before_the_switch():
    """observe/baseline.of: blue's answered attempts in the 60 s before the switch only: not after it, not older,
    not green's, not a failed attempt (502, 5xx, a client that gave up), but blue's answer after a retry of a
    failed green attempt; the last MAX_SAMPLES are kept; p95/p99 and the span they cover."""
    from bluegreen_hooks.observe import baseline
    from tests.test_clients import COLOUR, NEW, OLD, line

    t = 1_700_000_000.0
    ok = [line(addr=OLD, urt=f"{0.1 + i / 1000:.3f}", msec=f"{t - 50 + i / 10:.3f}") for i in range(100)]
    noise = [line(addr=OLD, urt="9.000", msec=f"{t - 61:.3f}"),                    # older than the window
             line(addr=OLD, urt="9.000", msec=f"{t + 1:.3f}"),                     # after the switch
             line(addr=NEW, urt="9.000", msec=f"{t - 1:.3f}"),                     # the other colour
             line(addr=OLD, status="502", ustatus="502", urt="9.000", msec=f"{t - 1:.3f}"),
             line(addr=OLD, status="500", ustatus="500", urt="9.000", msec=f"{t - 1:.3f}"),
             line(addr=OLD, status="499", ustatus="-", urt="9.000", msec=f"{t - 1:.3f}"),
             line(addr=f"{NEW}, {OLD}", ustatus="502, 200", uct="-, 0.001", urt="0.000, 0.050", msec=f"{t - 2:.3f}")]
    b = baseline.of(_entries(*ok, *noise), COLOUR, "blue", t)
    assert (b.colour, b.samples, b.why) == ("blue", 101, "")
    assert (b.p95, b.p99) == (0.194, 0.198), b          # nearest rank of 0.050 (the retry), 0.100 .. 0.199
    assert b.seconds == pytest.approx(50.0, abs=0.01)
    last = baseline.of(_entries(*ok), COLOUR, "blue", t, limit=10)
    assert (last.samples, last.p95) == (10, 0.199) and last.seconds == pytest.approx(50 - 9.0, abs=0.01)
    none = baseline.of(_entries(*noise[:3]), COLOUR, "blue", t)
    assert (none.samples, none.p95, none.seconds) == (0, None, 0.0)


def test_the_baseline_says_what_the_watch_judges_and_survives_the_state():
    """The output line: the figures, or why latency is not judged (too few, none logged); the state round trip
    keeps the figures and turns a missing, other colour's or hostile record into an empty baseline (errors only)."""
    from bluegreen_hooks.observe.baseline import Baseline

    b = Baseline("blue", 340, 0.2104, 0.25, 12.34)
    assert b.describe(20) == ("latency baseline of blue: 340 clients' requests in the 12.3s before the switch, "
                              "p95 0.210s, p99 0.250s")
    assert Baseline("blue", 30, 0.2, 0.3, 2.0).describe(20).endswith("p95 0.200s")        # p99 needs 100
    assert Baseline("blue", 5, 0.2, 0.2, 1.0).describe(20).endswith(
        "fewer than the 20 a p95 needs: the watch judges errors, not latency")
    assert Baseline("blue", why="nginx did not log clients before the switch").describe(20) == (
        "no latency baseline of blue (nginx did not log clients before the switch): the watch judges errors, "
        "not latency")
    assert Baseline.from_json(b.to_json(), "blue") == Baseline("blue", 340, 0.2104, 0.25, 12.34)
    assert Baseline.from_json(b.to_json(), "green").samples == 0                          # another colour's
    assert Baseline.from_json(None, "blue").why == "none was recorded at the switch"
    for hostile in ({"colour": "blue", "samples": True, "p95": 0.1}, {"colour": "blue", "samples": 50, "p95": -1},
                    {"colour": "blue", "samples": 50, "p95": "0.1"}, {"colour": "blue", "samples": -3, "p95": 0.1}):
        assert Baseline.from_json(hostile, "blue").samples == 0, hostile


def test_the_watch_judges_latency_against_the_baseline_before_the_switch():
    """judge(..., baseline=): the new colour's p95 against the old colour's before the switch (the window's own
    old tally, retries only, is not used); too small a baseline leaves latency unjudged with a note."""
    from bluegreen_hooks.observe.baseline import Baseline
    from bluegreen_hooks.observe.judgement import Rules, judge
    from tests.test_clients import fill

    r = Rules(max_error_rate=0.01, min_requests=50)
    retries = fill(3, latency=0.9)                       # the window's old tally: a few slow retries
    slow = judge(fill(100, latency=1.0), retries, r, baseline=Baseline("blue", 500, 0.2, 0.21, 30.0))
    assert slow.outcome == "abort", slow
    assert slow.reasons == ("p95 1.000s vs old 0.200s before the switch (more than 2x and 100 ms above)",
                            "p99 1.000s vs old 0.210s before the switch (more than 2x and 100 ms above)")
    fine = judge(fill(100, latency=0.25), retries, r, baseline=Baseline("blue", 500, 0.2, 0.21, 30.0))
    assert fine.outcome == "ok" and not fine.notes, fine
    few = judge(fill(100, latency=1.0), retries, r, baseline=Baseline("blue", 5, 0.2, 0.2, 1.0))
    assert few.outcome == "ok" and few.notes[0] == "p95 not judged: 100 new / 5 old latencies before the switch " \
                                                   "(needs 20 each)", few
    assert judge(fill(100, latency=1.0), retries, r, baseline=Baseline("blue", 5, 0.2, 0.2, 1.0),
                 can_wait=True).outcome == "wait"
    later = judge(fill(100, latency=1.0), retries, r, baseline=Baseline("blue", 500, 0.2, 0.21, 30.0), latency=False)
    assert later.outcome == "ok" and not later.notes, later          # the window judges latency at its end
    p95_only = judge(fill(100, latency=1.0), retries, r, baseline=Baseline("blue", 100, 0.2, None, 5.0))
    assert p95_only.outcome == "abort" and "p99 not judged: no old p99 before the switch" in p95_only.notes


@pytest.mark.parametrize("form", ["set", "upstream"])
def test_the_baseline_include_routes_as_the_plain_one_logs_and_passes_nginx_test(tmp_path, form):
    """host/nginx_watch.render_baseline: the plain include of the live colour (same lines), its marker read as
    that colour's and as the baseline form (not a canary or watch form), and the clients log; `nginx -t` accepts
    it (set form: with the log format in our http-level file)."""
    from bluegreen_hooks.host import nginx, nginx_canary
    from bluegreen_hooks.host.nginx_canary import include_split

    cfg, _ = _nginx_tree(tmp_path, form, http_log=f"access_log {tmp_path}/theirs.log;")
    found = user_access_logs(cfg)
    assert found.problem is None, found.problem
    if found.format_file:
        nginx_canary.write_format_file(cfg, found.format_file)
    text = nginx_watch.render_baseline(cfg, "blue", "d-old", found.restated)
    plain = nginx.render_include(cfg, "blue", "d-old")
    assert text.startswith(plain.splitlines()[0] + " baseline=on\n")
    assert all(ln in text for ln in plain.splitlines()[1:])
    assert f"access_log {nginx_canary.clients_log(cfg)} bluegreen_shop" in text
    assert all(r in text for r in found.restated) and (found.restated or form == "upstream")
    assert nginx.include_colour(cfg, text) == "blue" and nginx_watch.include_baseline(cfg, text) == "blue"
    assert nginx_watch.include_watch(cfg, text) is None and include_split(cfg, text) is None
    assert nginx_watch.include_baseline(cfg, plain) is None
    assert nginx_watch.include_baseline(cfg_of(app="other"), text) is None
    cfg.nginx.include.write_text(text)
    proc = subprocess.run(list(cfg.nginx.test), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + text
