"""Issue 25 #3: image ownership by label, not by name (runtime/images.py).

Under the old naming the single-container app ``<x>-web`` (``bluegreen-<x>-web:<id>``) and the compose app
``<x>``'s service ``web`` (``bluegreen-<x>-web:<id>`` too) shared one repository, and the first app's
``keep_images`` deleted the second's release tags: its rollback failed. Here both apps deploy on the real
daemon, the compose app's previous release is one recorded under the old naming (unlabelled tags, as the
hooks before this change left them), and the single-container app prunes hard (``keep_images = 1``).
"""
from __future__ import annotations

import contextlib
import json
import re
import uuid

import pytest
from docker.errors import APIError

from bluegreen_hooks.cli import main
from bluegreen_hooks.names import APP
from bluegreen_hooks.runtime import compose_release
from bluegreen_hooks.runtime.images import LABEL_SERVICE
from testbed import images
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.load import Load
from tests.helpers import Bed, ok

SERVICES = ("api", "web", "worker")


def _tags(client, prefix: str) -> set[str]:
    return {t for img in client.api.images() for t in img.get("RepoTags") or [] if t.startswith(prefix)}


def _as_recorded_before_labels(stack, deployment: str) -> None:
    """Make ``deployment``'s release what the old hooks recorded: each service's image tagged
    ``bluegreen-<app>-<service>:<deployment>`` (the image the container runs, no label of ours), the release's
    compose.yml and release.json naming those tags; the new ``bluegreen-<app>/<service>`` tags removed."""
    folder = stack.state_dir / f"{stack.app}.releases" / deployment
    meta = json.loads((folder / "release.json").read_text())
    text = (folder / "compose.yml").read_text()
    for svc, info in meta["images"].items():
        old = f"bluegreen-{stack.app}-{svc}"
        stack.client.api.tag(info["id"], old, deployment)
        text = text.replace(info["tag"], f"{old}:{deployment}")
        stack.client.images.remove(info["tag"])
        meta["images"][svc] = {"tag": f"{old}:{deployment}", "id": info["id"]}
    (folder / "compose.yml").write_text(text)
    (folder / "release.json").write_text(json.dumps(meta))


def test_tag_names_cannot_collide_between_apps():
    """``bluegreen-<app>/<service>``: an app name has no ``/``, so no compose repository is another app's, nor a
    single-container app's ``bluegreen-<app>``; services that are no valid path component get a hashed form."""
    assert not APP.fullmatch("shop/web") and APP.fullmatch("shop-web")             # config refuses a / in app
    assert compose_release.tag_name("shop", "web") == "bluegreen-shop/web"
    assert compose_release.tag_name("shop", "web") != "bluegreen-shop-web"        # the single app shop-web's
    odd = {compose_release.tag_name("shop", s) for s in ("Web", "web", "a..b", "_x", "a_b", "a-b")}
    assert len(odd) == 6
    for name in odd:
        assert re.fullmatch(r"bluegreen-shop/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", name), name


