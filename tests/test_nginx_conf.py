"""Knowing nginx's config before touching it (host/nginx_conf.py) and proving a switch without the colour header.

Real nginx (the test bed's), real Docker, the real hooks: configs that cannot work are refused by
BeforeInstall before anything changes; a switch that did not take (the reload silently did nothing) is
caught in both verification modes and the previous include is restored.
"""
from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path

import pytest

from bluegreen_hooks.config import parse
from bluegreen_hooks.host import nginx_conf
from bluegreen_hooks.model import EVENTS
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.ports import free_port
from tests.helpers import get, ok

# the classic deploy.sh server block (no colour header): include glob inside the server block
ADOPT_SITE = """\
server {{
    listen 127.0.0.1:{port};
    include {conf_d}/*.inc;
    location / {{
        proxy_pass $service_url;
    }}
}}
"""
NOT_INCLUDED = """\
server {{
    listen 127.0.0.1:{port};
    set $service_url "";
    location / {{
        proxy_pass $service_url;
    }}
}}
"""
PROXY_FIXED = """\
server {{
    listen 127.0.0.1:{port};
    include {include};
    location / {{
        proxy_pass http://127.0.0.1:9;
    }}
}}
"""
OTHER_SERVER = """\
server {{
    listen 127.0.0.1:{port};
    set $service_url "";
    location / {{
        proxy_pass $service_url;
    }}
}}
server {{
    listen 127.0.0.1:{other};
    include {include};
    location / {{
        proxy_pass $service_url;
    }}
}}
"""


@pytest.fixture
def sites(nginx, tmp_path):
    made = []

    def add(template: str, legacy_port: int | None = None):
        conf_d = tmp_path / f"conf.d-{uuid.uuid4().hex[:6]}"
        initial = f"set $service_url http://127.0.0.1:{legacy_port or free_port()};\n"
        t = template.replace("{conf_d}", str(conf_d)).replace("{other}", str(free_port()))
        site = nginx.add_site(f"nc-{uuid.uuid4().hex[:8]}", conf_d / "backend-url.inc", initial, template=t)
        made.append(site)
        return site

    yield add
    for s in made:
        nginx.remove_site(s)


def _bundle(tmp_path, app, server, site, ports, version="v1", **overrides):
    cfg = bed_config(app, server, site, ports, tmp_path / "state", version, **overrides)
    return make_bundle(tmp_path / f"bundle-{version}-{uuid.uuid4().hex[:6]}", cfg)


@pytest.mark.parametrize("template, wanted", [
    (NOT_INCLUDED, "is not included in the server block at {conf}:1 that {url} reaches; "
                   "add in the server block at {conf}:1: include {include};"),
    (OTHER_SERVER, "is not included in the server block at {conf}:1 that {url} reaches; "
                   "add in the server block at {conf}:1: include {include};"),
    (PROXY_FIXED, "no proxy_pass in the server block at {conf}:1 uses the variable $service_url that the include "
                  "sets; add in the server block at {conf}:1: location / {{ proxy_pass $service_url; }}"),
], ids=["include-not-included", "include-in-another-server", "proxy-pass-without-variable"])
def test_configs_that_cannot_work_are_refused_before_anything_changes(template, wanted, sites, nginx, docker_client,
                                                                      app_name, tmp_path):
    """BeforeInstall reads `nginx -T` and refuses, naming the exact line to add; include, state, containers
    untouched."""
    site = sites(template)
    before = site.include.read_text()
    b = _bundle(tmp_path, app_name, nginx, site, (free_port(), free_port()))
    runs = deploy(b, "d-REFUSED01", events=("BeforeInstall",))
    out = runs[-1].output
    assert runs[-1].returncode == 1, out
    assert "nginx config refused, nothing changed" in out, out
    assert wanted.format(conf=site.conf, include=site.include, url=site.url) in out, out
    assert site.include.read_text() == before
    st = json.loads((tmp_path / "state" / f"{app_name}.json").read_text())   # only the audit record
    assert st["live"] is None and st["in_progress"] is None and st["events"][-1]["outcome"] == "failed"
    assert not docker_client.containers.list(all=True, filters={"label": f"bluegreen.app={app_name}"})


