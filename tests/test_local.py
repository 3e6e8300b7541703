"""The local runner (bluegreen-hooks local): appspec subset, event order, environment, timeouts, files.

These use small shell-script bundles (no Docker needed); the lifecycle itself under the runner and under
the real agent is in test_conformance.py.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from bluegreen_hooks.agent.local import ORDER, parse_appspec
from bluegreen_hooks.cli import main
from bluegreen_hooks.config.appspec import Script
from bluegreen_hooks.errors import ConfigError
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_project_appspec_parses():
    """The appspec we ship is in the supported subset, with its timeouts."""
    spec = parse_appspec((ROOT / "appspec.yml").read_text())
    assert spec.version == "0.0" and spec.os == "linux" and spec.files == ()
    assert list(spec.hooks) == ["ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService"]
    assert spec.hooks["ApplicationStart"] == (Script("hooks/ApplicationStart", 900),)


def test_appspec_subset_features():
    """Comments, quotes, lists at the key's indent, files, runas and the default timeout."""
    spec = parse_appspec(
        "# revision\n---\nversion: 0.0\nos: linux   # only linux\n"
        "files:\n  - source: /\n    destination: '/opt/my app'\n"
        "hooks:\n  AfterInstall:\n  - location: \"scripts/a #1.sh\"\n    runas: www-data\n  BeforeInstall:\n")
    assert spec.files == (("/", "/opt/my app"),)
    assert spec.hooks == {"AfterInstall": (Script("scripts/a #1.sh", 3600, "www-data"),)}


BASE = "version: 0.0\nos: linux\n"


@pytest.mark.parametrize("text, message", [
    ("version: 1.0\nos: linux\n", "appspec.yml: version: should be 0.0, not '1.0'"),
    ("version: '0.0'\nos: linux\n", "appspec.yml: version: should be 0.0, not '0.0'"),
    ("version: 0.0\nos: windows\n", "appspec.yml: os: should be linux, not 'windows'"),
    (BASE + "permissions:\n  - object: /opt\n    acls:\n      - 'u:x:rw'\n",
     "appspec.yml: permissions/0/acls: unknown key (acls and context are not supported by the local runner)"),
    (BASE + "permissions:\n  - object: /opt\n    mode: 888\n",
     "appspec.yml: permissions/0/mode: should be 1 to 4 octal digits such as 644, not '888'"),
    (BASE + "hooks:\n  ApplicationStrat:\n    - location: x\n",
     "appspec.yml: hooks/ApplicationStrat: unknown lifecycle event (did you mean 'ApplicationStart'?)"),
    (BASE + "hooks:\n  ApplicationStart:\n    - location: x\n      timeout: 0\n",
     "appspec.yml: hooks/ApplicationStart/0/timeout: should be a whole number of seconds > 0, not '0'"),
    (BASE + "hooks:\n  ApplicationStart:\n    - location: x\n      sudo: true\n",
     "appspec.yml: hooks/ApplicationStart/0/sudo: not supported by the local runner (known: location, timeout, runas)"),
    (BASE + "hooks:\n  ApplicationStart:\n    - timeout: 5\n",
     "appspec.yml: hooks/ApplicationStart/0/location: is required (a script path in the bundle)"),
    (BASE + "hooks:\n  ApplicationStart:\n    - location: ../x\n",
     "appspec.yml: hooks/ApplicationStart/0/location: should not contain '..': '../x'"),
    (BASE + "files:\n  - source: /\n    destination: opt\n",
     "appspec.yml: files/0/destination: should be an absolute path without '..', not 'opt'"),
    (BASE + "hooks: {ApplicationStart: []}\n", "appspec.yml: line 3: '{ApplicationStart: [': flow collections, "
                                               "block scalars, anchors and tags are not supported in an appspec "
                                               "here; use plain 'key: value' lines and '- ' lists"),
    (BASE + "  hooks:\n", "appspec.yml: line 3: unexpected indentation"),
    (BASE + "os: linux\n", "appspec.yml: line 3: key 'os' appears twice"),
    ("version: 0.0\n\tos: linux\n", "appspec.yml: line 2: indent with spaces, not tabs"),
    ("", "appspec.yml: should be a mapping with at least 'version: 0.0' and 'os: linux'"),
])
def test_appspec_errors_are_one_line(text, message):
    """Anything outside the subset is refused with one line naming the key (or line)."""
    with pytest.raises(ConfigError) as e:
        parse_appspec(text)
    assert str(e.value) == message


# ------------------------------------------------------------------------------------------ the runner

def test_order_is_the_agents():
    """The agent's event order: the appspec's events with its own DownloadBundle and Install in place."""
    assert ORDER == ("BeforeBlockTraffic", "AfterBlockTraffic", "ApplicationStop", "DownloadBundle", "BeforeInstall",
                     "Install", "AfterInstall", "ApplicationStart", "ValidateService", "BeforeAllowTraffic",
                     "AfterAllowTraffic")


