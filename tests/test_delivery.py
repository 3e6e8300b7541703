"""build.py bundle: reproducible zips, validation refusals, and the hooks' offline venv launcher."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from bluegreen_hooks.cli import main as build_main
from bluegreen_hooks.config.appspec import Script, parse
from bluegreen_hooks.delivery import bundle as bundling
from bluegreen_hooks.delivery import commands, s3
from bluegreen_hooks.delivery.deploy import DeployOptions
from bluegreen_hooks.delivery.s3 import Revision
from bluegreen_hooks.errors import DeliveryError
from testbed.bundle import ROOT, bed_config, toml_dumps

EXAMPLE_APP = ROOT / "example" / "app"


def make_src(tmp_path: Path, config: dict | None = None, name: str = "src") -> Path:
    """An app folder as a user has it: bluegreen.toml + app/ (the example app's build context)."""
    src = tmp_path / name
    shutil.copytree(EXAMPLE_APP, src / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "bluegreen.toml").write_text(toml_dumps(config or {"app": "demo", "container": {"build": "app"}}))
    return src


def make_spec(tmp_path: Path, appspec: str | None = None) -> Path:
    """A copy of the project's appspec.yml + hooks/ that a test may change."""
    spec = tmp_path / "spec"
    shutil.copytree(ROOT / "hooks", spec / "hooks")
    (spec / "appspec.yml").write_text(appspec if appspec is not None else (ROOT / "appspec.yml").read_text())
    return spec / "appspec.yml"


def noop_hook(bundle: Path) -> list[str]:
    """The Python no-op event as a hook runs it (the launcher, its venv and package copy): the bundle's own
    hooks/ApplicationStop is plain sh and starts no interpreter."""
    return [str(bundle / "hooks" / "launch"), "ApplicationStop"]


def entries(path: Path) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: i for i in zf.infolist()}


