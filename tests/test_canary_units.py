"""The canary's pure parts and its nginx text: the [canary] table, the split include in both forms (accepted by
the real `nginx -t`), the 1/256 prefixes, the user's access_log lines found through the real `nginx -T`, the plan
check against appspec.yml, and decide() on an interrupted canary."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bluegreen_hooks.config import parse
from bluegreen_hooks.decide import World, decide
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import nginx_canary
from bluegreen_hooks.host.nginx import render_include
from bluegreen_hooks.host.nginx_canary import Split, access_logs_for, prefix_regex, user_access_logs
from bluegreen_hooks.host.procfs import process_alive
from bluegreen_hooks.host.store import me
from bluegreen_hooks.lifecycle.canary import check_plan
from bluegreen_hooks.model import Canary, InProgress, Running, State
from bluegreen_hooks.observe.clients import log_format_directive

BASE = {"app": "shop", "container": {"image": "nginx:1.25"}, "deploy": {"state_dir": "/var/lib/bg"}}


def cfg_of(tmp_path=None, **tables):
    raw = {**BASE, **tables}
    return parse(raw, (tmp_path or Path("/srv/app")) / "bluegreen.toml", environ={}, check_files=False)


@pytest.mark.parametrize("canary, message", [
    ({"steps": []}, "canary/steps: should be a rising list of percents from 1 to 99 such as [10, 50], not []"),
    ({"steps": [50, 10]}, "canary/steps: should be a rising list of percents"),
    ({"steps": [10, 100]}, "canary/steps: should be a rising list of percents"),
    ({"steps": [True]}, "canary/steps: should be a rising list of percents"),
    ({"step_seconds": 0}, "canary/step_seconds: should be a number of seconds from 0.5 to 3600, not 0"),
    ({"max_wait": 5, "step_seconds": 10}, "canary/max_wait: should be at least canary/step_seconds (10), not 5"),
    ({"max_error_rate": 1}, "canary/max_error_rate: should be a share from 0 to below 1 such as 0.01 (1 %), not 1"),
    ({"min_requests": -1}, "canary/min_requests"),
    ({"step": 1}, "canary/step: unknown key (did you mean 'steps'?)"),
])
def test_bad_canary_values_are_refused_naming_the_key(canary, message):
    """Each bad [canary] value is refused with one line naming canary/<key>."""
    with pytest.raises(ConfigError) as err:
        cfg_of(canary=canary)
    assert message in str(err.value), str(err.value)


def test_canary_defaults():
    """[canary] with no keys: 10 then 50 %, 30 s steps, 50 requests, 1 %, 300 s."""
    cc = cfg_of(canary={}).canary
    assert (cc.steps, cc.step_seconds, cc.min_requests, cc.max_error_rate, cc.max_wait) == ((10, 50), 30, 50, 0.01, 300)
    assert cfg_of().canary is None


@pytest.mark.parametrize("share", range(1, 100))
def test_prefix_regex_matches_the_share_of_256_prefixes(share):
    """The set form's regex matches round(share x 256 / 100) of the 256 first-two-hex-digit prefixes."""
    rx = re.compile(prefix_regex(share))
    hits = sum(1 for i in range(256) if rx.match(f"{i:02x}" + "0" * 30))
    assert hits == round(share * 256 / 100)
    assert abs(nginx_canary.real_share(share) - share) <= 0.2


TOKEN = "0123456789abcdef0123456789abcdef"
SET_TEXT = """\
# bluegreen-hooks: app=shop colour=blue deployment=d-old canary=green:10 canary-deployment=d-new
# Written by bluegreen-hooks; edits are replaced at the next switch.
set $service_url http://127.0.0.1:8081;
set $bluegreen_colour blue;
if ($request_id ~ "^(?:[0]|1[0123456789])") {
    set $service_url http://127.0.0.1:8082;
    set $bluegreen_colour green;
}
if ($http_x_bluegreen_canary = "0123456789abcdef0123456789abcdef") {
    set $service_url http://127.0.0.1:8082;
    set $bluegreen_colour green;
}
access_log /var/lib/bg/shop.clients.log bluegreen_shop;
access_log /var/log/nginx/access.log;
"""

