"""The operability keys: [maintenance], [notify], and deploy/during_maintenance, deploy/metrics_dir,
deploy/emf, deploy/emf_namespace (docs/operator.md). One parse function per table, as for the others.

Nothing here reaches nginx unchecked: the bypass header, cookie and addresses are refused unless they
match a strict pattern (a header or cookie name, an IP address written the way nginx writes
``$remote_addr``); the bypass token itself is read on the host when the maintenance page is rendered
(host/maintenance.py checks it there).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args
from urllib.parse import urlsplit

from bluegreen_hooks.config.reader import HEADER, IDENT, SAFE_PATH, Reader

During = Literal["refuse", "keep"]
NotifyFormat = Literal["json", "slack"]

DEPLOY_KEYS = ("during_maintenance", "metrics_dir", "emf", "emf_namespace")
MAINTENANCE_KEYS = ("retry_after", "message", "bypass_header", "bypass_cookie", "bypass_token_file",
                    "bypass_token_env", "bypass_addresses")
NOTIFY_KEYS = ("webhook", "webhook_file", "sns_topic_arn", "format", "timeout", "deadline", "auth_header",
               "auth_file", "auth_env")

DEFAULT_RETRY_AFTER = 120
DEFAULT_MESSAGE = "We are down for maintenance and will be back shortly."
DEFAULT_NOTIFY_TIMEOUT = 3.0
DEFAULT_NOTIFY_DEADLINE = 8.0
SNS_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]{1,32}:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
NAMESPACE = re.compile(r"[A-Za-z0-9_./#:-]{1,255}")
# what a maintenance message may hold: printable text without the characters nginx (or a shell) treats
# specially inside a quoted string: no $ (variables), \ and " (quoting), no control characters
MESSAGE = re.compile(r"[^\x00-\x1f\x7f$\\\"`]{1,300}")


@dataclass(frozen=True)
class MaintenanceConfig:
    """[maintenance] plus deploy/during_maintenance: the page's defaults, the operators' bypass, and what a
    deployment does while maintenance is on ("refuse" it, or "keep" maintenance on and deploy behind it)."""

    during: During = "refuse"
    retry_after: int = DEFAULT_RETRY_AFTER
    message: str = DEFAULT_MESSAGE
    bypass_header: str | None = None
    bypass_cookie: str | None = None
    bypass_token_file: Path | None = None
    bypass_token_env: str | None = None
    bypass_addresses: tuple[str, ...] = ()

    @property
    def bypass_token_source(self) -> str | None:
        """Where the bypass token is read from (for messages): never the token itself."""
        if self.bypass_token_file is not None:
            return f"maintenance/bypass_token_file ({self.bypass_token_file})"
        return f"maintenance/bypass_token_env (${self.bypass_token_env})" if self.bypass_token_env else None


@dataclass(frozen=True)
class MetricsConfig:
    """deploy/metrics_dir (a Prometheus textfile-collector folder) and deploy/emf ("stdout" or a file)."""

    dir: Path | None = None
    emf: str | None = None
    emf_namespace: str = "BlueGreenHooks"


@dataclass(frozen=True)
class NotifyConfig:
    """[notify]: where to send one message when a deployment ends, and the bounds on sending it."""

    webhook: str | None = None
    webhook_file: Path | None = None
    sns_topic_arn: str | None = None
    format: NotifyFormat = "json"
    timeout: float = DEFAULT_NOTIFY_TIMEOUT
    deadline: float = DEFAULT_NOTIFY_DEADLINE
    auth_header: str = "Authorization"
    auth_file: Path | None = None
    auth_env: str | None = None


def check_webhook_url(url: object) -> str | None:
    """Why ``url`` is not an acceptable webhook URL (None when it is): http(s), a host, no spaces."""
    if not isinstance(url, str) or not url or len(url) > 2048 or re.search(r"[\x00-\x20\x7f]", url):
        return "should be an http(s) URL without spaces"
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return "has a bad host or port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "should be an http:// or https:// URL with a host"
    return None


def parse_maintenance(top: Reader, deploy: Reader) -> MaintenanceConfig:
    """[maintenance] and deploy/during_maintenance."""
    during = deploy.string("during_maintenance", "refuse")
    if during not in get_args(During):
        deploy.fail("during_maintenance", f"should be \"refuse\" or \"keep\", not {during!r}")
    r = top.sub("maintenance", MAINTENANCE_KEYS)
    message = r.string("message", DEFAULT_MESSAGE)
    if not MESSAGE.fullmatch(message):
        r.fail("message", "should be printable text of at most 300 characters without $, \\, \" or `")
    addresses = r.get("bypass_addresses", [])
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        r.fail("bypass_addresses", f"should be a list of IP addresses, not {addresses!r}")
    canonical = []
    for a in addresses:
        try:
            canonical.append(str(ipaddress.ip_address(a)))
        except ValueError:
            r.fail("bypass_addresses", f"should be IP addresses such as \"203.0.113.7\" (no networks), not {a!r}")
    cfg = MaintenanceConfig(
        during=cast(During, during), retry_after=r.integer("retry_after", DEFAULT_RETRY_AFTER, 1, 86400, "seconds"),
        message=message, bypass_header=r.string("bypass_header", None, HEADER, "an HTTP header name"),
        bypass_cookie=r.string("bypass_cookie", None, IDENT, "a cookie name of letters, digits and _"),
        bypass_token_file=_path(r, "bypass_token_file"),
        bypass_token_env=r.string("bypass_token_env", None, IDENT, "an environment variable name"),
        bypass_addresses=tuple(canonical))
    if (cfg.bypass_header or cfg.bypass_cookie) and (cfg.bypass_token_file is None) == (cfg.bypass_token_env is None):
        r.fail("bypass_token_file", "set exactly one of maintenance/bypass_token_file or bypass_token_env "
                                    "(the secret the bypass header or cookie must carry)")
    return cfg


def _path(r: Reader, key: str) -> Path | None:
    value = r.string(key, None, SAFE_PATH, "an absolute path")
    return Path(value) if value else None


def parse_metrics(deploy: Reader) -> MetricsConfig:
    """deploy/metrics_dir, deploy/emf ("stdout" or an absolute file path) and deploy/emf_namespace."""
    emf = deploy.string("emf")
    if emf is not None and emf != "stdout" and not SAFE_PATH.fullmatch(emf):
        deploy.fail("emf", f"should be \"stdout\" or an absolute file path, not {emf!r}")
    return MetricsConfig(dir=_path(deploy, "metrics_dir"), emf=emf,
                         emf_namespace=deploy.string("emf_namespace", "BlueGreenHooks", NAMESPACE,
                                                     "a CloudWatch namespace"))


def parse_notify(top: Reader) -> NotifyConfig | None:
    """[notify]: a webhook (or a file holding its URL) and/or an SNS topic; None when the table is absent."""
    if top.get("notify") is None:
        return None
    r = top.sub("notify", NOTIFY_KEYS)
    webhook = r.string("webhook")
    why = check_webhook_url(webhook) if webhook is not None else None
    if why:
        r.fail("webhook", why)   # the URL itself is not repeated: a Slack webhook URL is a secret
    arn = r.string("sns_topic_arn", None, SNS_ARN, "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
    webhook_file = _path(r, "webhook_file")
    if webhook and webhook_file:
        r.fail("webhook_file", "set only one of notify/webhook or notify/webhook_file")
    if not (webhook or webhook_file or arn):
        r.fail("webhook", "set notify/webhook (or webhook_file) and/or notify/sns_topic_arn, or remove [notify]")
    fmt = r.string("format", "json")
    if fmt not in get_args(NotifyFormat):
        r.fail("format", f"should be \"json\" or \"slack\", not {fmt!r}")
    auth_file, auth_env = _path(r, "auth_file"), r.string("auth_env", None, IDENT, "an environment variable name")
    if auth_file and auth_env:
        r.fail("auth_env", "set only one of notify/auth_file or notify/auth_env")
    timeout = r.number("timeout", DEFAULT_NOTIFY_TIMEOUT, 0.1, 30)
    return NotifyConfig(webhook=webhook, webhook_file=webhook_file, sns_topic_arn=arn, format=cast(NotifyFormat, fmt),
                        timeout=timeout, deadline=r.number("deadline", max(DEFAULT_NOTIFY_DEADLINE, timeout), timeout,
                                                           120),
                        auth_header=r.string("auth_header", "Authorization", HEADER, "an HTTP header name"),
                        auth_file=auth_file, auth_env=auth_env)
