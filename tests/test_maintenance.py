"""Maintenance mode against the real test bed (Docker, nginx, hooks): on/off under load, the nginx -t failure
path, deployments during maintenance (refused, or kept behind the page), and the operators' bypass."""
from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.cli import main
from bluegreen_hooks.host import maintenance as page
from testbed.bundle import bed_config, deploy
from testbed.load import Load
from tests.helpers import Bed, ok, wait_for

MESSAGE = "Back at 10:00 <UTC> & 'soon' — ünïcode {x}; #1"

# the server block of docs/nginx.md, but with the include inside `location /` instead of at server level:
# a normal include works there, the maintenance include (named locations) fails `nginx -t`
LOCATION_SITE = """\
server {{
    listen 127.0.0.1:{port};
    set $service_url "";
    set $bluegreen_colour "";
    location / {{
        include {include};
        proxy_pass $service_url;
        add_header X-Bluegreen-Colour $bluegreen_colour always;
    }}
}}
"""


def request(url: str, path: str = "/", headers: dict | None = None, source: str | None = None):
    """One GET on a fresh connection (from ``source`` when given): (status, lower-cased headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def assert_maintenance_page(url: str, retry_after: int, message: str) -> None:
    """503 + Retry-After on every path, HTML by default, JSON for Accept: application/json; no colour header."""
    for path in ("/", "/health", "/style.css", "/cgi-bin/slow?0"):
        status, headers, body = request(url, path)
        assert (status, headers.get("retry-after")) == (503, str(retry_after)), (path, status, headers)
        assert headers["content-type"] == "text/html; charset=utf-8" and "x-bluegreen-colour" not in headers
        assert "<p>" + message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
            "'", "&#x27;") + "</p>" in body
    status, headers, body = request(url, "/api/x", {"Accept": "application/json"})
    assert (status, headers["content-type"], headers["retry-after"]) == (503, "application/json", str(retry_after))
    assert json.loads(body) == {"status": "maintenance", "message": message, "retry_after": retry_after}


def only_maintenance_answers(result) -> bool:
    """Every request got the maintenance 503 from nginx itself: no colour header (none was proxied to the app)."""
    return result.total > 0 and result.failures == {"http_503": result.total} and \
        all(s.header == "" for s in result.samples)


def test_maintenance_on_and_off_under_load(bed, capsys):
    """on: every request gets 503 + Retry-After from nginx (none reaches the app, none fails otherwise); off: the
    same colour serves again with 0 failed; status, history and the include show it."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    include_before = bed.include()
    with Load(bed.url + "/", threads=4) as switching_on:
        assert bed.cli("maintenance", "on", "--message", MESSAGE, "--retry-after", "42") == 0
    r = switching_on.result
    assert set(r.failures) <= {"http_503"} and r.versions_seen <= {"v1"}, r.summary()
    assert "maintenance on for" in capsys.readouterr().out

    with Load(bed.url + "/", threads=4, min_requests=300) as during:
        wait_for(lambda: during.result.total >= 300, what="300 requests during maintenance")
    assert only_maintenance_answers(during.result), during.result.summary()
    assert_maintenance_page(bed.url, 42, MESSAGE)
    assert "maintenance=" in bed.include() and "colour=blue deployment=d-one" in bed.include()
    assert bed.cli("status", "--json") == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["maintenance"]["colour"], s["maintenance"]["retry_after"], s["maintenance"]["message"]) == (
        "blue", 42, MESSAGE) and s["warnings"] == []
    assert bed.cli("status") == 0
    assert "maintenance  ON since" in capsys.readouterr().out

    with Load(bed.url + "/", threads=4) as switching_off:
        assert bed.cli("maintenance", "off") == 0
    r = switching_off.result
    assert set(r.failures) <= {"http_503"} and r.versions_seen == {"v1"}, r.summary()
    assert {s.header for s in r.samples if s.ok} == {"blue"}
    with Load(bed.url + "/", threads=4, min_requests=200) as after:
        wait_for(lambda: after.result.total >= 200, what="200 requests after maintenance")
    assert after.result.failed == 0 and after.result.versions_seen == {"v1"}, after.result.summary()
    assert bed.include() == include_before
    st = bed.state()
    assert st["maintenance"] is None and (st["live"], st["in_progress"]) == ("blue", None)
    assert [(e["event"], e["outcome"]) for e in st["events"][-2:]] == [("Maintenance", "on"), ("Maintenance", "off")]
    assert all(e["user"] and e["host"] and e["at"] for e in st["events"][-2:])
    capsys.readouterr()
    assert bed.cli("history", "-n", "2") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Maintenance" in lines[0] and " on " in lines[0] and " off " in lines[1]
    assert bed.cli("maintenance", "off") == 0
    assert "maintenance is not on" in capsys.readouterr().out


