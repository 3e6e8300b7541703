"""Notifications received by a real local HTTP server (threaded http.server on 127.0.0.1) from real deployments,
maintenance changes and a Slack-format config; a server that hangs and one that answers 500 neither delay a
deployment past the bound nor fail it."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.cli import main
from bluegreen_hooks.errors import ConfigError
from testbed.bundle import deploy, toml_dumps
from tests.helpers import Bed, ok

TOKEN = "Bearer tok-9f8e7d6c5b4a"


class Receiver:
    """A webhook endpoint on 127.0.0.1: records every POST; ``mode`` "ok" (204), "500" or "hang"."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode, self.posts, self.release = mode, [], threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                    return
                self.send_response(500 if receiver.mode == "500" else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-path"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def kinds(self) -> list[str]:
        return [p["body"].get("kind") for p in self.posts]


@pytest.fixture
def receiver():
    made = []

    def make(mode="ok"):
        r = Receiver(mode)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def _no_state_dir_env(monkeypatch):
    monkeypatch.delenv(config_mod.STATE_DIR_ENV, raising=False)
    monkeypatch.delenv(config_mod.CONFIG_ENV, raising=False)


@pytest.fixture
def bed(docker_client, nginx, site, app_name, tmp_path):
    return Bed(app_name, docker_client, nginx, site, tmp_path)


@pytest.mark.parametrize("url, msg", [
    ("ftp://example.com/x", "should be an http:// or https:// URL with a host"),
    ("https:///nohost", "should be an http:// or https:// URL with a host"),
    ("http://127.0.0.1:99999/", "has a bad host or port"),
    ("https://hooks.example.com/a b", "should be an http(s) URL without spaces"),
])
def test_webhook_urls_are_validated_without_repeating_them(url, msg):
    """A bad webhook is refused naming the key, not the URL (a Slack webhook URL is a secret)."""
    with pytest.raises(ConfigError) as e:
        config_mod.parse({"app": "shop", "container": {"image": "a:1"}, "notify": {"webhook": url}},
                         Path("/srv/bluegreen.toml"))
    assert str(e.value) == f"bluegreen.toml: notify/webhook: {msg}"


def test_each_deployment_end_and_maintenance_change_posts_one_message(bed, receiver, tmp_path):
    """A success, a failure, maintenance on and off: one POST each with app, ids, colours, outcome, durations,
    the last line and the host; the auth header comes from its file and never appears in any output."""
    r = receiver()
    (tmp_path / "token").write_text(TOKEN + "\n")
    notify = {"notify": {"webhook": r.url, "auth_file": str(tmp_path / "token")}}
    runs = ok(deploy(bed.bundle("v1", **notify), "d-one"))
    assert r.kinds() == ["deployment_succeeded"]
    doc, headers = r.posts[0]["body"], r.posts[0]["headers"]
    assert headers["Authorization"] == TOKEN and headers["Content-Type"] == "application/json"
    assert (doc["app"], doc["deployment"], doc["outcome"], doc["live"], doc["target"]) == (
        bed.app, "d-one", "succeeded", "blue", "blue")
    assert doc["seconds"] > 0 and doc["timings"]["healthy"] > 0 and doc["host"] and doc["event"] == "ValidateService"
    assert doc["last_line"]

    bad = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "UNHEALTHY": "1"}}, health={"deadline": 3},
                     **notify)
    runs += deploy(bad, "d-two")
    assert r.kinds() == ["deployment_succeeded", "deployment_failed"]
    doc = r.posts[1]["body"]
    assert (doc["deployment"], doc["outcome"], doc["live"], doc["target"], doc["from"]) == (
        "d-two", "failed", "blue", "green", "blue")
    assert doc["last_line"] == runs[-1].last_line and doc["last_line"].startswith("ERROR ApplicationStart: green")

    assert main(["maintenance", "on", "--message", "brb", "--state-dir", str(bed.state_dir)]) == 0
    assert main(["maintenance", "off", "--state-dir", str(bed.state_dir)]) == 0
    assert r.kinds()[2:] == ["maintenance_on", "maintenance_off"]
    assert r.posts[2]["body"]["maintenance"]["message"] == "brb" and r.posts[3]["body"]["maintenance"] is None
    assert all(TOKEN not in run.output and "secret-path" not in run.output for run in runs)


def test_slack_format(bed, receiver, tmp_path, capsys):
    """format = "slack": Slack's {text, blocks} with a one-line summary."""
    r = receiver()
    ok(deploy(bed.bundle("v1"), "d-one"))
    cfg_path = tmp_path / "slack.toml"
    cfg = json.loads(json.dumps(config_mod.load(bed.state_dir / f"{bed.app}.toml", check_files=False).raw))
    cfg["notify"] = {"webhook": r.url, "format": "slack"}
    cfg_path.write_text(toml_dumps(cfg))
    assert main(["maintenance", "on", "--config", str(cfg_path)]) == 0
    assert main(["maintenance", "off", "--config", str(cfg_path)]) == 0
    on, off = (p["body"] for p in r.posts)
    assert set(on) == {"text", "blocks"} and on["blocks"][0]["text"]["text"] == on["text"]
    assert re.fullmatch(rf":construction: {bed.app}: maintenance maintenance-\S+ on in [0-9.]+s; blue live — "
                        rf"maintenance page: We are down for maintenance and will be back shortly\.", on["text"]), on
    assert off["text"].startswith(f":white_check_mark: {bed.app}: maintenance ") and "off" in off["text"]
    assert "secret-path" not in capsys.readouterr().out


@pytest.mark.parametrize("mode, cause", [("hang", "timed out"), ("500", "HTTP 500")])
def test_a_hanging_or_failing_webhook_neither_delays_nor_fails_the_deployment(bed, receiver, mode, cause):
    """The webhook hangs (or answers 500): retried within notify/deadline, then one WARN line and the failure
    counter; ValidateService ends within the bound and the deployment succeeds."""
    r = receiver(mode)
    prom = bed.tmp / "metrics" / f"{bed.app}.prom"
    extra = {"notify": {"webhook": r.url, "timeout": 0.5, "deadline": 1.5},
             "deploy": {"metrics_dir": str(prom.parent), "drain_timeout": 30}}
    runs = ok(deploy(bed.bundle("v1", **extra), "d-one"))
    validate = runs[-1]
    warn = [ln for ln in validate.output.splitlines() if "WARN notification deployment_succeeded" in ln]
    assert len(warn) == 1, validate.output
    assert cause in warn[0] and "the deployment is not affected" in warn[0], warn
    assert "secret-path" not in validate.output and f"to http://127.0.0.1:{r.server.server_address[1]} " in warn[0]
    seconds = float(re.search(r"attempt\(s\) in ([0-9.]+)s", warn[0]).group(1))
    assert seconds <= 1.5 + 0.3, warn[0]
    assert len(r.posts) >= 2                      # retried
    assert validate.seconds < 15, validate.seconds
    assert bed.state()["live"] == "blue" and bed.state()["deployments"][-1]["outcome"] == "succeeded"
    assert f'bluegreen_notifications_failed_total{{app="{bed.app}"}} 1.0' in prom.read_text()