def build(capsys, *argv: str) -> tuple[int, str, str]:
    rc = build_main(["bundle", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_bundle_twice_gives_identical_bytes_and_prints_sha256(tmp_path, capsys, monkeypatch):
    """Same inputs -> same sha256 (sorted entries, fixed times and modes), wheels and all."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    src = make_src(tmp_path)
    shas = []
    for name in ("a.zip", "b.zip"):
        rc, out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / name))
        assert rc == 0, err
        sha = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert f"sha256 {sha}" in out and f"{(tmp_path / name).stat().st_size:,} bytes" in out
        shas.append(sha)
        os.utime(src / "app" / "Dockerfile", (1, 1))   # mtimes on disk do not leak into the zip
    assert shas[0] == shas[1]
    names = list(entries(tmp_path / "a.zip"))
    assert names == sorted(names)


def test_bundle_layout_modes_times_and_never_bundled_files(tmp_path, capsys, monkeypatch):
    """appspec at the root, hooks 0755, fixed timestamps; .git, caches, venvs, dist/ are never bundled."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = make_src(tmp_path)
    for junk in (".git/config", "app/__pycache__/x.pyc", ".venv/pyvenv.cfg", "env2/pyvenv.cfg", "env2/lib/x.py",
                 "dist/old.zip", ".pytest_cache/x", "app/mod.pyc", "notes/keep.txt", "node/skip.log"):
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_text("x")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"),
                          "--no-wheels", "--exclude", "*.log")
    assert rc == 0, err
    e = entries(tmp_path / "b.zip")
    assert {"appspec.yml", "bluegreen.toml", "hooks/launch", "hooks/ValidateService", "bluegreen_hooks/__main__.py",
            "bluegreen_hooks/delivery/bundle.py", "app/Dockerfile", "app/entrypoint.sh", "notes/keep.txt"} <= set(e)
    leaked = [n for n in e if n.split("/")[0] in (".git", ".venv", "env2", "dist", ".pytest_cache")
              or "__pycache__" in n or n.endswith((".pyc", ".log"))]
    assert leaked == []
    assert not any(n.startswith("wheels/") for n in e)
    modes = {n: (i.external_attr >> 16) & 0o7777 for n, i in e.items()}
    assert modes["hooks/launch"] == modes["hooks/ApplicationStart"] == modes["app/entrypoint.sh"] == 0o755
    assert modes["app/Dockerfile"] == modes["appspec.yml"] == 0o644
    assert {i.date_time for i in e.values()} == {(2023, 11, 14, 22, 13, 20)}


def test_bundle_timestamps_default_to_the_last_commit_time(tmp_path, capsys, monkeypatch):
    """Without SOURCE_DATE_EPOCH, entries carry the app checkout's last commit time."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    src = make_src(tmp_path)
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    env = dict(os.environ, GIT_COMMITTER_DATE="2024-02-03T04:05:06Z", GIT_AUTHOR_DATE="2024-02-03T04:05:06Z")
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True, env=env)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 0, err
    e = entries(tmp_path / "b.zip")
    assert {i.date_time for i in e.values()} == {(2024, 2, 3, 4, 5, 6)}
    assert not any(n.startswith(".git/") for n in e)


def test_bundle_include_rules_pick_app_files(tmp_path, capsys):
    """--include keeps only matching app files (the deploy config and the framework always go in)."""
    src = make_src(tmp_path)
    (src / "README.txt").write_text("x")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"),
                          "--no-wheels", "--include", "app")
    assert rc == 0, err
    e = entries(tmp_path / "b.zip")
    assert "README.txt" not in e and "app/Dockerfile" in e and "bluegreen.toml" in e


def test_bundle_carries_pinned_wheels_with_hashes(tmp_path, capsys):
    """wheels/ holds pure-Python wheels for docker, tenacity and theirs; requirements.txt pins them by sha256."""
    src = make_src(tmp_path)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        wheels = {n: zf.read(n) for n in zf.namelist() if n.endswith(".whl")}
        req = zf.read("wheels/requirements.txt").decode()
    assert all(n.endswith("-none-any.whl") for n in wheels)
    dists = {n.split("/")[1].split("-")[0] for n in wheels}
    assert {"docker", "tenacity", "requests", "urllib3", "idna", "charset_normalizer", "certifi", "tomli",
            "crossplane", "prometheus_client"} == dists
    for _n, data in wheels.items():
        assert f"--hash=sha256:{hashlib.sha256(data).hexdigest()}" in req
    assert 'tomli==2.5.0 ; python_version < "3.11"' in req


APPSPEC_OK = (ROOT / "appspec.yml").read_text()

REFUSALS = [
    ("version", APPSPEC_OK.replace("version: 0.0", "version: 0.1"), "appspec.yml: version: should be 0.0, not '0.1'"),
    ("os", APPSPEC_OK.replace("os: linux", "os: windows"), "appspec.yml: os: should be linux, not 'windows'"),
    ("unknown event", APPSPEC_OK.replace("  BeforeInstall:", "  BeforeInstal:"),
     "appspec.yml: hooks/BeforeInstal: unknown lifecycle event (did you mean 'BeforeInstall'?)"),
    ("missing hook", APPSPEC_OK.replace("location: hooks/ValidateService", "location: hooks/Validate"),
     "appspec.yml: hooks/ValidateService/0/location: 'hooks/Validate' is not in the bundle"),
    ("timeout 0", APPSPEC_OK.replace("timeout: 60", "timeout: 0"),
     "appspec.yml: hooks/ApplicationStop/0/timeout: should be a whole number of seconds > 0, not '0'"),
    ("timeout 3601", APPSPEC_OK.replace("timeout: 900", "timeout: 3601"),
     "appspec.yml: hooks/ApplicationStart/0/timeout: should be a number of seconds from 1 to 3600, not 3601"),
    ("sum per event", APPSPEC_OK.replace("      timeout: 900",
                                         "      timeout: 1800\n    - location: hooks/launch\n      timeout: 1801"),
     "appspec.yml: hooks/ApplicationStart: timeouts add up to 3601 s; CodeDeploy allows at most 3600 s per event"),
    ("absolute location", APPSPEC_OK.replace("location: hooks/BeforeInstall", "location: /opt/hooks/BeforeInstall"),
     "appspec.yml: hooks/BeforeInstall/0/location: should be relative to the bundle root, not an absolute path"),
    ("dotdot location", APPSPEC_OK.replace("location: hooks/BeforeInstall", "location: hooks/../../x"),
     "appspec.yml: hooks/BeforeInstall/0/location: should not contain '..'"),
    ("unknown key", APPSPEC_OK + "permisions: []\n",
     "appspec.yml: permisions: unknown key (did you mean 'permissions'?)"),
    ("quoted version", APPSPEC_OK.replace("version: 0.0", "version: '0.0'"),
     "appspec.yml: version: should be 0.0, not '0.0'"),
    ("files destination", APPSPEC_OK.replace("hooks:", "files:\n  - source: /\n    destination: opt\nhooks:"),
     "appspec.yml: files/0/destination: should be an absolute path without '..', not 'opt'"),
    ("bad yaml", APPSPEC_OK + "  weird\n", "appspec.yml: line"),
]


@pytest.mark.parametrize("appspec,message", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_bundle_refuses_bad_appspec_with_one_line(tmp_path, capsys, appspec, message):
    """Each appspec mistake is one ERROR line naming the file and key; no zip is written."""
    src = make_src(tmp_path)
    spec = make_spec(tmp_path, appspec)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "--appspec", str(spec),
                          "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 2, err
    assert err.startswith(f"ERROR {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "b.zip").exists()


def test_bundle_refuses_hook_that_is_not_executable(tmp_path, capsys):
    src = make_src(tmp_path)
    spec = make_spec(tmp_path)
    hook = spec.parent / "hooks" / "ValidateService"
    # hooks/ files are always stored 0755; a hook elsewhere must be executable itself
    (src / "scripts").mkdir()
    shutil.copy(hook, src / "scripts" / "check")
    (src / "scripts" / "check").chmod(0o644)
    spec.write_text(APPSPEC_OK.replace("location: hooks/ValidateService", "location: scripts/check"))
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "--appspec", str(spec),
                          "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 2
    assert err == ("ERROR appspec.yml: hooks/ValidateService/0/location: 'scripts/check' is not executable "
                   "(chmod +x it)\n")


def test_bundle_refuses_invalid_deploy_config(tmp_path, capsys):
    src = make_src(tmp_path, {"app": "demo", "colours": {"green": "80; evil"}, "container": {"build": "app"}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 2
    assert err == "ERROR bluegreen.toml: colours/green: should be a port (1-65535), not '80; evil'\n"
    assert not (tmp_path / "b.zip").exists()


def test_bundle_refuses_build_context_missing_from_bundle(tmp_path, capsys):
    src = make_src(tmp_path)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels",
                          "--exclude", "app/Dockerfile")
    assert rc == 2
    assert err.startswith("ERROR bluegreen.toml: container/build: app/Dockerfile is not in the bundle"), err


def test_bundle_refuses_build_context_outside_bundle(tmp_path, capsys):
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "../elsewhere"}})
    (tmp_path / "elsewhere").mkdir()
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 2
    assert err.startswith("ERROR bluegreen.toml: container/build: should not contain '..'"), err


def test_bundle_refuses_symlink_leaving_the_tree(tmp_path, capsys):
    src = make_src(tmp_path)
    (src / "app" / "secret").symlink_to("/etc/hostname")
    (src / "app" / "inside").symlink_to("Dockerfile")     # a link inside the tree is fine (stored as the file)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 1
    assert err == (f"ERROR {src}/app/secret: symlink leaves the tree (-> /etc/hostname); "
                   "replace it with the file or exclude it\n")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels",
                          "--exclude", "app/secret")                # excluded: fine
    assert rc == 0, err
    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        assert zf.read("app/inside") == (EXAMPLE_APP / "Dockerfile").read_bytes()


def test_appspec_parser_reads_the_project_appspec():
    """bundle checks the appspec with the same parser `bluegreen-hooks local` runs it with."""
    assert bundling.parse_appspec is parse
    spec = bundling.parse_appspec(APPSPEC_OK)
    assert spec.version == "0.0" and spec.os == "linux"
    assert spec.hooks["ApplicationStart"] == (Script("hooks/ApplicationStart", 900),)
    assert list(spec.hooks) == ["ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService"]


def test_build_py_and_console_script_offer_the_same_commands(tmp_path):
    """`python build.py bundle` works from a checkout; `bluegreen-hooks bundle` is the same command."""
    src = make_src(tmp_path)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    a = subprocess.run([sys.executable, str(ROOT / "build.py"), "bundle", "--config", str(src / "bluegreen.toml"),
                        "-o", str(tmp_path / "a.zip"), "--no-wheels"], capture_output=True, text=True, env=env, cwd="/")
    b = subprocess.run([sys.executable, "-m", "bluegreen_hooks", "bundle", "--config", str(src / "bluegreen.toml"),
                        "-o", str(tmp_path / "b.zip"), "--no-wheels"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


# ---------------------------------------------------------------------------------------------- the launcher

def bare_python(tmp_path: Path, base: str, name: str) -> Path:
    """A python3 with nothing installed (no docker, no tenacity): a venv without pip."""
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / name)], check=True)
    py = tmp_path / name / "bin" / "python3"
    probe = subprocess.run([str(py), "-c", "import tenacity"], capture_output=True)
    assert probe.returncode != 0, "the bare interpreter must not have tenacity"
    return py


def unpack(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
        for i in zf.infolist():       # zipfile does not restore modes; the agent does (and chmods hooks)
            os.chmod(dest / i.filename, (i.external_attr >> 16) & 0o777)
    return dest


def interpreters() -> list[str]:
    found = ["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable]
    for cand in (shutil.which("python3.9"), str(Path.home() / ".pyenv/versions/3.9.18/bin/python3.9")):
        if cand and os.path.exists(cand) and subprocess.run([cand, "-c", "import venv, ensurepip"],
                                                            capture_output=True).returncode == 0:
            found.append(cand)
            break
    return found


@pytest.mark.slow
@pytest.mark.parametrize("base", interpreters(), ids=lambda p: Path(p).name)
def test_launcher_builds_one_offline_venv_from_the_bundled_wheels(tmp_path, capsys, base):
    """Two hooks at once on a python without docker/tenacity: one venv, built offline, then reused without pip."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    bundle = unpack(tmp_path / "b.zip", tmp_path / "bundle")
    py = bare_python(tmp_path, base, "bare")
    venvs = tmp_path / "venvs"
    env = {"PATH": f"{py.parent}:/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(venvs), "DEPLOYMENT_ID": "d-launch",
           "LIFECYCLE_EVENT": "ApplicationStop",
           # offline: any attempt to reach an index would fail
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    procs = [subprocess.Popen(noop_hook(bundle), env=env, cwd="/", stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum("installing the bundle's runtime" in o for o in outs) == 1, outs
    made = [p.name for p in venvs.iterdir() if p.is_dir() and not p.name.startswith("pkg-")]
    assert len(made) == 1 and made[0].startswith("venv-"), made
    vpy = venvs / made[0] / "bin" / "python"
    check = subprocess.run([str(vpy), "-c",
                            "import docker, tenacity, requests; print(docker.__version__, tenacity.__name__)"],
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.startswith("7.2.0"), check.stderr
    again = subprocess.run(noop_hook(bundle), env=env, cwd="/", capture_output=True,
                           text=True)
    assert again.returncode == 0 and "installing" not in again.stderr + again.stdout
    assert "done" in again.stdout


@pytest.mark.parametrize("base", interpreters(), ids=lambda p: Path(p).name)
def test_launcher_without_pip_unpacks_the_hash_checked_wheels(tmp_path, capsys, base):
    """BLUEGREEN_VENV_INSTALLER=unzip (what a host without ensurepip gets): wheels checked and unpacked, no pip."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    bundle = unpack(tmp_path / "b.zip", tmp_path / "bundle")
    py = bare_python(tmp_path, base, "bare")
    env = {"PATH": f"{py.parent}:/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(tmp_path / "venvs"),
           "BLUEGREEN_VENV_INSTALLER": "unzip", "DEPLOYMENT_ID": "d-unzip"}
    run = subprocess.run(noop_hook(bundle), env=env, cwd="/", capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    [venv] = [p for p in (tmp_path / "venvs").iterdir() if p.is_dir() and p.name.startswith("venv-")]
    assert not list(venv.glob("lib/python*/site-packages/pip"))
    old_python = subprocess.run([base, "-c", "import sys; print(sys.version_info < (3, 11))"], capture_output=True,
                                text=True).stdout.strip()
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import docker, tenacity, requests, urllib3, idna, charset_normalizer, certifi, crossplane;"
                            "import prometheus_client;"
                            "import importlib.util; print(importlib.util.find_spec('tomli') is not None)"],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == old_python          # tomli only where the marker asks for it (< 3.11)


def test_launcher_refuses_a_tampered_wheel(tmp_path, capsys):
    """A wheel whose sha256 differs from requirements.txt is not installed: one ERROR line, no venv."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    bundle = unpack(tmp_path / "b.zip", tmp_path / "bundle")
    [wheel] = (bundle / "wheels").glob("tenacity-*.whl")
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr("tenacity/evil.py", "raise SystemExit('tampered')\n")
    for installer in ("pip", "unzip"):
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(tmp_path / "venvs"),
               "BLUEGREEN_VENV_INSTALLER": installer, "LIFECYCLE_EVENT": "BeforeInstall"}
        run = subprocess.run([str(bundle / "hooks" / "BeforeInstall")], env=env, cwd="/", capture_output=True,
                             text=True)
        assert run.returncode == 1, run.stdout + run.stderr
        last = run.stdout.strip().splitlines()[-1]
        assert last.startswith("ERROR BeforeInstall: building the runtime venv failed:"), run.stdout
        assert not [p for p in (tmp_path / "venvs").iterdir() if p.is_dir()]


def test_launcher_without_wheels_uses_the_current_python(tmp_path, capsys):
    """A --no-wheels bundle runs on the hook's python3 as before (here: the test venv, which has docker)."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 0, err
    bundle = unpack(tmp_path / "b.zip", tmp_path / "bundle")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(tmp_path / "venvs")}
    run = subprocess.run(noop_hook(bundle), env=env, cwd="/", capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert [p.name[:4] for p in (tmp_path / "venvs").iterdir() if p.is_dir()] == ["pkg-"]   # no venv built


def _hook_imports(bundle: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ApplicationStop; the folders bluegreen_hooks' compiled modules were loaded from (python -v)."""
    run = subprocess.run(noop_hook(bundle), env={**env, "PYTHONVERBOSE": "1"}, cwd="/",
                         capture_output=True, text=True, timeout=120)
    found = re.findall(r"^# code object from '?(.*)/bluegreen_hooks/(?:__pycache__/cli\.cpython-\d+\.pyc|cli\.py)'?$",
                       run.stderr, re.M)
    return run, set(found)


def test_launcher_runs_one_compiled_copy_of_the_package_for_every_bundle_that_ships_it(tmp_path, capsys):
    """Two bundles with the same bluegreen_hooks: the first hook copies and compiles the package once under the
    venv root, every hook of either bundle imports it from there, and the bundles stay untouched; a changed
    package gets its own copy; a root others may write is not used (the bundle's own copy runs)."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 0, err
    first, second = (unpack(tmp_path / "b.zip", tmp_path / name) for name in ("one", "two"))
    venvs = tmp_path / "venvs"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(venvs),
           "DEPLOYMENT_ID": "d-pkg"}
    homes = set()
    for bundle in (first, second, first):
        run, found = _hook_imports(bundle, env)
        assert run.returncode == 0 and "nothing to stop" in run.stdout, run.stdout + run.stderr[-2000:]
        homes |= found
    [home] = [p for p in venvs.iterdir() if p.is_dir()]
    assert home.name.startswith("pkg-") and homes == {str(home)}, homes
    assert (home / "bluegreen_hooks" / "lifecycle" / "__pycache__").is_dir()   # compiled when copied
    assert not list(first.rglob("__pycache__")) and not list(second.rglob("__pycache__"))
    assert oct(home.stat().st_mode & 0o777) == "0o755" and oct((home / "bluegreen_hooks" / "cli.py").stat().st_mode
                                                               & 0o777) == "0o644"
    # a bundle whose package differs gets a copy of its own
    (second / "bluegreen_hooks" / "names.py").write_text((second / "bluegreen_hooks" / "names.py").read_text()
                                                        + "\n# changed\n")
    run, found = _hook_imports(second, env)
    assert run.returncode == 0 and len(found) == 1 and found != {str(home)}, run.stderr[-2000:]
    assert len([p for p in venvs.iterdir() if p.name.startswith("pkg-") and p.is_dir()]) == 2
    # a root others could write to is never used: the bundle's own package runs
    open_root = tmp_path / "open"
    open_root.mkdir(mode=0o777)
    open_root.chmod(0o777)
    run, found = _hook_imports(first, {**env, "BLUEGREEN_VENV_ROOT": str(open_root)})
    assert run.returncode == 0 and found == {str(first)}, run.stderr[-2000:]
    assert list(open_root.iterdir()) == []


@pytest.mark.integration
def test_bundled_hooks_deploy_on_a_python_without_docker_or_tenacity(docker_client, nginx, site, app_name, tmp_path,
                                                                      capsys):
    """The real lifecycle (Docker + nginx) run by the bundle's hooks on a bare python3: the venv comes from wheels/."""
    from testbed.bundle import EVENTS, run_hook
    from testbed.ports import free_port
    from tests.helpers import get

    cfg = bed_config(app_name, nginx, site, (free_port(), free_port()), tmp_path / "state", "v1")
    src = make_src(tmp_path, cfg)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    bundle = unpack(tmp_path / "b.zip", tmp_path / "bundle")
    py = bare_python(tmp_path, interpreters()[0], "bare")
    extra = {"BLUEGREEN_VENV_ROOT": str(tmp_path / "venvs")}
    for event in EVENTS:
        run = run_hook(bundle, event, "d-bare", extra, python=str(py))
        assert run.returncode == 0, f"{event}\n{run.output}"
    assert get(site.url + "/")[1].strip() == "v1"


# ---------------------------------------------------------------------------------------------- push options (pure)

def test_upload_args_carry_sha256_encryption_and_bucket_owner():
    assert s3.upload_args("ab") == {"Metadata": {"bluegreen-sha256": "ab"}, "ContentType": "application/zip"}
    assert s3.upload_args("ab", "AES256", expected_owner="123456789012") == {
        "Metadata": {"bluegreen-sha256": "ab"}, "ContentType": "application/zip", "ServerSideEncryption": "AES256",
        "ExpectedBucketOwner": "123456789012"}
    kms = s3.upload_args("ab", "aws:kms", "alias/deploy")
    assert (kms["ServerSideEncryption"], kms["SSEKMSKeyId"]) == ("aws:kms", "alias/deploy")


def test_upload_args_refuse_kms_key_without_kms():
    with pytest.raises(DeliveryError, match="--sse-kms-key-id needs --sse aws:kms"):
        s3.upload_args("ab", "AES256", "alias/deploy")


def test_bundle_written_inside_the_app_folder_does_not_swallow_itself(tmp_path, capsys, monkeypatch):
    """-o inside --app-dir: the previous zip is not bundled, so rebuilding gives the same bytes."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = make_src(tmp_path)
    shas = []
    for _ in range(2):
        rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(src / "rev.zip"),
                              "--no-wheels")
        assert rc == 0, err
        shas.append(hashlib.sha256((src / "rev.zip").read_bytes()).hexdigest())
    assert shas[0] == shas[1] and "rev.zip" not in entries(src / "rev.zip")


def test_push_refuses_a_file_that_is_not_a_bundle_before_any_aws_call(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")        # would fail if it were called
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEDEPLOY", "http://127.0.0.1:9")
    (tmp_path / "x.zip").write_text("not a zip")
    rc = build_main(["push", str(tmp_path / "x.zip"), "--bucket", "b"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"ERROR {tmp_path / 'x.zip'}: not a readable zip bundle") and err.count("\n") == 1, err


def test_bundle_without_pypi_and_an_empty_wheel_cache_is_one_line(tmp_path, capsys, monkeypatch):
    """No index reachable and no cached wheels: one ERROR line saying where to put the wheels; no zip."""
    for k, v in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
                 "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": ""}.items():
        monkeypatch.setenv(k, v)
    src = make_src(tmp_path)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"),
                          "--wheel-cache", str(tmp_path / "empty-cache"))
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("ERROR bundle: pip download of certifi=="), err
    assert f"put the wheels in {tmp_path / 'empty-cache'}" in last, err
    assert not (tmp_path / "b.zip").exists()


def test_bundle_refuses_compose_file_missing_from_bundle(tmp_path, capsys):
    """With [compose], the compose file must travel in the bundle."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "bluegreen.toml").write_text(toml_dumps({"app": "demo", "compose": {"file": "docker-compose.yml"}}))
    (src / "docker-compose.yml").write_text("services:\n  web:\n    image: bluegreen-base:busybox\n")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 0, err
    assert "docker-compose.yml" in entries(tmp_path / "b.zip")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "c.zip"), "--no-wheels",
                          "--exclude", "*.yml")
    assert rc == 2
    assert err.startswith("ERROR bluegreen.toml: compose/file: docker-compose.yml is not in the bundle"), err


def test_bundle_carries_the_whole_package_with_its_subpackages(tmp_path, capsys):
    """Every module of bluegreen_hooks/, nested ones too (host/procfs.py, delivery/…), is in the bundle."""
    src = make_src(tmp_path)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"), "--no-wheels")
    assert rc == 0, err
    e = entries(tmp_path / "b.zip")
    package = ROOT / "bluegreen_hooks"
    modules = {f"bluegreen_hooks/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    assert {"bluegreen_hooks/host/procfs.py", "bluegreen_hooks/delivery/commands.py"} <= modules
    assert modules <= set(e), sorted(modules - set(e))


def test_bundle_never_packs_an_earlier_bundle_found_in_the_app_folder(tmp_path, capsys, monkeypatch):
    """A zip laid out like our bundles (appspec.yml + bluegreen_hooks/) under the app folder is left out with a
    note; the result is the bundle built without it. Other zips are app files like any other."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = make_src(tmp_path)
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "clean.zip"),
                         "--no-wheels")
    assert rc == 0, err
    (src / "releases").mkdir()
    shutil.copy(tmp_path / "clean.zip", src / "releases" / "shop-1.ZIP")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "again.zip"),
                         "--no-wheels")
    assert rc == 0, err
    assert err == f"bundle: left out {src}/releases/shop-1.ZIP: an earlier bundle (appspec.yml, bluegreen_hooks/)\n"
    assert (tmp_path / "again.zip").read_bytes() == (tmp_path / "clean.zip").read_bytes()

    with zipfile.ZipFile(src / "assets.zip", "w") as zf:     # a zip of the app's own: bundled
        zf.writestr("appspec.yml", "not ours: no bluegreen_hooks/ beside it")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "third.zip"),
                         "--no-wheels")
    assert rc == 0, err
    e = entries(tmp_path / "third.zip")
    assert "assets.zip" in e and not any(n.startswith("releases/") for n in e)


def test_bundle_output_inside_the_app_folder_is_left_out_with_a_note(tmp_path, capsys, monkeypatch):
    """Rebuilding over a bundle in the app folder says that it leaves the old one out."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    src = make_src(tmp_path)
    for expected in ("", f"bundle: left out {src}/rev.zip: the output of this build\n"):
        rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(src / "rev.zip"),
                              "--no-wheels")
        assert (rc, err) == (0, expected)


def test_bundle_refuses_one_of_two_compose_files_missing_from_bundle(tmp_path, capsys):
    """compose/files = {blue, green}: each colour's file must travel in the bundle; the key names the colour."""
    src = tmp_path / "src"
    (src / "stacks").mkdir(parents=True)
    files = {"blue": "stacks/docker-compose.blue.yml", "green": "./stacks/docker-compose.green.yml"}
    (src / "bluegreen.toml").write_text(toml_dumps({"app": "demo", "compose": {"files": files}}))
    for name in ("docker-compose.blue.yml", "docker-compose.green.yml"):
        (src / "stacks" / name).write_text("services:\n  web:\n    image: bluegreen-base:busybox\n")
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"),
                          "--no-wheels")
    assert rc == 0, err
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "c.zip"), "--no-wheels",
                         "--exclude", "*.green.yml")
    assert rc == 2
    assert err.startswith("ERROR bluegreen.toml: compose/files/green: stacks/docker-compose.green.yml is not in "
                          "the bundle"), err