def test_failed_nginx_config_test_changes_nothing(docker_client, nginx, app_name, tmp_path, capsys):
    """The include sits inside a location, where the maintenance page's named locations fail `nginx -t`: the
    include is restored, nginx is not reloaded, the state has no maintenance, 0 failed requests."""
    site = nginx.add_site(f"loc-{app_name}", tmp_path / "conf.d" / "backend-url.inc", template=LOCATION_SITE)
    try:
        bed = Bed(app_name, docker_client, nginx, site, tmp_path)
        ok(deploy(bed.bundle("v1"), "d-one"))
        text, workers = bed.include(), nginx.worker_pids()
        capsys.readouterr()
        with Load(bed.url + "/", threads=4) as load:
            assert bed.cli("maintenance", "on") == 1
        assert load.result.failed == 0 and load.result.versions_seen == {"v1"}, load.result.summary()
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ERROR nginx config test failed"), err
        assert err[0].endswith("previous include restored, nginx not reloaded")
        assert bed.include() == text and nginx.worker_pids() == workers
        st = bed.state()
        assert st["maintenance"] is None and st["in_progress"] is None
        assert (st["events"][-1]["event"], st["events"][-1]["outcome"]) == ("Maintenance", "failed")
    finally:
        nginx.remove_site(site)


def test_bad_input_is_refused_before_anything_changes(bed, capsys, tmp_path):
    """A message nginx would interpret, a bad Retry-After, a missing bypass secret or the upstream form: exit 2,
    one ERROR line, include and state untouched."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    text, state = bed.include(), bed.state()
    capsys.readouterr()
    for argv, msg in ((["--message", "price: $request_uri"], "--message: should be printable text"),
                      (["--message", 'say "hi"'], "--message: should be printable text"),
                      (["--message", "two\nlines"], "--message: should be printable text"),
                      (["--retry-after", "0"], "--retry-after: should be a number of seconds from 1 to 86400")):
        assert bed.cli("maintenance", "on", *argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"ERROR {msg}"), err
    cfg = bed_config(bed.app, bed.nginx, bed.site, bed.ports, bed.state_dir,
                     maintenance={"bypass_header": "X-Ops", "bypass_token_file": str(tmp_path / "missing")})
    path = tmp_path / "with-bypass.toml"
    from testbed.bundle import toml_dumps
    path.write_text(toml_dumps(cfg))
    assert main(["maintenance", "on", "--config", str(path)]) == 2
    assert "cannot read the bypass token" in capsys.readouterr().err
    cfg["nginx"]["form"] = "upstream"
    del cfg["maintenance"]
    path.write_text(toml_dumps(cfg))
    assert main(["maintenance", "on", "--config", str(path)]) == 2
    assert "maintenance needs nginx/form = \"set\"" in capsys.readouterr().err
    assert bed.include() == text and bed.state()["events"] == state["events"]


def test_deployment_during_maintenance_is_refused_by_default(bed, capsys):
    """during_maintenance = "refuse" (the default): BeforeInstall fails naming maintenance; nothing changes."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    assert bed.cli("maintenance", "on") == 0
    text = bed.include()
    with Load(bed.url + "/", threads=2) as load:
        runs = deploy(bed.bundle("v2"), "d-two")
    assert only_maintenance_answers(load.result), load.result.summary()
    last = runs[-1]
    assert (last.event, last.returncode) == ("BeforeInstall", 1), last.output
    assert "maintenance is on since" in last.last_line and "deployments are refused" in last.last_line
    assert bed.include() == text and bed.running_colours() == ["blue"]
    st = bed.state()
    assert st["maintenance"] is not None and (st["live"], st["in_progress"]) == ("blue", None)
    assert bed.cli("maintenance", "off") == 0
    assert request(bed.url)[2].strip() == "v1"


def test_deployment_during_maintenance_kept_behind_the_page(bed, capsys):
    """during_maintenance = "keep": the deployment health-checks and validates green on its own port, the page
    stays up throughout, blue is retired, and `maintenance off` makes green (v2) live with 0 failed."""
    keep = {"deploy": {"during_maintenance": "keep"}}
    ok(deploy(bed.bundle("v1", **keep), "d-one"))
    assert bed.cli("maintenance", "on", "--message", "upgrading") == 0
    with Load(bed.url + "/", threads=4) as load:
        runs = ok(deploy(bed.bundle("v2", **keep), "d-two"))
    assert only_maintenance_answers(load.result), load.result.summary()
    out = "\n".join(r.output for r in runs)
    assert "deploying behind the maintenance page" in out and "validated on green's own port" in out, out
    assert "colour=green deployment=d-two maintenance=" in bed.include()
    assert_maintenance_page(bed.url, 120, "upgrading")
    st = bed.state()
    assert (st["live"], st["maintenance"]["colour"], bed.running_colours()) == ("green", "blue", ["green"])
    with Load(bed.url + "/", threads=4) as switching_off:
        assert bed.cli("maintenance", "off") == 0
    r = switching_off.result
    assert set(r.failures) <= {"http_503"} and r.versions_seen == {"v2"}, r.summary()
    with Load(bed.url + "/", threads=4, min_requests=100) as after:
        wait_for(lambda: after.result.total >= 100, what="100 requests")
    assert after.result.failed == 0 and after.result.versions_seen == {"v2"}, after.result.summary()
    assert {s.header for s in after.result.samples} == {"green"}


