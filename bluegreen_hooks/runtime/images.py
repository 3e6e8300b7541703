"""Image ownership by label: every image bluegreen-hooks tags carries its app (and, for compose, its service).

Names alone cannot tell two apps apart (issue 25 #3: under the old naming the single-container app
``shop-web`` and the compose app ``shop``'s service ``web`` shared ``bluegreen-shop-web``, and one's
``keep_images`` deleted the other's releases). So:

* the repositories cannot collide: ``bluegreen-<app>`` (single container) and ``bluegreen-<app>/<service>``
  (compose): an app name is one path component (names.APP: no ``/``), so no app's repository is another's;
* every tag we make names an image labelled ``bluegreen.app=<app>`` (and ``bluegreen.service=<service>``):
  our own builds get the labels from the build; a pulled image or the image a compose service runs gets a
  label-only image on top (``FROM <id>`` + one ``LABEL`` line: no layer, cached by Docker after the first
  time, ~0.2 s); ``label`` below;
* pruning removes a tag only when its image's labels say this app (``owned``); a tag without our label is
  left alone unless the app's own release records name it (releases recorded before the labels).

``docker`` is imported lazily by the callers; this module needs only the client they pass.
"""
from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from bluegreen_hooks.runtime.base import LABEL_APP

LABEL_SERVICE = "bluegreen.service"


def _context(dockerfile: str) -> io.BytesIO:
    buf = io.BytesIO()
    data = dockerfile.encode("utf-8")
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def wanted_labels(app: str, service: str | None = None) -> dict[str, str]:
    return {LABEL_APP: app, **({LABEL_SERVICE: service} if service else {})}


def label(client: Any, source: str, repo: str, tag: str, labels: dict[str, str]) -> str:
    """Tag ``repo:tag`` on ``source`` (an image id or reference) carrying ``labels``; return its image id.

    When ``source`` already has them (our own build) it is only tagged; else a label-only image is built on
    it (``FROM`` the id, one ``LABEL`` line, no network, no pull)."""
    image = client.images.get(source)
    have = image.labels or {}
    if all(have.get(k) == v for k, v in labels.items()):
        image.tag(repo, tag)
        return str(image.id)
    line = " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(labels.items()))
    built, _log = client.images.build(fileobj=_context(f"FROM {image.id}\nLABEL {line}\n"), custom_context=True,
                                      tag=f"{repo}:{tag}", pull=False, rm=True, forcerm=True, network_mode="none")
    return str(built.id)


def owner(image: Any) -> str | None:
    """The app an image's labels name (None: not labelled by bluegreen-hooks)."""
    return (image.labels or {}).get(LABEL_APP) if image is not None else None


def owned(image: Any, app: str, recorded: bool = False) -> bool:
    """May ``app``'s pruning remove a tag of ``image``? When its labels say ``app``; an unlabelled image only
    when ``recorded`` (the app's own release record names the tag: releases recorded before the labels)."""
    who = owner(image)
    return who == app or (who is None and recorded)
