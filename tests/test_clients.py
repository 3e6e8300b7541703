"""observe/clients.py: the client-experience log line parser (torn lines, garbage, '-', retries, redirects), the
per-colour per-attempt tally, the Wilson bound, percentiles and judge() (errors, latency, too few); the format is
accepted by the real `nginx -t`; hypothesis fuzzes the parser."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bluegreen_hooks.observe import clients, stats
from bluegreen_hooks.observe.clients import Tally, parse_line, parse_lines, tally
from bluegreen_hooks.observe.judgement import Rules, judge

COLOUR = clients.colour_by_port({"blue": [8081], "green": [8082]})
OLD, NEW = "127.0.0.1:8081", "127.0.0.1:8082"


def line(status="200", addr=NEW, ustatus="200", urt="0.010", uct="0.001", probe="", msec="1700000000.123",
         rt="0.011", method="GET", agent="curl/8"):
    return json.dumps({"msec": msec, "status": status, "method": method, "request_time": rt, "upstream_addr": addr,
                       "upstream_status": ustatus, "upstream_response_time": urt, "upstream_connect_time": uct,
                       "agent": agent, "probe": probe})


def kinds(**kw):
    e = parse_line(line(**kw))
    assert e is not None
    return [clients.attempt_failure(e, i) for i in range(len(e.attempts))]


def test_failure_kinds_of_each_attempt():
    """Each nginx fact maps to one kind: 502 without a connection is refused, with one a reset; 504 timeout;
    other 5xx; 499 with the last attempt unanswered is the client giving up; 200 is no failure."""
    assert kinds() == [None]
    assert kinds(status="502", ustatus="502", uct="-", urt="0.000") == ["refused"]
    assert kinds(status="502", ustatus="502", uct="0.001") == ["reset"]
    assert kinds(status="504", ustatus="504", uct="0.001", urt="2.001") == ["timeout"]
    assert kinds(status="500", ustatus="500") == ["5xx"]
    assert kinds(status="499", ustatus="-", urt="1.500") == ["gave_up"]
    assert kinds(status="500", ustatus="-") == ["no_answer"]
    # a retry: the new colour refused, the old answered 200 — the new colour's attempt still failed
    assert kinds(addr=f"{NEW}, {OLD}", ustatus="502, 200", uct="-, 0.001", urt="0.000, 0.012") == ["refused", None]


def test_retry_across_colours_counts_against_the_new_one_even_when_saved():
    e = [parse_line(line(addr=f"{NEW}, {OLD}", ustatus="502, 200", uct="0.001, 0.001", urt="0.000, 0.012")),
         parse_line(line(addr=OLD))]
    t = tally([x for x in e if x], COLOUR)
    assert (t["green"].attempts, t["green"].failures, t["green"].saved) == (1, {"reset": 1}, 1)
    assert (t["blue"].attempts, t["blue"].failed, t["blue"].latencies) == (2, 0, [0.012, 0.010])


def test_internal_redirect_groups_and_dashes_are_flattened():
    """`a, b : c` (another upstream after an internal redirect) gives three attempts; '-' values are None."""
    e = parse_line(line(addr=f"{NEW}, {OLD} : 127.0.0.1:9000", ustatus="504, 404 : 200", urt="1.0, 0.1 : -",
                        uct="- , 0.001 : 0.002"))
    assert e is not None
    assert [a.addr for a in e.attempts] == [NEW, OLD, "127.0.0.1:9000"]
    assert [a.status for a in e.attempts] == [504, 404, 200]
    assert [a.response_time for a in e.attempts] == [1.0, 0.1, None]
    assert [a.connect_time for a in e.attempts] == [None, 0.001, 0.002]
    t = tally([e], COLOUR)
    assert t.unattributed == 1 and t["green"].failures == {"timeout": 1}


def test_no_upstream_and_group_names_are_not_given_to_a_colour():
    """A request nginx answered itself (addr '-') has no attempt; an upstream group's name (no server left)
    is unattributed."""
    e1 = parse_line(line(status="404", addr="-", ustatus="-", urt="-", uct="-"))
    e2 = parse_line(line(status="502", addr="shop_backend", ustatus="502", urt="0.000", uct="-"))
    assert e1 is not None and e1.attempts == ()
    t = tally([e1, e2], COLOUR)   # type: ignore[list-item]
    assert (t.unattributed, t.requests, dict(t.colours)) == (1, 2, {})
    assert COLOUR("[::1]:8082") == "green" and COLOUR("unix:/run/x.sock") is None and COLOUR("8082") is None


@pytest.mark.parametrize("raw", [
    "", "garbage", "{", "[]", "null", '{"msec":"x","status":"200"}', '{"msec":"1","status":"2000"}',
    '{"msec":"1","status":200}', '{"msec":"nan","status":"200"}', '{"msec":"1","status":"200","upstream_addr":5}',
    '{"msec":"-1","status":"200"}',
])
def test_garbage_lines_are_none(raw):
    assert parse_line(raw) is None


def test_torn_last_line_is_left_for_the_next_read(tmp_path):
    """Only whole lines are consumed: the reader resumes at the torn line once nginx finished it; garbage
    lines are skipped and counted; a log that shrank is read from its start."""
    log = tmp_path / "c.log"
    full, torn = line(), line(status="500", ustatus="500")
    log.write_bytes((full + "\nnot json\n" + torn[:20]).encode())
    r = clients.LogReader(log, offset=0)
    assert [e.status for e in r.read()] == [200] and r.skipped == 1
    assert r.read() == []
    with open(log, "ab") as f:
        f.write((torn[20:] + "\n").encode())
    assert [e.status for e in r.read()] == [500]
    log.write_bytes((line(status="201") + "\n").encode())     # recreated, shorter
    assert [e.status for e in r.read()] == [201]
    assert clients.LogReader(tmp_path / "missing.log").read() == []
    assert parse_lines(b"x" * (clients.MAX_LINE + 1)) == ([], clients.MAX_LINE + 1, 1)


def test_probes_are_counted_but_not_in_latency_and_only_with_our_ids():
    e = [parse_line(line(probe="p1", urt="0.5")), parse_line(line(probe="forged", urt="0.5")),
         parse_line(line(probe="p2", status="502", ustatus="502", uct="-"))]
    t = tally([x for x in e if x], COLOUR, probe_ids={"p1", "p2"})["green"]
    assert (t.attempts, t.probes, t.probe_failures, t.latencies) == (3, 2, 1, [0.5])


def test_wilson_bounds_and_percentiles():
    assert stats.wilson_lower(0, 50) == 0.0 and stats.wilson_lower(0, 0) == 0.0
    assert stats.wilson_lower(1, 50) < 0.01 < stats.wilson_lower(3, 50)
    assert stats.wilson_lower(3, 3) == pytest.approx(0.526, abs=0.005)
    assert stats.wilson_lower(1, 1) > 0.25
    assert stats.wilson_upper(0, 50) == pytest.approx(0.0513, abs=0.001)
    assert stats.percentile([], 95) is None
    assert stats.percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0 and stats.percentile([1.0], 99) == 1.0


def fill(n, failed=0, kind="5xx", latency=0.01, probes=0):
    return Tally(attempts=n, probes=probes, failures={kind: failed} if failed else {},
                 latencies=[latency] * (n - probes))


def test_judge_errors_latency_and_too_few():
    r = Rules(max_error_rate=0.01, min_requests=50)
    assert judge(fill(100), fill(900), r).outcome == "ok"
    v = judge(fill(100, 10), fill(900), r)
    assert v.outcome == "abort" and "failed 10.0 % (10 of 100: 5xx 10; 95 % lower bound" in v.reasons[0], v.reasons
    assert judge(fill(100, 1), fill(900), r).outcome == "ok"          # one error: the bound is below 1 %
    assert judge(fill(100, 10), fill(900, 90), r).outcome == "ok"     # both colours fail alike
    assert judge(fill(3, 3, "gave_up"), fill(30), r).outcome == "abort"   # harm aborts even when few
    slow = judge(fill(100, latency=0.2), fill(900, latency=0.01), r)
    assert slow.outcome == "abort" and slow.reasons[0].startswith("p95 0.200s vs old 0.010s"), slow.reasons
    assert judge(fill(100, latency=0.08), fill(900, latency=0.01), r).outcome == "ok"   # within the 100 ms margin
    assert judge(fill(100, latency=0.05), fill(900, latency=0.01), Rules(latency_margin=0.025)).outcome == "abort"
    assert judge(fill(100, latency=0.5), fill(900, latency=0.4), r).outcome == "ok"     # within 2x
    assert any(n.startswith("p99 not judged: 60 new / 60 old") for n in judge(fill(60), fill(60), r).notes)


@pytest.mark.parametrize("on, outcome", [("abort", "abort"), ("extend", "extend"), ("promote", "ok")])
def test_too_few_follows_on_too_few_and_says_so(on, outcome):
    r = Rules(min_requests=50, on_too_few=on)
    assert judge(fill(10), fill(900), r, can_wait=True).outcome == "wait"
    assert judge(fill(60, probes=50), fill(900), r, can_wait=True).outcome == "wait"   # 10 latencies: wait
    assert judge(fill(60, probes=50), fill(900), r).outcome == "ok"
    v = judge(fill(10), fill(900), r)
    assert v.outcome == outcome and f'on_too_few = "{on}"' in v.summary, v.summary
    assert "only 10 requests through the new colour (min_requests 50)" in v.summary


def test_verdict_json_has_the_figures():
    j = judge(fill(100, 10, "reset"), fill(900), Rules()).to_json()
    assert j["outcome"] == "abort" and j["new"]["failures"] == {"reset": 10} and j["old"]["p95"] == 0.01


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx not installed")
def test_the_log_format_is_accepted_by_nginx(tmp_path):
    """The directive is valid in nginx's http context, with the access_log that uses it."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n"
                    f"    {clients.log_format_directive('bluegreen_shop')}\n"
                    f"    server {{ listen 127.0.0.1:9; access_log {tmp_path}/c.log bluegreen_shop; }}\n}}\n")
    r = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------------------------- fuzzing

_value = st.one_of(st.text(max_size=20), st.sampled_from(["-", "", "200", "502", "0.001", "a, b", "a, b : c",
                                                          "127.0.0.1:8082, 127.0.0.1:8081", "502, -", " : "]))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(clients.FIELDS)), _value))
def test_fuzz_parse_line_any_fields(fields):
    """Any JSON object of our keys parses to an Entry or None, never raises; tally and judge take the result."""
    e = parse_line(json.dumps(fields))
    if e is not None:
        assert 100 <= e.status <= 999 and e.msec >= 0
        t = tally([e], COLOUR)
        judge(t["green"], t["blue"], Rules())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse_lines_any_bytes(data):
    """Any bytes: whole lines only are consumed, and everything consumed ends with a newline."""
    entries, used, bad = parse_lines(data)
    assert 0 <= used <= len(data) and (used == 0 or data[used - 1:used] == b"\n" or used == len(data))
    assert bad >= 0 and all(isinstance(x, clients.Entry) for x in entries)