def test_operators_bypass_the_page_by_header_cookie_or_address(bed, tmp_path):
    """The configured header or cookie with the secret, or a listed source address, still reaches the app;
    a wrong secret or another address gets the page. The secret never appears in the command's output."""
    secret = tmp_path / "bypass-token"
    secret.write_text("s3cr3t-Token-0123456789\n")
    cfg = {"maintenance": {"bypass_header": "X-Ops-Bypass", "bypass_cookie": "ops_bypass",
                           "bypass_token_file": str(secret), "bypass_addresses": ["127.0.0.2"]}}
    ok(deploy(bed.bundle("v1", **cfg), "d-one"))
    assert bed.cli("maintenance", "on") == 0
    token = "s3cr3t-Token-0123456789"
    plain = request(bed.url)
    assert plain[0] == 503
    for kwargs in ({"headers": {"X-Ops-Bypass": token}}, {"headers": {"Cookie": f"a=b; ops_bypass={token}"}},
                   {"source": "127.0.0.2"}):
        status, headers, body = request(bed.url, **kwargs)
        assert (status, body.strip(), headers.get("x-bluegreen-colour")) == (200, "v1", "blue"), kwargs
    for kwargs in ({"headers": {"X-Ops-Bypass": token + "x"}}, {"headers": {"Cookie": "ops_bypass=nope"}},
                   {"source": "127.0.0.3"}):
        assert request(bed.url, **kwargs)[0] == 503, kwargs
    # our own check asks for the page even from a bypassed address
    marker = page.marker_of(bed.include())
    status, headers, _ = request(bed.url, headers={page.VERIFY_HEADER: marker}, source="127.0.0.2")
    assert (status, headers[page.MARKER_HEADER.lower()]) == (503, marker)
    assert bed.cli("maintenance", "off") == 0
    assert request(bed.url)[0] == 200
    assert token not in Path(bed.state_dir / f"{bed.app}.json").read_text()


# every placeholder name render() ever used, braces alone and doubled, and what str.format would take
PLACEHOLDER_MESSAGES = ["Back at 10:30 {json} UTC", "{html}{verify}{json}", "{message} {retry_after} {marker} {}",
                        "{{ }} {{json}} }{ {0} {!r}", "{json}" * 20]


@pytest.mark.parametrize("message", PLACEHOLDER_MESSAGES)
def test_placeholders_in_the_message_never_reach_the_include(message):
    """Issue 25, finding 8: the page template's placeholders were replaced after the message was in it, so
    "{json}" in the message took the JSON page's place and broke the include. Now the include holds exactly
    our two named locations, the message only as the escaped page, and the same marker everywhere."""
    cfg = config_mod.parse({"app": "shop", "container": {"image": "a:1"}}, Path("/srv/bluegreen.toml"))
    text, marker = page.render(cfg, "blue", "d-1", message, 120, None)
    html_page, json_doc = page.pages(message, 120)
    assert text.count("location @bluegreen_maintenance_html {") == 1
    assert text.count("location @bluegreen_maintenance_json {") == 1
    assert page._quoted(html_page) in text and page._quoted(json_doc) in text
    assert text.count(f'if ($http_x_bluegreen_verify = "{marker}")') == 1
    assert "{verify}" not in text.replace(page._quoted(html_page), "").replace(page._quoted(json_doc), "")


def test_maintenance_on_with_placeholders_and_braces_in_the_message(bed, capsys):
    """The issue's `maintenance on --message "Back at 10:30 {json} UTC"` (and every other placeholder name and
    brace form) against real nginx: nginx -t passes, the page carries the message as given, off restores."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    include_before = bed.include()
    for message in PLACEHOLDER_MESSAGES:
        assert bed.cli("maintenance", "on", "--message", message) == 0, capsys.readouterr()
        assert_maintenance_page(bed.url, 120, message)
        assert bed.cli("maintenance", "off") == 0
        assert bed.include() == include_before
    assert request(bed.url)[2].strip() == "v1"