def _bundle(path: Path, scripts: dict[str, str], appspec: str) -> Path:
    path.mkdir(parents=True)
    (path / "appspec.yml").write_text(appspec)
    for name, body in scripts.items():
        p = path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(0o755)
    return path


def _all_hooks(timeout: int = 30) -> str:
    events = [e for e in ORDER if e not in ("DownloadBundle", "Install")]
    return BASE + "hooks:\n" + "".join(f"  {e}:\n    - location: s/{e}\n      timeout: {timeout}\n" for e in events)


def _recording_bundle(path: Path, rev: str, trace: Path) -> Path:
    events = [e for e in ORDER if e not in ("DownloadBundle", "Install")]
    body = (f'echo "{rev} $LIFECYCLE_EVENT $DEPLOYMENT_ID $APPLICATION_NAME $DEPLOYMENT_GROUP_NAME '
            f'$DEPLOYMENT_GROUP_ID $(pwd)" >> {trace}\necho "hello from $LIFECYCLE_EVENT"\n')
    return _bundle(path, {f"s/{e}": body for e in events}, _all_hooks())


def _local(bundle: Path, root: Path, *extra: str) -> int:
    return main(["local", str(bundle), "--root", str(root), "-a", "shop", "-d", "web", "-g", "grp-1", *extra])


def test_runner_order_environment_and_previous_revision(tmp_path, capsys, monkeypatch):
    """The agent's order and variables; ApplicationStop/BlockTraffic come from the previous revision."""
    monkeypatch.chdir(tmp_path)
    trace, root = tmp_path / "trace", tmp_path / "root"
    assert _local(_recording_bundle(tmp_path / "r1", "r1", trace), root) == 0
    first = trace.read_text().splitlines()
    assert [ln.split()[1] for ln in first] == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService",
                                               "BeforeAllowTraffic", "AfterAllowTraffic"]
    out = capsys.readouterr().out
    assert "ApplicationStop      skipped" in out and "no previous revision in this deployment group" in out
    _rev, _event, did, app, group, group_id, cwd = first[0].split()
    assert re.fullmatch(r"d-LOCAL[A-Z0-9]{5}", did)
    assert (app, group, group_id, cwd) == ("shop", "web", "grp-1", str(tmp_path))
    trace.unlink()
    assert _local(_recording_bundle(tmp_path / "r2", "r2", trace), root) == 0
    second = [ln.split()[:2] for ln in trace.read_text().splitlines()]
    assert second[:3] == [["r1", "BeforeBlockTraffic"], ["r1", "AfterBlockTraffic"], ["r1", "ApplicationStop"]]
    assert all(r == "r2" for r, _ in second[3:]) and len(second) == 9
    out = capsys.readouterr().out
    assert re.search(r"^ApplicationStop +succeeded +\d+\.\d\ds$", out, re.M), out
    log = next(root.glob("deployment-root/grp-1/*/logs/scripts.log"))
    assert "LifecycleEvent - ApplicationStart" in log.read_text()


def test_runner_stops_at_the_first_failure(tmp_path, capsys):
    """A failing BeforeInstall ends the deployment: nothing after it runs; exit 1; the tail is shown."""
    trace = tmp_path / "trace"
    b = _recording_bundle(tmp_path / "b", "r1", trace)
    (b / "s" / "BeforeInstall").write_text(
        "#!/bin/sh\necho about to fail\necho 'ERROR BeforeInstall: broken' >&2\nexit 3\n")
    assert _local(b, tmp_path / "root") == 1
    assert trace.exists() is False
    out = capsys.readouterr().out
    started = [ln.split()[1] for ln in out.splitlines() if ln.startswith("==> ")]
    assert started[-2:] == ["DownloadBundle", "BeforeInstall"]
    assert re.search(r"^BeforeInstall +failed ", out, re.M) and not re.search(r"^Install ", out, re.M), out
    assert out.rstrip().splitlines()[-1].startswith("ERROR local deployment d-LOCAL")
    assert "Script at specified location: s/BeforeInstall failed with exit code 3" in out
    diag = json.loads(next((tmp_path / "root").glob("deployment-root/grp-1/*/logs/diagnostics.json")).read_text())
    assert diag["error_code"] == 4 and diag["script_name"] == "s/BeforeInstall"
    assert diag["log"].splitlines() == ["LifecycleEvent - BeforeInstall", "Script - s/BeforeInstall",
                                        "[stdout]about to fail", "[stderr]ERROR BeforeInstall: broken"]


def test_runner_timeout_terminates_the_process_group(tmp_path, capsys):
    """At the hook's timeout the whole process group gets SIGTERM; the event fails with code 3."""
    pids = tmp_path / "pids"
    b = _bundle(tmp_path / "b", {"hang.sh": f"sleep 120 &\necho $! > {pids}\necho started\nwait\n"},
                BASE + "hooks:\n  ApplicationStart:\n    - location: hang.sh\n      timeout: 3\n")
    assert _local(b, tmp_path / "root") == 1
    child = int(pids.read_text())   # written at once: 3 s leave a busy machine room to start sh and fork
    wait_for(lambda: not Path(f"/proc/{child}").exists() or
             Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
             timeout=10, what="the hook's child to be terminated")
    out = capsys.readouterr().out
    assert "failed to complete in 3 seconds" in out
    diag = json.loads(next((tmp_path / "root").glob("deployment-root/grp-1/*/logs/diagnostics.json")).read_text())
    assert diag["error_code"] == 3