def test_bundle_interrupted_exits_130_with_one_line(tmp_path, capsys, monkeypatch):
    """Ctrl-C during bundle/push/deploy: 'ERROR interrupted', exit 130 (as build.py always did)."""
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "bundle", interrupted)
    rc, _out, err = build(capsys, "--config", str(tmp_path / "bluegreen.toml"))
    assert (rc, err) == (130, "ERROR interrupted\n")


def test_deploy_options_build_the_create_deployment_request():
    """Only the options given go into create_deployment; the revision carries ETag and version."""
    rev = Revision("b", "demo/rev.zip", "abc", "v1")
    base = {"applicationName": "app", "deploymentGroupName": "g",
            "revision": {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "demo/rev.zip", "bundleType": "zip",
                                                              "eTag": "abc", "version": "v1"}}}
    assert DeployOptions().request("app", "g", rev) == base
    opts = DeployOptions("CodeDeployDefault.AllAtOnce", "why", "OVERWRITE", True, ("DEPLOYMENT_FAILURE",))
    assert opts.request("app", "g", rev) == {
        **base, "deploymentConfigName": "CodeDeployDefault.AllAtOnce", "description": "why",
        "fileExistsBehavior": "OVERWRITE", "ignoreApplicationStopFailures": True,
        "autoRollbackConfiguration": {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]}}


