"""Notifications: one JSON POST to [notify] webhook (and/or one SNS message) when a deployment succeeds or
fails, a rollback ends, a canary aborts or maintenance changes.

``send(cfg, kind, fields, say)`` never raises and never takes much longer than notify/deadline: each
attempt's timeout is notify/timeout (cut to what is left of the deadline), transient failures
(connection errors, timeouts, HTTP 5xx and 429) are retried with the package's tenacity policy
(host/wait.retrying), anything else is not. A notification that is not delivered is one ``WARN`` line
(the caller counts it in the metrics). Secrets stay out of every line: the auth header's value is read
from notify/auth_file or notify/auth_env and never printed, and a webhook is named by its scheme, host
and port only (a Slack webhook's path is a secret too).

``format = "slack"`` sends Slack's ``{"text", "blocks"}`` instead of the plain JSON document.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Callable
from urllib.parse import urlsplit

from bluegreen_hooks.config import Config
from bluegreen_hooks.config.operability import NotifyConfig, check_webhook_url
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import files
from bluegreen_hooks.host.wait import retrying
from bluegreen_hooks.model import Say

KINDS = ("deployment_succeeded", "deployment_failed", "rollback_succeeded", "rollback_failed", "canary_aborted",
         "maintenance_on", "maintenance_off", "maintenance_failed")
_ICONS = {"succeeded": ":white_check_mark:", "failed": ":x:", "aborted": ":warning:", "on": ":construction:",
          "off": ":white_check_mark:"}


class _Transient(Exception):
    """Worth another attempt (connection refused or reset, timeout, HTTP 5xx or 429)."""


class _Permanent(Exception):
    """Not worth another attempt (HTTP 4xx, no URL, no boto3, deadline used up)."""


def document(cfg: Config, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document sent (format "json"): kind, app, host, time, then the caller's fields."""
    return {"kind": kind, "app": cfg.app, "host": socket.gethostname(), "at": round(time.time(), 3), **fields}


def summary(doc: Mapping[str, Any]) -> str:
    """One line for humans: what happened to which app, and the last line."""
    kind = str(doc.get("kind"))
    what, _, outcome = kind.rpartition("_")
    ident = doc.get("deployment") or doc.get("id") or ""
    seconds = f" in {doc['seconds']:.1f}s" if isinstance(doc.get("seconds"), (int, float)) else ""
    live = f"; {doc['live']} live" if doc.get("live") else ""
    head = f"{_ICONS.get(outcome, ':information_source:')} {doc.get('app')}: {what} {ident} {outcome}{seconds}{live}"
    return " ".join(head.split()) + (f" — {doc['last_line']}" if doc.get("last_line") else "")