UPSTREAM_TEXT = """\
# bluegreen-hooks: app=shop colour=blue deployment=d-old canary=green:10 canary-deployment=d-new
# Written by bluegreen-hooks; edits are replaced at the next switch.
LOG_FORMAT
map $http_x_bluegreen_canary $bluegreen_pick_shop {
    "0123456789abcdef0123456789abcdef" "bluegreen-3";
    default $request_id;
}
upstream shop_backend {
    hash $bluegreen_pick_shop;
    server 127.0.0.1:8081 weight=90;
    server 127.0.0.1:8082 weight=10;
}
map $proxy_host $bluegreen_proxied_shop {
    shop_backend 1;
    default "";
}
map $upstream_addr $bluegreen_colour {
    "~(^|, )(?:127\\.0\\.0\\.1:8082)$" green;
    default blue;
}
access_log /var/lib/bg/shop.clients.log bluegreen_shop if=$bluegreen_proxied_shop;
""".replace("LOG_FORMAT", log_format_directive("bluegreen_shop"))


@pytest.mark.parametrize("form, expected, restated", [
    ("set", SET_TEXT, ("access_log /var/log/nginx/access.log;",)),
    ("upstream", UPSTREAM_TEXT, ()),
])
def test_render_split_include_exact_text(form, expected, restated):
    """The canary include, exactly, in both forms; the marker names the old colour, the canary and its share."""
    cfg = cfg_of(nginx={"form": form})
    split = Split("blue", "green", 10, "d-old", "d-new", restated, TOKEN)
    text = render_include(cfg, "blue", "d-old", split)
    assert text == expected
    assert nginx_canary.include_split(cfg, text) == ("blue", "green", 10)
    assert nginx_canary.include_split(cfg, render_include(cfg, "blue", "d-old")) is None


NGINX_MAIN = """\
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    {http_log}
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    {glob_include}
    {outer_include}
    server {{
        listen 127.0.0.1:1;
        {server_log}
        set $service_url "";
        set $bluegreen_colour "";
        {inner_include}
        location / {{ proxy_pass $service_url; }}
    }}
}}
"""


def _nginx_tree(tmp_path, form, http_log="", server_log="", canary=False,
                glob_include="include {d}/conf.d/*.conf;"):
    d = tmp_path / "ngx"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    (d / "conf.d").mkdir(exist_ok=True)
    include = d / "backend.inc"
    tables = {"nginx": {"form": form, "include": str(include), "test": [_nginx(), "-p", str(d), "-c",
                                                                        str(d / "nginx.conf"), "-t", "-q"]},
              "deploy": {"state_dir": str(d)}}
    cfg = cfg_of(tmp_path, **tables)
    include.write_text(render_include(cfg, "blue", "d-old"))
    (d / "nginx.conf").write_text(NGINX_MAIN.format(
        d=d, http_log=http_log, server_log=server_log, glob_include=glob_include.format(d=d),
        outer_include=f"include {include};" if form == "upstream" else "",
        inner_include=f"include {include};" if form == "set" else ""))
    if form == "upstream":
        conf = (d / "nginx.conf").read_text().replace("proxy_pass $service_url", "proxy_pass http://shop_backend")
        (d / "nginx.conf").write_text(conf)
    if canary:
        found = user_access_logs(cfg)
        assert found.problem is None, found.problem
        if found.format_file:
            nginx_canary.write_format_file(cfg, found.format_file)
        include.write_text(render_include(cfg, "blue", "d-old", Split("blue", "green", 10, "d-old", "d-new",
                                                                      found.restated, TOKEN)))
    return cfg, d