def test_the_deploy_sh_config_is_accepted_and_verified_by_worker_generation(sites, nginx, docker_client,
                                                                            app_name, tmp_path):
    """No header, include through a glob: deployments succeed, verified by worker generation + HTTP 200;
    a reload that silently does nothing is caught (no new generation) and the include restored."""
    ports = (free_port(), free_port())
    site = sites(ADOPT_SITE, legacy_port=ports[0])
    runs = ok(deploy(_bundle(tmp_path, app_name, nginx, site, ports, "v1"), "d-GENERAT01"))
    text = "\n".join(r.output for r in runs)
    assert "switches will be verified by worker generation + HTTP status" in text, text
    assert "verified by worker generation + HTTP 200" in text, text
    assert "(verified by HTTP 200 (include names blue; nginx sends no colour header))" in text, text
    assert get(site.url + "/")[1].strip() == "v1"
    include_v1 = site.include.read_text()

    stuck = _bundle(tmp_path, app_name, nginx, site, ports, "v2", nginx={"reload": ["true"], "verify_timeout": 3})
    runs = deploy(stuck, "d-GENERAT02")
    assert runs[-1].event == "ApplicationStart" and runs[-1].returncode == 1, runs[-1].output
    assert "did not prove the switch to green" in runs[-1].output
    assert "no new nginx worker generation" in runs[-1].output
    assert "previous include restored" in runs[-1].output
    assert site.include.read_text() == include_v1 and get(site.url + "/")[1].strip() == "v1"


def test_header_mode_catches_a_switch_that_did_not_take(site, nginx, docker_client, app_name, tmp_path):
    """With the colour header, the proof is the header: a reload that silently does nothing is caught."""
    ports = (free_port(), free_port())
    runs = ok(deploy(_bundle(tmp_path, app_name, nginx, site, ports, "v1"), "d-HEADER001"))
    text = "\n".join(r.output for r in runs)
    assert "switches will be verified by header (X-Bluegreen-Colour" in text, text
    assert "; verified by header)" in text and "(verified by header)" in text, text
    include_v1 = site.include.read_text()
    stuck = _bundle(tmp_path, app_name, nginx, site, ports, "v2", nginx={"reload": ["true"], "verify_timeout": 3})
    runs = deploy(stuck, "d-HEADER002")
    assert runs[-1].event == "ApplicationStart" and runs[-1].returncode == 1, runs[-1].output
    assert "does not answer from green (last: HTTP 200, X-Bluegreen-Colour: blue)" in runs[-1].output
    assert site.include.read_text() == include_v1
    _status, body, headers = get(site.url + "/")
    assert body.strip() == "v1" and headers.get("X-Bluegreen-Colour") == "blue"


def test_the_verify_mode_is_decided_once_per_deployment(bed, tmp_path):
    """How a switch is proven (header or worker generation) comes from `nginx -T` (nginx/dump, here counting its
    runs) once per deployment: BeforeInstall's config check reads it, ApplicationStart's first switch decides the
    mode and records it in the deployment's state, ValidateService reuses it without a dump; the next deployment
    decides again. What the hooks say is unchanged (verified by header)."""
    log = tmp_path / "dumps.log"
    log.touch()
    dump = tmp_path / "dump"
    real = " ".join(shlex.quote(a) for a in bed.nginx.argv("-T", "-q"))
    dump.write_text(f"#!/bin/sh\necho dump >> {shlex.quote(str(log))}\nexec {real}\n")
    dump.chmod(0o755)
    for version, dep in (("v1", "d-ONCE1"), ("v2", "d-ONCE2")):
        bundle = bed.bundle(version, nginx={"dump": [str(dump)]})
        dumps, outputs = {}, {}
        for event in EVENTS:
            before = len(log.read_text().splitlines())
            outputs[event] = ok(deploy(bundle, dep, events=(event,)))[0].output
            dumps[event] = len(log.read_text().splitlines()) - before
            if event == "ApplicationStart":
                assert bed.state()["in_progress"]["verify_mode"] == "header", bed.state()["in_progress"]
        assert dumps == {"ApplicationStop": 0, "BeforeInstall": 1, "ApplicationStart": 1, "ValidateService": 0}, dumps
        assert "; verified by header)" in outputs["ApplicationStart"], outputs["ApplicationStart"]
        assert "(verified by header)" in outputs["ValidateService"], outputs["ValidateService"]
        assert get(bed.url + "/")[1].strip() == version


# ---------------------------------------------------------------------------------- pure analysis of -T output

DUMP = """\
# configuration file /etc/nginx/nginx.conf:
events {}
http {
    server {
        listen 80 default_server;
        server_name other.example;
        location / { return 404; }
    }
    server {
        listen 80;
        server_name shop.example www.shop.example;
        include conf.d/*.inc;
        add_header X-Bluegreen-Colour $bluegreen_colour always;
        location / { proxy_pass $service_url$request_uri; }
    }
    include /etc/nginx/up/*.conf;
    server { listen 8080; location / { proxy_pass http://shop_backend; } }
}

# configuration file /etc/nginx/conf.d/backend-url.inc:
set $service_url http://127.0.0.1:8081;

# configuration file /etc/nginx/up/shop.conf:
include /etc/nginx/up/bg.inc;

"""