def slack(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack-compatible payload (incoming webhooks take ``text`` and ``blocks``)."""
    text = summary(doc)
    context = f"host {doc.get('host')} · event {doc.get('event') or '-'} · kind {doc.get('kind')}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                                     {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}]}


def _secret(n: NotifyConfig) -> dict[str, str]:
    """The auth header (never logged), or {}; _Permanent naming only where it was to be read from."""
    if n.auth_file is None and not n.auth_env:
        return {}
    where = f"notify/auth_file ({n.auth_file})" if n.auth_file else f"notify/auth_env (${n.auth_env})"
    try:
        value = (files.read_text(n.auth_file, "notify/auth_file", 4096).strip() if n.auth_file
                 else os.environ.get(n.auth_env or ""))
    except ConfigError as exc:
        raise _Permanent(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Permanent(f"cannot read {where}: {type(exc).__name__}") from None
    if not value or any(c in value for c in "\r\n\0"):
        raise _Permanent(f"{where} is empty or not one line")
    return {n.auth_header: value.strip()}


def webhook_url(n: NotifyConfig) -> str:
    """notify/webhook, or the URL in notify/webhook_file (checked like the config's)."""
    if n.webhook:
        return n.webhook
    try:
        url = files.read_text(n.webhook_file, "notify/webhook_file", 8192).strip() if n.webhook_file else ""
    except ConfigError as exc:
        raise _Permanent(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Permanent(f"cannot read notify/webhook_file ({n.webhook_file}): {type(exc).__name__}") from None
    why = check_webhook_url(url)
    if why:
        raise _Permanent(f"notify/webhook_file ({n.webhook_file}): the URL {why}")
    return url


def where(url: str) -> str:
    """A webhook as it may be printed: scheme, host and port (no path, no query, no credentials)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Webhooks never follow a redirect: urllib would resend the auth header (and the body) to wherever the
    ``Location`` points, another origin included. A 3xx answer is a delivery failure, not retried."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        raise _Permanent(f"HTTP {code} redirect to {where(newurl)} refused: webhooks are never redirected (the auth "
                         f"header would go with it); set notify/webhook to the final URL")


class _Handler(urllib.request.HTTPHandler):
    """HTTP connections that ``_Tracked`` can shut down from another thread."""

    def __init__(self, tracked: list[http.client.HTTPConnection]) -> None:
        super().__init__()
        self.tracked = tracked

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connect(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            conn = http.client.HTTPConnection(*args, **kwargs)
            self.tracked.append(conn)
            return conn
        return self.do_open(connect, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, tracked: list[http.client.HTTPConnection]) -> None:
        super().__init__()
        self.tracked = tracked

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        def connect(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            conn = http.client.HTTPSConnection(*args, **kwargs)
            self.tracked.append(conn)
            return conn
        return self.do_open(connect, req, context=self._context)  # type: ignore[attr-defined]


def within(seconds: float, call: Callable[[], object], cancel: Callable[[], None] = lambda: None) -> None:
    """Run ``call()`` with a wall-clock bound: in a daemon thread, waited for ``seconds``; past that, ``cancel()``
    (which should make it return) and _Transient. A socket timeout bounds each read, not the whole answer: a
    server trickling one byte per read would keep it going for ever."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:   # handed to the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, name="bluegreen-notify", daemon=True)
    worker.start()
    worker.join(max(0.0, seconds))
    if not outcome:
        cancel()
        worker.join(0.5)
        raise _Transient(f"timed out: no complete answer within {seconds:.1f}s (wall clock)")
    if outcome[0] is not None:
        raise outcome[0]


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """One POST, done within ``timeout`` seconds of wall clock; its status, or _Transient/_Permanent with the
    reason (never the URL's path or the headers). A redirect is never followed."""
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "bluegreen-hooks", **headers})
    tracked: list[http.client.HTTPConnection] = []
    opener = urllib.request.build_opener(_NoRedirect, _Handler(tracked), _HTTPSHandler(tracked))
    status: list[int] = []

    def attempt() -> None:
        try:
            with opener.open(req, timeout=timeout + 0.5) as resp:   # the wall clock (below) ends it first
                resp.read(65536)
                status.append(int(resp.status))
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise _Transient(f"HTTP {exc.code}") from None
            raise _Permanent(f"HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise _Transient(f"{type(exc.reason).__name__}: {exc.reason}"[:160]) from None
        except (OSError, http.client.HTTPException) as exc:   # socket.timeout is an OSError
            raise _Transient(f"{type(exc).__name__}: {exc}"[:160]) from None

    def cancel() -> None:   # shutdown() wakes a thread blocked in recv(); close() alone does not
        for conn in tracked:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    within(timeout, attempt, cancel)
    return status[0]


def publish_sns(arn: str, subject: str, message: str, timeout: float) -> None:
    """One SNS Publish through boto3 (when installed) within ``timeout`` seconds of wall clock, its own retries
    off: ours bound the time."""
    try:
        import boto3
        from botocore.config import Config as BotoConfig
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise _Permanent("boto3 is not installed on this host") from None
    client = boto3.client("sns", region_name=arn.split(":")[3], config=BotoConfig(
        connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"}))

    def attempt() -> None:
        try:
            client.publish(TopicArn=arn, Message=message, Subject=subject)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            if code in ("Throttling", "ThrottlingException", "InternalError", "ServiceUnavailable"):
                raise _Transient(f"SNS {code}") from None
            raise _Permanent(f"SNS {code}") from None
        except BotoCoreError as exc:
            raise _Transient(f"SNS {type(exc).__name__}") from None

    within(timeout, attempt)


def _deliver(n: NotifyConfig, kind: str, target: str, attempt: Callable[[float], object], say: Say,
             sleep: Callable[[float], None]) -> bool:
    """Call ``attempt(timeout)`` until it succeeds, fails for good, or notify/deadline is used up."""
    t0, tries, last = time.monotonic(), [0], ["no attempt"]

    def left() -> float:
        return n.deadline - (time.monotonic() - t0)

    def once() -> None:
        if left() < 0.05:
            raise _Permanent(f"{last[0]}; notify/deadline ({n.deadline:g}s) used up")
        tries[0] += 1
        try:
            attempt(min(n.timeout, left()))
        except _Transient as exc:
            last[0] = str(exc)
            raise

    def bounded_sleep(seconds: float) -> None:   # never wait past the deadline
        sleep(max(0.0, min(seconds, left())))

    try:
        for a in retrying(on=_Transient, timeout=n.deadline, interval=0.2, max_interval=1.0, sleep=bounded_sleep):
            with a:
                once()
        return True
    except (_Transient, _Permanent) as exc:
        say(f"WARN notification {kind} to {target} not delivered: {exc} ({tries[0]} attempt(s) in "
            f"{time.monotonic() - t0:.1f}s); the deployment is not affected")
        return False


def check(cfg: Config) -> None:
    """BeforeInstall's check of what a notification will read from the environment or a file (notify/auth_env,
    auth_file, webhook_file): ConfigError naming the key and the variable or file, before anything is built.
    A notification that later fails is still only a WARN."""
    n = cfg.notify
    if n is None or not (n.webhook or n.webhook_file):
        return
    try:
        webhook_url(n)
        _secret(n)
    except _Permanent as exc:
        raise ConfigError(f"{exc} (notifications would not be sent)") from None


def send(cfg: Config, kind: str, fields: Mapping[str, Any], say: Say, sleep: Callable[[float], None] = time.sleep
         ) -> bool:
    """Send one notification of ``kind`` (see KINDS) to every configured target; True when all got it.

    Never raises. The canary helper calls ``send(cfg, "canary_aborted", {...}, say)``."""
    n = cfg.notify
    if n is None:
        return True
    try:
        doc = document(cfg, kind, fields)
        ok = True
        if n.webhook or n.webhook_file:
            try:
                url, headers = webhook_url(n), _secret(n)
            except _Permanent as exc:
                say(f"WARN notification {kind} not sent: {exc}; the deployment is not affected")
                ok = False
            else:
                body = json.dumps(slack(doc) if n.format == "slack" else doc).encode("utf-8")
                ok = _deliver(n, kind, where(url), lambda t: post(url, body, headers, t), say, sleep)
        if n.sns_topic_arn:
            subject = summary(doc).encode("ascii", "replace").decode()[:99]
            ok = _deliver(n, kind, f"SNS topic {n.sns_topic_arn}",
                          lambda t: publish_sns(n.sns_topic_arn or "", subject, json.dumps(doc), t), say, sleep) and ok
        return ok
    except Exception as exc:   # a notification must never fail a deployment
        say(f"WARN notification {kind} failed: {type(exc).__name__}: {exc}"[:300])
        return False