def _nginx():
    return shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.mark.parametrize("form, http_log, server_log, restated, problem", [
    ("set", "access_log {d}/theirs.log;", "", ("access_log {d}/theirs.log;",), None),
    ("set", "access_log {d}/a.log; access_log {d}/b.log combined buffer=32k;", "",
     ("access_log {d}/a.log;", "access_log {d}/b.log combined buffer=32k;"), None),
    ("set", "", "access_log {d}/server.log;", (), None),
    ("set", "access_log off;", "", (), None),
    ("set", "", "", ("access_log logs/access.log combined;",), None),
    ("set", "", "access_log off;", (), "`access_log off` in the server block"),
    ("upstream", "access_log {d}/theirs.log;", "", (), None),
    ("upstream", "", "", ("access_log logs/access.log combined;",), None),
    ("upstream", "access_log off;", "", (), "`access_log off` in the http block"),
])
def test_user_access_logs_found_through_the_effective_config(tmp_path, form, http_log, server_log, restated,
                                                              problem):
    """The access_log lines the canary must restate, read through the real `nginx -T` and crossplane."""
    d = tmp_path / "ngx"
    cfg, d = _nginx_tree(tmp_path, form, http_log.format(d=d), server_log.format(d=d))
    found = user_access_logs(cfg)
    assert found.restated == tuple(r.format(d=d) for r in restated)
    assert (found.problem or "").startswith(problem or ""), found.problem
    assert access_logs_for(d / "elsewhere.conf", cfg.nginx.include, form).problem