def _cfg(**nginx) -> object:
    raw = {"app": "shop", "container": {"image": "shop:1"}, "nginx": {"test": ["nginx", "-t"], **nginx}}
    return parse(raw, Path("/srv/bluegreen.toml"), {}, check_files=False)


def test_analysis_picks_the_server_block_by_port_and_name_and_follows_relative_globs():
    found = nginx_conf.analyse(_cfg(public_url="http://shop.example/"), DUMP)
    assert found.ok and found.server is not None and found.server.line == 8, found.problems
    assert found.include is not None and found.include.args == ("/etc/nginx/conf.d/*.inc",)
    assert found.mode == "header"
    other = nginx_conf.analyse(_cfg(public_url="http://127.0.0.1/"), DUMP)   # no name matches: default_server
    assert other.server is not None and other.server.line == 3 and not other.ok
    assert other.fixes[0] == \
        "in the server block at /etc/nginx/nginx.conf:3: include /etc/nginx/conf.d/backend-url.inc;"


def test_analysis_of_the_upstream_form_wants_the_include_in_http():
    cfg = _cfg(public_url="http://127.0.0.1:8080/", form="upstream", include="/etc/nginx/up/bg.inc")
    found = nginx_conf.analyse(cfg, DUMP)
    assert found.ok, found.problems
    assert found.mode == "generation" and found.proxied[0].args == ("http://shop_backend",)
    assert nginx_conf.header_lines(cfg) == ["add_header X-Bluegreen-Colour $bluegreen_colour always;"]


def test_dump_defaults_follow_nginx_test_and_use_sudo_for_a_non_root_user():
    raw = {"app": "shop", "container": {"image": "shop:1"}}
    as_user = parse(raw, Path("/srv/bluegreen.toml"), {}, check_files=False, as_root=False).nginx
    assert as_user.test == ("sudo", "-n", "nginx", "-t") and as_user.dump == ("sudo", "-n", "nginx", "-T")
    assert as_user.reload[:2] == ("sudo", "-n")
    raw["nginx"] = {"test": ["/usr/sbin/nginx", "-p", "/x", "-t", "-q"]}
    as_root = parse(raw, Path("/srv/bluegreen.toml"), {}, check_files=False, as_root=True).nginx
    assert as_root.dump == ("/usr/sbin/nginx", "-p", "/x", "-T", "-q")


def test_the_deployment_verify_mode_is_read_once_recorded_and_reused(tmp_path):
    """lifecycle/steps.verify_mode: a deployment's first call runs nginx/dump and records the mode in its in_progress
    record; its later calls (later steps, later events) read it back without a dump; another deployment decides
    again; a dump that cannot be read gives "generation", not recorded (the next step reads again)."""
    from bluegreen_hooks.host.store import Store
    from bluegreen_hooks.lifecycle import steps
    from bluegreen_hooks.model import InProgress

    text, runs = tmp_path / "dump.txt", tmp_path / "runs"
    text.write_text(DUMP)
    raw = {"app": "shop", "container": {"image": "shop:1"}, "deploy": {"state_dir": str(tmp_path / "state")},
           "nginx": {"test": ["nginx", "-t"], "dump": ["sh", "-c", f"echo run >> {runs}; cat {text}"],
                     "public_url": "http://shop.example/"}}
    cfg = parse(raw, Path("/srv/bluegreen.toml"), {}, check_files=False)
    store = Store(cfg.state_dir, "shop")

    def mode(deployment_id: str) -> tuple[str, int, str | None]:
        got = steps.verify_mode(steps.Context(cfg, deployment_id, "ApplicationStart", lambda line: None))
        ip = store.read().state.in_progress
        return got, len(runs.read_text().splitlines()), ip.verify_mode if ip is not None else None

    with store.update() as st:
        st.in_progress = InProgress("d-1", "green", 1.0)
    assert mode("d-1") == ("header", 1, "header")
    assert mode("d-1") == ("header", 1, "header")           # reused: no second dump
    with store.update() as st:
        st.in_progress = InProgress("d-2", "blue", 2.0)
    text.write_text("not the output of nginx -T\n")
    assert mode("d-2") == ("generation", 2, None)            # unreadable: the weaker proof, not recorded
    text.write_text(DUMP)
    assert mode("d-2") == ("header", 3, "header")