def test_a_new_runtime_venv_removes_the_ones_no_hook_used_for_a_day(tmp_path, capsys):
    """Building a venv for new wheels removes the other venvs no hook used for a day and what dead builds left
    behind, never one a running hook holds nor one used lately; a hook holds its venv's lock while it runs."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    bundle = unpack(tmp_path / "b.zip", tmp_path / "bundle")
    py = bare_python(tmp_path, interpreters()[0], "bare")
    venvs = tmp_path / "venvs"

    def venv(name: str, days_unused: float) -> Path:
        (venvs / name / "bin").mkdir(parents=True)
        (venvs / name / ".bluegreen-ready").write_text("x\n")
        t = time.time() - days_unused * 86400
        os.utime(venvs / name / ".bluegreen-ready", (t, t))
        return venvs / name

    old, held = venv("venv-00000000000000aa", 3), venv("venv-00000000000000bb", 3)
    recent = venv("venv-00000000000000cc", 0.5)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead_build = venvs / f"venv-00000000000000dd.tmp-{gone.pid}"
    dead_build.mkdir()
    holder = subprocess.Popen(   # a hook running on `held`, as hooks/launch leaves it: a shared lock
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT); "
                               "fcntl.flock(fd, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()",
         str(venvs / f".lock-{held.name}")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {"PATH": f"{py.parent}:/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(venvs),
               "BLUEGREEN_VENV_INSTALLER": "unzip", "DEPLOYMENT_ID": "d-prune"}
        run = subprocess.run(noop_hook(bundle), env=env, cwd="/", capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert f"removed {old} (no hook used it for 3 days)" in run.stderr
    assert not old.exists() and not dead_build.exists() and held.is_dir() and recent.is_dir()
    new = [p for p in venvs.iterdir() if p.is_dir() and p not in (held, recent) and p.name.startswith("venv-")]
    assert len(new) == 1 and (new[0] / ".bluegreen-ready").is_file(), new
    # the next hook takes the fast path and holds the new venv's lock (shared) while it runs
    lock = venvs / f".lock-{new[0].name}"
    (bundle / "bluegreen_hooks" / "__main__.py").write_text(
        "import os, sys\n"
        f"ino = os.stat({str(lock)!r}).st_ino\n"
        "mine = [ln for ln in open('/proc/locks') if ' FLOCK ' in ln and ' READ ' in ln\n"
        "        and ln.split()[4] == str(os.getpid()) and ln.split()[5].endswith(f':{ino}')]\n"
        "print('HELD' if mine else 'NOT HELD')\n")
    again = subprocess.run(noop_hook(bundle), env=env, cwd="/", capture_output=True,
                           text=True, timeout=60)
    assert again.stdout.strip() == "HELD", again.stdout + again.stderr


OTHER_UID = 65534   # nobody


def venv_path(bundle: Path, root: Path) -> Path:
    """Where hooks/launch keeps the venv of ``bundle``'s wheels for this Python (its name: hooks/launch's venv_for)."""
    h = hashlib.sha256((bundle / "wheels" / "requirements.txt").read_bytes())
    h.update(f"\0{sys.version_info[0]}.{sys.version_info[1]}\0{sys.implementation.name}".encode())
    return root / ("venv-" + h.hexdigest()[:16])


def fake_venv(venv: Path, marker: Path) -> None:
    """A complete-looking venv whose python only leaves ``marker``: it shows whether the launcher ran it."""
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "python").write_text(f"#!/bin/sh\necho ran > {marker}\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".bluegreen-ready").write_text("x\n")
    for folder, dirs, _files in os.walk(venv):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o755)
    venv.chmod(0o755)


def test_launcher_refuses_a_venv_another_user_could_change_with_one_line(tmp_path, capsys):
    """issue 25 #4: a venv-<hash> owned by another user, or writable by its group, or in a root (or a folder above
    it) others may write, is never run: one ERROR line naming the folder; the same venv owned by root runs."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    bundle = unpack(tmp_path / "b.zip", tmp_path / "bundle")
    marker = tmp_path / "ran"
    tmp_path.chmod(0o755)

    def other_owner(venv: Path) -> str:
        for folder, dirs, files in os.walk(venv):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.lchown(name, OTHER_UID, OTHER_UID)
        return f"{venv} is owned by uid {OTHER_UID}"

    def group_writable_bin(venv: Path) -> str:
        (venv / "bin").chmod(0o775)
        return f"{venv / 'bin'} is writable by its group"

    def world_writable_root(venv: Path) -> str:
        venv.parent.chmod(0o777)
        return f"{venv.parent} is writable by others"

    def world_writable_parent(venv: Path) -> str:
        venv.parent.parent.chmod(0o777)           # not sticky: anyone may rename the root away and put theirs
        return f"{venv.parent.parent} is writable by others"

    def other_owned_site_packages(venv: Path) -> str:
        [site] = venv.glob("lib/*/site-packages")
        os.chown(site, OTHER_UID, OTHER_UID)
        return f"{site} is owned by uid {OTHER_UID}"

    def linked_root(venv: Path) -> None:             # trusted: a root that is a link to a trusted folder
        venv.parent.rename(venv.parent.parent / "real")
        venv.parent.symlink_to("real")

    def link_to_a_world_writable_root(venv: Path) -> str:
        linked_root(venv)
        (venv.parent.parent / "real").chmod(0o777)
        return f"{venv.parent} is writable by others"          # the root, as the hook names it

    for n, case in enumerate([other_owner, group_writable_bin, world_writable_root, world_writable_parent,
                              other_owned_site_packages, link_to_a_world_writable_root, None, linked_root]):
        marker.unlink(missing_ok=True)
        parent = tmp_path / f"case{n}"
        parent.mkdir(mode=0o755)
        venv = venv_path(bundle, parent / "venvs")
        fake_venv(venv, marker)
        venv.parent.chmod(0o755)
        why = case(venv) if case else None
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(venv.parent),
               "LIFECYCLE_EVENT": "ApplicationStop"}
        run = subprocess.run(noop_hook(bundle), env=env, cwd="/", capture_output=True,
                             text=True, timeout=60)
        if why is None:                             # the controls: a trusted venv is run
            assert run.returncode == 0 and marker.read_text() == "ran\n", run.stdout + run.stderr
            continue
        assert run.returncode == 1 and not marker.exists(), (case.__name__, run.stdout, run.stderr)
        [line] = run.stdout.splitlines()
        assert line.startswith("ERROR ApplicationStop: refusing ") and why in line, (case.__name__, line)
        assert "Traceback" not in run.stderr, run.stderr