@pytest.mark.integration
def test_pruning_one_app_never_touches_another_whose_names_collided(stack, docker_client, nginx, tmp_path,
                                                                      example_images, capsys):
    """Compose app ``x`` (services web, api, worker; its previous release recorded under the old naming) and
    single-container app ``x-web`` (keep_images = 1; built, pulled, built): the single app's tags are
    labelled and pruned to what it keeps; ``x``'s live and previous release tags all survive and its rollback
    re-creates the previous release from them (0 failed requests); the single app's rollback works too."""
    ok(deploy(stack.per_colour_bundle("v1"), "d-c1"))
    ok(deploy(stack.per_colour_bundle("v2"), "d-c2"))
    live = {f"bluegreen-{stack.app}/{s}:d-c2" for s in SERVICES}
    assert live <= _tags(docker_client, f"bluegreen-{stack.app}/")
    for tag in live:                                   # every tag we made is labelled with the app and service
        labels = docker_client.images.get(tag).labels
        assert labels["bluegreen.app"] == stack.app and labels[LABEL_SERVICE] == tag.split("/")[1].split(":")[0]
    _as_recorded_before_labels(stack, "d-c1")
    previous = {f"bluegreen-{stack.app}-{s}:d-c1" for s in SERVICES}

    site = nginx.add_site(f"site-{uuid.uuid4().hex[:8]}", tmp_path / "single" / "conf.d" / "backend-url.inc")
    single = Bed(f"{stack.app}-web", docker_client, nginx, site, tmp_path / "single")
    try:
        for n, version in enumerate(("v1", "v2", "v3"), 1):    # built, pulled, built: the oldest one is pruned
            bundle = single.bundle(version, deploy={"keep_images": 1})
            if version == "v2":
                cfg = bed_config(single.app, nginx, site, single.ports, single.state_dir, deploy={"keep_images": 1})
                for key in ("build", "build_args", "build_network"):
                    cfg["container"].pop(key)
                cfg["container"]["image"] = example_images(version)   # pulled (offline: the local copy), labelled
                bundle = make_bundle(bundle, cfg)
            ok(deploy(bundle, f"d-s{n}"))
        assert previous <= _tags(docker_client, f"bluegreen-{stack.app}-"), "the other app's previous release"
        assert live <= _tags(docker_client, f"bluegreen-{stack.app}/"), "the other app's live release"
        mine = {t for t in _tags(docker_client, f"bluegreen-{single.app}:")
                if docker_client.images.get(t).labels.get("bluegreen.app") == single.app}
        assert mine == {f"bluegreen-{single.app}:d-s{n}" for n in (2, 3)}, mine   # live and previous (keep 1)

        for c in stack.project("blue"):               # the stopped release gone: re-created from its tags
            c.remove(force=True)
        with Load(stack.url + "/", threads=3) as load:
            code = main(["rollback", "--app", stack.app, "--state-dir", str(stack.state_dir)])
        out = capsys.readouterr()
        assert code == 0, out.out + out.err
        assert load.result.failed == 0 and load.result.versions_in_order == ["v2", "v1"], load.result.summary()
        assert {c.image.id for c in stack.project("blue")} == \
            {docker_client.images.get(t).id for t in previous}

        code = main(["rollback", "--app", single.app, "--state-dir", str(single.state_dir)])
        out = capsys.readouterr()
        assert code == 0, out.out + out.err
        assert single.state()["live_deployment"] == "d-s2"
    finally:
        nginx.remove_site(site)
        for c in docker_client.containers.list(all=True, ignore_removed=True,
                                               filters={"label": f"bluegreen.app={single.app}"}):
            with contextlib.suppress(APIError):
                c.remove(force=True)
        images.remove_app_images(docker_client, single.app)


@pytest.mark.integration
def test_compose_prune_removes_only_tags_whose_labels_say_this_app(docker_client, app_name, tmp_path):
    """compose_release.prune of two dropped releases of ``app``: the tag labelled with ``app`` goes, the one whose
    image another app's labels name stays (and its record goes: it is no longer this app's to bring back)."""
    from bluegreen_hooks.host import releases
    from bluegreen_hooks.runtime.images import label, wanted_labels

    base = images.ensure_base_image(docker_client)
    other = f"{app_name}x"
    ours = label(docker_client, base, f"bluegreen-{app_name}/web", "d-1", wanted_labels(app_name, "web"))
    label(docker_client, base, f"bluegreen-{app_name}/web", "d-2", wanted_labels(other, "web"))
    try:
        for n, when in ((1, 1.0), (2, 2.0)):
            releases.save(tmp_path, app_name, f"d-{n}", {}, {"created": when, "images": {
                "web": {"tag": f"bluegreen-{app_name}/web:d-{n}", "id": ours}}})
        said: list[str] = []
        removed = compose_release.prune(docker_client, tmp_path, app_name, 0, set(), said.append)
        left = _tags(docker_client, f"bluegreen-{app_name}/")
        assert removed == 1 and left == {f"bluegreen-{app_name}/web:d-2"}, (removed, left, said)
        assert any(f"left bluegreen-{app_name}/web:d-2 alone: its labels name app {other}" in s for s in said), said
    finally:
        images.remove_app_images(docker_client, app_name)
