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
