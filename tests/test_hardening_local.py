"""Issue 25 #5 and #6: ``local``'s ``files:`` and ``permissions:`` resolved where they are installed.

A link checked inside the unpacked bundle may point elsewhere once ``files:`` installs it at another depth;
nothing may be written, chmodded or chowned outside the install root through it (#5). ``permissions:`` into a
fresh ``--root`` (the default install root does not exist yet) works (#6).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bluegreen_hooks.agent import permissions
from bluegreen_hooks.cli import main
from bluegreen_hooks.errors import ConfigError

BASE = "version: 0.0\nos: linux\n"
OTHER_UID = 65534   # nobody


def _local(bundle: Path, root: Path, *extra: str) -> int:
    return main(["local", str(bundle), "--root", str(root), "-a", "shop", "-g", "grp-1", *extra])


def _last_error(out: str) -> str:
    assert "Traceback" not in out, out
    return [ln for ln in out.splitlines() if ln.strip()][-1]


def _victim_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "secret").write_text("keep\n")
    (path / "secret").chmod(0o600)
    return path


def test_a_link_that_climbs_out_from_where_files_installs_it_is_refused(tmp_path, capsys):
    """``site/deep/er/up -> ../../../victim`` stays in the bundle where it is checked, but ``files:`` installs it as
    ``/srv/up``, three levels above which is outside the install root. The link is refused (exit 2, one line);
    the later entry that would write through it and the ``permissions:`` that would chmod through it never run."""
    stage = tmp_path / "a" / "stage"
    stage.mkdir(parents=True)
    victim = _victim_dir(tmp_path / "victim")      # stage/srv/up -> ../../../victim: tmp_path/victim
    b = tmp_path / "b"
    (b / "site" / "deep" / "er").mkdir(parents=True)
    (b / "site" / "deep" / "er" / "up").symlink_to("../../../victim")
    (b / "payload").mkdir()
    (b / "payload" / "planted").write_text("written through the link\n")
    (b / "appspec.yml").write_text(BASE + "files:\n  - source: site/deep/er\n    destination: /srv\n"
                                   "  - source: payload\n    destination: /srv/up\n"
                                   "permissions:\n  - object: /srv\n    mode: 777\n")
    assert _local(b, tmp_path / "root", "--install-root", str(stage)) == 2
    line = _last_error(capsys.readouterr().out)
    assert "files: " in line and "/srv/up: symlink -> ../../../victim would point to" in line, line
    assert "outside the install root" in line, line
    assert sorted(p.name for p in victim.iterdir()) == ["secret"]
    assert stat.S_IMODE((victim / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE(victim.stat().st_mode) != 0o777


def test_files_never_write_through_a_link_already_in_the_install_root(tmp_path, capsys):
    """A link left in the install root (by an earlier hook, say) to a folder outside it: ``files:`` that would
    write through it is refused with one line, and nothing lands in that folder."""
    stage, victim = tmp_path / "stage", _victim_dir(tmp_path / "victim")
    (stage / "srv").mkdir(parents=True)
    (stage / "srv" / "data").symlink_to(victim)
    b = tmp_path / "b"
    (b / "payload").mkdir(parents=True)
    (b / "payload" / "planted").write_text("x\n")
    (b / "appspec.yml").write_text(BASE + "files:\n  - source: payload\n    destination: /srv/data\n")
    assert _local(b, tmp_path / "root", "--install-root", str(stage)) == 2
    line = _last_error(capsys.readouterr().out)
    assert f"files: {stage}/srv/data: resolves to {victim}, outside the install root {stage}" in line, line
    assert sorted(p.name for p in victim.iterdir()) == ["secret"]


def test_a_link_inside_the_install_root_is_still_installed(tmp_path):
    """The refusals do not catch the ordinary case: a relative link that stays inside once installed."""
    stage = tmp_path / "stage"
    b = tmp_path / "b"
    (b / "site").mkdir(parents=True)
    (b / "site" / "index.html").write_text("hi\n")
    (b / "site" / "default.html").symlink_to("index.html")
    (b / "appspec.yml").write_text(BASE + "files:\n  - source: site\n    destination: /srv/www\n"
                                   "permissions:\n  - object: /srv/www\n    mode: 640\n    type:\n      - file\n")
    assert _local(b, tmp_path / "root", "--install-root", str(stage)) == 0
    link = stage / "srv" / "www" / "default.html"
    assert link.is_symlink() and os.readlink(link) == "index.html" and link.read_text() == "hi\n"
    assert stat.S_IMODE((stage / "srv" / "www" / "index.html").stat().st_mode) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_permissions_never_chmod_or_chown_through_a_link(tmp_path):
    """``permissions.apply``: a target reached through a linked folder is refused (nothing outside changes); a
    target that is itself a link gets its own owner (lchown), never its target's mode or owner."""
    stage, victim = tmp_path / "stage", _victim_dir(tmp_path / "victim")
    (stage / "srv").mkdir(parents=True)
    (stage / "srv" / "dl").symlink_to(victim)
    (stage / "srv" / "fl").symlink_to(victim / "secret")
    real_root = os.path.realpath(stage)

    def real(path: str) -> str:
        return os.path.join(real_root, path.lstrip("/"))

    perm = permissions.Permission("/srv", mode="0777", owner="nobody")
    with pytest.raises(ConfigError, match="reached through a symbolic link"):
        permissions.apply([("/srv/dl/secret", perm)], real)
    assert permissions.apply([("/srv/fl", perm)], real) == 1
    st = (victim / "secret").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0)
    assert os.lstat(stage / "srv" / "fl").st_uid == OTHER_UID          # the link itself
    real_file = stage / "srv" / "plain"
    real_file.write_text("x")
    assert permissions.apply([("/srv/plain", perm)], real) == 1
    st = real_file.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o777, OTHER_UID)


def test_permissions_into_a_fresh_root_with_the_default_install_root(tmp_path, capsys):
    """#6: no --install-root and a --root that does not exist yet: ``permissions:`` apply (was ``ValueError: … is
    not in the subpath of …`` every time), and only to what ``files:`` installed."""
    b = tmp_path / "b"
    (b / "site" / "css").mkdir(parents=True)
    (b / "site" / "index.html").write_text("hi\n")
    (b / "site" / "css" / "a.css").write_text("a\n")
    (b / "appspec.yml").write_text(BASE + "files:\n  - source: site\n    destination: /srv/www\n"
                                   "permissions:\n  - object: /srv/www\n    mode: 750\n    type:\n      - directory\n"
                                   "  - object: /srv\n    pattern: \"*.html\"\n    mode: 604\n"
                                   "    type:\n      - file\n")
    root = tmp_path / "fresh" / "root"
    assert _local(b, root) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "permissions: set on" in out and "Traceback" not in out, out
    www = root / "install-root" / "grp-1" / "srv" / "www"
    assert stat.S_IMODE((www / "css").stat().st_mode) == 0o750
    assert stat.S_IMODE((www / "index.html").stat().st_mode) != 0o604    # pattern: no match across /
    assert stat.S_IMODE(www.stat().st_mode) != 0o750                     # the object itself: not "below" it
