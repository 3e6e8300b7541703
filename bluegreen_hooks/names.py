"""Names that reach Docker, compose and nginx: valid for them, not just for us; deployment ids and our operations' ids.

The app name becomes the container name ``<app>-<colour>``, the image repository ``bluegreen-<app>``
and (with [compose]) the project ``<app>-<colour>``; container/image is pulled as written. Docker's
reference grammar (distribution/reference ``regexp.go``)::

    reference      := name [ ":" tag ] [ "@" digest ]
    name           := [domain "/"] path-component ["/" path-component]*     (at most 255 characters)
    domain         := host [":" port]          host := domain-name | "[" IPv6 "]"
    path-component := alpha-numeric [separator alpha-numeric]*
    alpha-numeric  := [a-z0-9]+                separator := [_.] | "__" | "-"+
    tag            := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest         := algorithm ":" hex        (hex: 32 or more)

compose's project names are ``[a-z0-9][a-z0-9_-]*`` (config/compose.py checks the project of each
colour). Every pattern is used with ``fullmatch``. Pure.
"""
from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from typing import Literal

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,256}"
_NAME = rf"(?:{_DOMAIN}/)?{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"

# the app: one path component (so that bluegreen-<app> is a repository and <app>-blue a container name)
APP = re.compile(rf"(?=[a-z0-9._-]{{1,63}}\Z){PATH_COMPONENT}")
APP_WHAT = ("a name of lowercase letters and digits, optionally separated by one '.', one '_', '__' or "
            "'-' (as Docker image names are), at most 63 characters, e.g. \"shop\" or \"shop-api\"")
IMAGE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?")
IMAGE_WHAT = "an image reference such as \"nginx:1.25\" or \"registry.example.com/team/shop:1.4\""
# a CodeDeploy deployment id (d-XXXXXXXXX), a manual-… or an operation's rollback-… id (operation_id): what may
# reach a label, an image tag and the include's header line (bluegreen_hooks.model re-exports it)
DEPLOYMENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def is_deployment_id(value: object) -> bool:
    """True when ``value`` is a whole deployment id (``fullmatch``: no trailing newline slips through)."""
    return isinstance(value, str) and DEPLOYMENT_ID_RE.fullmatch(value) is not None


def is_image(value: str) -> bool:
    """True when ``value`` is a whole Docker image reference (name at most 255 characters)."""
    m = IMAGE.fullmatch(value) if len(value) <= 512 else None
    return m is not None and len(m.group("name")) <= 255


def operation_id(kind: Literal["rollback", "maintenance"], now: float | None = None, pid: int | None = None) -> str:
    """``<kind>-<UTC timestamp>-<pid>``: the id an operator's rollback or maintenance change is claimed, recorded
    and audited under (unique per process, so two in the same second never share a claim)."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{stamp}-{os.getpid() if pid is None else pid}"