@pytest.mark.parametrize("form", ["set", "upstream"])
def test_canary_include_passes_the_real_nginx_test(tmp_path, form):
    """The rendered canary include (restating the user's log) is accepted by `nginx -t` in its form's context."""
    d = tmp_path / "ngx"
    cfg, d = _nginx_tree(tmp_path, form, http_log=f"access_log {d}/theirs.log;", canary=True)
    proc = subprocess.run(list(cfg.nginx.test), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + cfg.nginx.include.read_text()


def test_a_plan_longer_than_application_start_timeout_is_refused(tmp_path):
    """BeforeInstall refuses a step plan that cannot end within ApplicationStart's timeout in appspec.yml."""
    (tmp_path / "appspec.yml").write_text(
        "version: 0.0\nos: linux\nhooks:\n  ApplicationStart:\n    - location: hooks/ApplicationStart\n"
        "      timeout: 300\n")
    cfg = cfg_of(tmp_path, canary={"steps": [10, 50], "step_seconds": 60, "max_wait": 120})
    with pytest.raises(ConfigError) as err:
        check_plan(cfg)
    assert "canary: the step plan needs up to 510s" in str(err.value) and "ApplicationStart 300s" in str(err.value)
    ok = cfg_of(tmp_path, canary={"steps": [10], "step_seconds": 5, "max_wait": 10})
    assert check_plan(ok).startswith("canary plan fits: at most")


RUNNING = {"blue": Running("d-old", "img:old", "shop-blue"), "green": Running("d-new", "img:new", "shop-green")}


def test_decide_puts_traffic_back_on_the_old_colour_after_an_interrupted_canary():
    """The include still splits (its hook was killed): repair to the old colour, whatever nginx answers."""
    st = State("shop", live="blue", live_deployment="d-old")
    world = World("blue", "green", RUNNING, None, canary_old="blue")
    d = decide(st, world, "d-next", "BeforeInstall", me(), 1000.0, 900, process_alive)
    assert (d.repair, d.live, d.target) == ("blue", "blue", "green")
    assert d.canary and "interrupted canary" in d.canary.text()


def test_decide_uses_the_state_when_the_promote_was_written_but_the_hook_died():
    """The include already names green (promote written) but the state's canary still runs: back to blue."""
    ip = InProgress("d-new", "green", 900.0, stage="BeforeInstall", event="ApplicationStart", pid=2 ** 22 + 7,
                    pid_start=1, host=me().host, from_colour="blue",
                    canary=Canary("blue", "green", 50, step=1, started=950.0))
    st = State("shop", live="blue", live_deployment="d-old", in_progress=ip)
    world = World("green", "green", RUNNING, None)
    d = decide(st, world, "d-next", "BeforeInstall", me(), 1000.0, 900, process_alive)
    assert (d.repair, d.live, d.target) == ("blue", "blue", "green"), d
    abandoned = d.state.deployments[-1]
    assert abandoned["id"] == "d-new" and abandoned["outcome"] == "abandoned"
    assert abandoned["canary"]["phase"] == "aborted" and abandoned["canary"]["cause"].startswith("interrupted")


def test_state_round_trips_the_canary_and_long_lived():
    """The optional fields survive to_json/from_json; an old file without them still loads."""
    ip = InProgress("d-new", "green", 1.0, canary=Canary("blue", "green", 10, steps=[{"share": 10}]))
    st = State("shop", in_progress=ip, long_lived={"at": 1.0, "open": 2})
    back = State.from_json(st.to_json(), "shop")
    assert back.in_progress.canary == ip.canary and back.long_lived == {"at": 1.0, "open": 2}
    old = {k: v for k, v in st.to_json().items() if k != "long_lived"}
    old["in_progress"].pop("canary")
    assert State.from_json(old, "shop").in_progress.canary is None


@pytest.mark.parametrize("glob_include, problem", [
    ("", "no include glob in the http block picks up a file of ours"),
    ("include {d}/conf.d/one.conf;", "no include glob in the http block picks up a file of ours"),
    ("include {d}/conf.d/*.inc;", "no include glob in the http block picks up a file of ours"),
    ("include {d}/conf.d/*.conf;", None),
    ("include {d}/conf.d/*;", None),
])
def test_set_form_log_format_goes_next_to_an_http_level_glob(tmp_path, glob_include, problem):
    """log_format is http-only: the set form puts it in a file of ours that an http-level include glob reads
    (Debian's conf.d/*.conf); with none, BeforeInstall's check names what to add, in one line."""
    (tmp_path / "ngx" / "conf.d").mkdir(parents=True)
    (tmp_path / "ngx" / "conf.d" / "one.conf").write_text("")
    cfg, d = _nginx_tree(tmp_path, "set", glob_include=glob_include)
    found = user_access_logs(cfg)
    if problem is None:
        assert found.problem is None and found.format_file == d / "conf.d" / "bluegreen-hooks-shop.conf", found
        return
    assert found.format_file is None and problem in (found.problem or ""), found.problem
    assert f"add `include {d}/bluegreen-hooks/*.conf;` near the top of the http block of {d}/nginx.conf" \
        in (found.problem or "")
    assert "\n" not in (found.problem or "")


def test_set_form_log_format_glob_read_after_the_server_is_refused(tmp_path):
    """A glob nginx reads after the server block would define the format too late ("unknown log format")."""
    cfg, d = _nginx_tree(tmp_path, "set", glob_include="")
    conf = (d / "nginx.conf").read_text()
    (d / "nginx.conf").write_text(conf[:conf.rindex("}")] + f"    include {d}/conf.d/*.conf;\n}}\n")
    assert "read after the server block" in (user_access_logs(cfg).problem or "")


def test_set_form_format_file_not_ours_is_refused_and_ours_is_kept(tmp_path):
    cfg, d = _nginx_tree(tmp_path, "set")
    path = d / "conf.d" / "bluegreen-hooks-shop.conf"
    path.write_text("server { }\n")
    assert "exists and is not ours" in (user_access_logs(cfg).problem or "")
    path.unlink()
    assert nginx_canary.write_format_file(cfg, path) is True and nginx_canary.write_format_file(cfg, path) is False
    assert log_format_directive("bluegreen_shop") in path.read_text()


def test_upstream_hash_key_lands_on_the_second_server():
    """nginx's hash balancer: ((crc32(key) >> 16) & 0x7fff) % total picks the server by cumulative weight."""
    import zlib

    for share in (1, 10, 50, 99):
        key = nginx_canary.hash_key_for_second(100 - share, 100)
        assert ((zlib.crc32(key.encode()) >> 16) & 0x7FFF) % 100 >= 100 - share


def test_bad_token_is_never_written():
    cfg = cfg_of(nginx={"form": "set"})
    with pytest.raises(ValueError):
        render_include(cfg, "blue", "d-old", Split("blue", "green", 10, "d-old", "d-new", (), 'x"; return 200'))


def test_before_install_check_refuses_the_set_form_without_an_http_glob(tmp_path):
    """BeforeInstall's check (lifecycle/canary.check_logging) fails with one line naming what to add."""
    from bluegreen_hooks.errors import NginxError
    from bluegreen_hooks.lifecycle.canary import check_logging

    cfg, d = _nginx_tree(tmp_path, "set", glob_include="")
    with pytest.raises(NginxError) as err:
        check_logging(cfg)
    msg = str(err.value)
    assert msg.startswith('canary: cannot log what clients experience: nginx/form = "set" needs a log_format at '
                          "nginx's http level"), msg
    assert f"add `include {d}/bluegreen-hooks/*.conf;`" in msg and "\n" not in msg