def test_runner_installs_files_into_a_staging_root_and_cleans_up(tmp_path):
    """files: go under the staging root; the next Install first removes what the previous one created."""
    spec = (BASE + "files:\n  - source: conf\n    destination: /etc/shop\n"
            "  - source: run.sh\n    destination: /opt/shop\n")
    b1 = _bundle(tmp_path / "b1", {"run.sh": "echo 1\n", "conf/a.conf": "a", "conf/sub/b.conf": "b"}, spec)
    stage = tmp_path / "stage"
    assert _local(b1, tmp_path / "root", "--install-root", str(stage)) == 0
    assert sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()) == \
        ["etc/shop/a.conf", "etc/shop/sub/b.conf", "opt/shop/run.sh"]
    b2 = _bundle(tmp_path / "b2", {"run.sh": "echo 2\n", "conf/a.conf": "a2"}, spec)
    assert _local(b2, tmp_path / "root", "--install-root", str(stage)) == 0
    assert sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()) == \
        ["etc/shop/a.conf", "opt/shop/run.sh"]
    assert (stage / "etc/shop/a.conf").read_text().endswith("a2")
    (stage / "etc/shop/foreign.conf").write_text("not ours")      # DISALLOW: a file we did not install
    b3 = _bundle(tmp_path / "b3", {"run.sh": "", "conf/foreign.conf": "x"}, spec)
    assert _local(b3, tmp_path / "root", "--install-root", str(stage)) == 1


def test_runner_events_subset(tmp_path, capsys):
    """--events runs only those (plus DownloadBundle and Install, as the agent does)."""
    trace = tmp_path / "trace"
    b = _recording_bundle(tmp_path / "b", "r1", trace)
    assert _local(b, tmp_path / "root", "--events", "ValidateService,AfterInstall") == 0
    assert [ln.split()[1] for ln in trace.read_text().splitlines()] == ["AfterInstall", "ValidateService"]
    out = capsys.readouterr().out
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("==> ")] == \
        ["DownloadBundle", "Install", "AfterInstall", "ValidateService"]


def test_runner_accepts_a_zip_bundle(tmp_path):
    """A zip revision is unpacked with its file modes."""
    import zipfile

    trace = tmp_path / "trace"
    b = _recording_bundle(tmp_path / "b", "z", trace)
    z = tmp_path / "rev.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(b.rglob("*")):
            zf.write(p, p.relative_to(b))
    assert _local(z, tmp_path / "root", "--events", "AfterInstall") == 0
    assert trace.read_text().split()[:2] == ["z", "AfterInstall"]


def test_runner_bad_appspec_is_one_line(tmp_path, capsys):
    """A bad appspec fails the deployment with the parser's one line and exit 2 (bad input); hooks never run."""
    trace = tmp_path / "trace"
    b = _recording_bundle(tmp_path / "b", "r1", trace)
    (b / "appspec.yml").write_text(BASE + "hooks:\n  AfterInstal:\n    - location: s/AfterInstall\n")
    assert _local(b, tmp_path / "root") == 2
    out = capsys.readouterr().out
    assert "appspec.yml: hooks/AfterInstal: unknown lifecycle event (did you mean 'AfterInstall'?)" in out
    assert not trace.exists()


def test_runner_dry_run_writes_nothing(tmp_path, capsys):
    """--dry-run lists the events and scripts; the root is not even created and no hook runs."""
    trace = tmp_path / "trace"
    b = _recording_bundle(tmp_path / "b", "r1", trace)
    root = tmp_path / "root"
    assert _local(b, root, "--dry-run") == 0
    assert not root.exists() and not trace.exists()
    out = capsys.readouterr().out
    assert out.startswith("DRY RUN (nothing is changed)")
    assert "ApplicationStop: skipped (no previous revision in this deployment group)" in out
    assert "ApplicationStart: s/ApplicationStart (30s)" in out


def test_runner_refuses_unwritable_root(tmp_path, capsys):
    """A root that cannot be created is one ERROR line naming --root."""
    b = _recording_bundle(tmp_path / "b", "r1", tmp_path / "trace")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _local(b, blocker / "root") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ERROR --root {blocker / 'root'}: not writable") and "pass --root DIR" in err


def test_runas_goes_through_su():
    """runas: USER runs ``su USER -c SCRIPT`` as the agent does (the current user runs the script directly)."""
    import pwd

    from bluegreen_hooks.agent.scripts import _command
    me = pwd.getpwuid(os.getuid()).pw_name
    assert _command(Path("/b/s.sh"), "www-data") == ["su", "www-data", "-c", "/b/s.sh"]
    assert _command(Path("/b/s.sh"), me) == ["/b/s.sh"]
    assert _command(Path("/b/s.sh"), None) == ["/b/s.sh"]
