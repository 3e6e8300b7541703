"""Notifications received by a real local HTTP server (threaded http.server on 127.0.0.1) from real deployments,
maintenance changes and a Slack-format config; a server that hangs and one that answers 500 neither delay a
deployment past the bound nor fail it."""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.cli import main
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.observe import notify
from testbed.bundle import deploy, toml_dumps
from tests.helpers import ok

TOKEN = "Bearer tok-9f8e7d6c5b4a"


class Receiver:
    """A webhook endpoint on 127.0.0.1: records every request; ``mode`` "ok" (204), "500", "hang", "trickle" (a
    200 answer sent one byte every 0.5 s, for ever) or "302"/"307" (a redirect to ``location``)."""

    def __init__(self, mode: str = "ok", location: str = "") -> None:
        self.mode, self.posts, self.release, self.location = mode, [], threading.Event(), location
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append({"path": self.path, "headers": dict(self.headers), "method": self.command,
                                       "body": json.loads(body) if body.startswith(b"{") else body})
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                    return
                if receiver.mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 80:
                        if receiver.release.wait(0.5):      # paces the bytes; set at close
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    return
                if receiver.mode in ("302", "307"):
                    self.send_response(int(receiver.mode))
                    self.send_header("Location", receiver.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(500 if receiver.mode == "500" else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

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

    def make(mode="ok", location=""):
        r = Receiver(mode, location)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


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


@pytest.mark.parametrize("mode, cause, timeout, deadline", [("hang", "timed out", 0.5, 1.5),
                                                            ("500", "HTTP 500", 0.5, 1.5),
                                                            ("trickle", "wall clock", 1, 3)])
def test_a_hanging_or_failing_webhook_neither_delays_nor_fails_the_deployment(bed, receiver, mode, cause, timeout,
                                                                              deadline):
    """The webhook hangs, answers 500 or trickles its answer one byte every 0.5 s (issue 25, finding 2: that
    kept ValidateService 40 s with timeout=1, deadline=3): retried within notify/deadline, then one WARN line
    and the failure counter; ValidateService ends within the bound and the deployment succeeds."""
    r = receiver(mode)
    prom = bed.tmp / "metrics" / f"{bed.app}.prom"
    extra = {"notify": {"webhook": r.url, "timeout": timeout, "deadline": deadline},
             "deploy": {"metrics_dir": str(prom.parent), "drain_timeout": 30}}
    runs = ok(deploy(bed.bundle("v1", **extra), "d-one"))
    validate = runs[-1]
    warn = [ln for ln in validate.output.splitlines() if "WARN notification deployment_succeeded" in ln]
    assert len(warn) == 1, validate.output
    assert cause in warn[0] and "the deployment is not affected" in warn[0], warn
    assert "secret-path" not in validate.output and f"to http://127.0.0.1:{r.server.server_address[1]} " in warn[0]
    seconds = float(re.search(r"attempt\(s\) in ([0-9.]+)s", warn[0]).group(1))
    assert seconds <= deadline + 0.5, warn[0]
    assert len(r.posts) >= 2                      # retried
    assert validate.seconds < 15, validate.seconds
    assert bed.state()["live"] == "blue" and bed.state()["deployments"][-1]["outcome"] == "succeeded"
    assert f'bluegreen_notifications_failed_total{{app="{bed.app}"}} 1.0' in prom.read_text()


def _notify_cfg(**notify):
    return config_mod.parse({"app": "shop", "container": {"image": "a:1"}, "notify": notify},
                            Path("/srv/bluegreen.toml"))


@pytest.mark.parametrize("code", ["302", "307"])
def test_a_redirecting_webhook_is_not_followed_and_the_secret_stays_home(receiver, monkeypatch, code):
    """Finding 1 of issue 25: a webhook answering a redirect to another origin. urllib used to follow it, auth
    header included. Now no redirect is followed (not even to the same origin: a redirect is a delivery failure,
    not retried); the other origin gets nothing and one WARN line says why, without the secret or the path."""
    other = receiver()
    hook = receiver(code, location=other.url.replace("secret-path", "elsewhere"))
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    lines: list[str] = []
    assert notify.send(_notify_cfg(webhook=hook.url, auth_env="HOOK_TOKEN"), "maintenance_on", {},
                       lines.append, sleep=lambda s: None) is False
    assert len(hook.posts) == 1 and hook.posts[0]["headers"]["Authorization"] == TOKEN
    assert other.posts == []
    assert len(lines) == 1 and lines[0].startswith("WARN notification maintenance_on to http://127.0.0.1:"), lines
    assert f"HTTP {code} redirect to http://127.0.0.1:{other.server.server_address[1]} refused" in lines[0]
    assert TOKEN not in lines[0] and "secret-path" not in lines[0] and "elsewhere" not in lines[0]


def test_a_trickling_webhook_is_cut_at_the_deadline(receiver):
    """Finding 2 of issue 25: a webhook answering one byte every 0.5 s kept the caller 40 s with timeout=1 and
    deadline=3 (the socket timeout bounds each read, and every read got its byte). Now each attempt has a
    wall-clock bound: send() returns within the deadline (+ a small margin) with one WARN line."""
    r = receiver("trickle")
    lines: list[str] = []
    t0 = time.monotonic()
    assert notify.send(_notify_cfg(webhook=r.url, timeout=1, deadline=3), "maintenance_on", {}, lines.append) is False
    took = time.monotonic() - t0
    assert took < 3 + 1.5, (took, lines)
    assert len(lines) == 1 and "wall clock" in lines[0] and "not delivered" in lines[0], lines
    assert len(r.posts) >= 2                      # cut, then retried within the deadline


def test_a_trickling_sns_endpoint_is_cut_at_the_deadline(receiver, monkeypatch):
    """The SNS path has the same wall-clock bound (botocore's read_timeout is per read, too): an SNS endpoint
    (AWS_ENDPOINT_URL_SNS, botocore >= 1.31) trickling its answer is cut; send() returns within the deadline."""
    r = receiver("trickle")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", r.url.rsplit("/hooks", 1)[0])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    lines: list[str] = []
    t0 = time.monotonic()
    cfg = _notify_cfg(sns_topic_arn="arn:aws:sns:us-east-1:123456789012:deploys", timeout=1, deadline=3)
    assert notify.send(cfg, "maintenance_on", {}, lines.append) is False
    took = time.monotonic() - t0
    assert took < 3 + 1.5, (took, lines)
    assert len(lines) == 1 and "SNS topic" in lines[0] and "wall clock" in lines[0], lines
    assert r.posts, "the SNS request reached the local endpoint"
