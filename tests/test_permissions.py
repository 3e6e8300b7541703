"""``files:`` + ``permissions:``: the local runner does what the REAL CodeDeploy agent does.

The same revision (no hooks) goes through both: the agent installs under a real folder, the local runner
under its staging root; the modes and owners that result must be the same, path for path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bluegreen_hooks.agent import permissions
from bluegreen_hooks.errors import ConfigError

pytestmark = pytest.mark.agent

APPSPEC = """\
version: 0.0
os: linux
files:
  - source: site
    destination: {dest}/www
  - source: run.sh
    destination: {dest}/bin
permissions:
  - object: {dest}/www
    pattern: "*.html"
    except:
      - secret.html
    owner: nobody
    mode: 600
    type:
      - file
  - object: {dest}/www
    mode: 711
    type:
      - directory
  - object: {dest}/bin/run.sh
    mode: 750
    group: nogroup
"""


def _revision(tmp: Path, dest: Path) -> Path:
    b = tmp / "rev"
    (b / "site" / "img").mkdir(parents=True)
    for name in ("index.html", "secret.html", "style.css", "img/logo.html"):
        (b / "site" / name).write_text(name)
    (b / "run.sh").write_text("#!/bin/sh\n")
    (b / "appspec.yml").write_text(APPSPEC.format(dest=dest))
    return b


def _modes(root: Path) -> dict[str, tuple[str, str, str]]:
    return {str(p.relative_to(root)): (oct(p.stat().st_mode & 0o7777), p.owner(), p.group())
            for p in sorted(root.rglob("*"))}


def test_permissions_match_the_real_agent(tmp_path):
    if not os.environ.get("CODEDEPLOY_LOCAL") or os.geteuid() != 0:
        pytest.skip("needs CODEDEPLOY_LOCAL and root (chown)")
    real = Path(tempfile.mkdtemp(prefix="bgh-perm-", dir="/tmp"))
    try:
        dest = real / "opt"
        rev = _revision(tmp_path, dest)
        agent = subprocess.run([os.environ["CODEDEPLOY_LOCAL"], "-l", str(rev), "-t", "directory", "-a", "perm",
                                "-g", "grp-perm"], env={**os.environ, "CODEDEPLOY_LOCAL_ROOT": str(tmp_path / "a")},
                               capture_output=True, text=True, timeout=300)
        assert agent.returncode == 0, agent.stdout + agent.stderr
        stage = tmp_path / "stage"
        local = subprocess.run([sys.executable, "-m", "bluegreen_hooks", "local", str(rev), "--root",
                                str(tmp_path / "l"), "-a", "perm", "-g", "grp-perm", "--install-root", str(stage)],
                               capture_output=True, text=True, timeout=300)
        assert local.returncode == 0, local.stdout + local.stderr
        assert "permissions: set on" in local.stdout
        want = _modes(dest)
        assert want["www/index.html"][:2] == ("0o600", "nobody") and want["www/secret.html"][1] == "root"
        assert want["www/img"][0] == "0o711" and want["www/img/logo.html"][0] != "0o600"   # no match across /
        assert want["bin/run.sh"][0] == "0o750" and want["bin/run.sh"][2] == "nogroup"
        assert _modes(stage / str(dest).lstrip("/")) == want
    finally:
        shutil.rmtree(real, ignore_errors=True)


def test_the_agents_refusals():
    p = permissions.parse([{"object": "/a/f.txt", "pattern": "*.txt"}])
    with pytest.raises(ConfigError, match="is a file: pattern must be"):
        permissions.targets(p, ["/a/f.txt"], [], lambda _: False)
    twice = permissions.parse([{"object": "/a"}, {"object": "/a", "type": ["file"]}])
    with pytest.raises(ConfigError, match="named by more than one entry"):
        permissions.targets(twice, ["/a/x"], ["/a"], lambda _: True)
    assert permissions.simple_glob("ab.sh", "*.sh") and not permissions.simple_glob("d/ab.sh", "*.sh")