def test_launcher_under_runas_with_a_stale_venv_it_cannot_remove_is_one_line(tmp_path, capsys):
    """issue 25 #7: a hook run as another user (runas) whose venv root holds an incomplete venv with a folder of
    root's in it: one ERROR line naming the venv (was `OSError: [Errno 39] Directory not empty` on the rename),
    before any build; nothing left behind but the stale venv."""
    src = make_src(tmp_path, {"app": "demo", "container": {"build": "app"},
                              "deploy": {"state_dir": str(tmp_path / "st")}})
    rc, _out, err = build(capsys, "--config", str(src / "bluegreen.toml"), "-o", str(tmp_path / "b.zip"))
    assert rc == 0, err
    base = Path(tempfile.mkdtemp(prefix="bgh-runas-", dir="/tmp"))   # tmp_path's parents are 0700: not for nobody
    try:
        base.chmod(0o755)
        bundle = unpack(tmp_path / "b.zip", base / "bundle")
        root = base / "venvs"
        root.mkdir(mode=0o755)
        venv = venv_path(bundle, root)
        (venv / "lib").mkdir(parents=True)
        (venv / "lib" / "left-by-root").write_text("x\n")            # root's folder: the hook's user cannot empty it
        os.chown(root, OTHER_UID, OTHER_UID)
        os.chown(venv, OTHER_UID, OTHER_UID)
        env = {"PATH": "/usr/bin:/bin", "BLUEGREEN_VENV_ROOT": str(root), "LIFECYCLE_EVENT": "BeforeInstall",
               "HOME": "/"}
        run = subprocess.run([str(bundle / "hooks" / "BeforeInstall")], env=env, cwd="/", capture_output=True,
                             text=True, timeout=300, user=OTHER_UID, group=OTHER_UID, extra_groups=[])
        assert run.returncode == 1 and len(run.stdout.splitlines()) == 1, run.stdout + run.stderr[-3000:]
        line = run.stdout.strip()
        assert line.startswith(f"ERROR BeforeInstall: cannot remove the incomplete runtime venv {venv} ("), line
        assert "Permission denied" in line and "remove it as root" in line, line
        assert "Traceback" not in run.stderr and "installing" not in run.stderr, run.stderr
        assert sorted(p.name for p in root.iterdir()) == sorted([venv.name, f".lock-{venv.name}"])
    finally:
        shutil.rmtree(base)
