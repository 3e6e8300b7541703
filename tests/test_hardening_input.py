"""Issue 12, part B: input that must be refused with one line (exit 2) and never followed, run or traced back.

Bundles with links leaving them, damaged zips, appspec edge cases, SIGTERM to the local runner, values with
a trailing newline and names Docker would refuse — each through the real runner or the real hooks.
"""
from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bluegreen_hooks.cli import main
from bluegreen_hooks.config.appspec import decode, parse
from bluegreen_hooks.delivery.bundle import read_bundle
from bluegreen_hooks.errors import ConfigError, DeliveryError
from tests.helpers import wait_for

BASE = "version: 0.0\nos: linux\n"
HOOK = BASE + "hooks:\n  AfterInstall:\n    - location: s/AfterInstall\n      timeout: 30\n"


def _local(bundle: Path, root: Path, *extra: str) -> int:
    return main(["local", str(bundle), "--root", str(root), "-a", "shop", "-g", "grp-1", *extra])


def _folder(path: Path, appspec: str = HOOK) -> Path:
    (path / "s").mkdir(parents=True)
    (path / "appspec.yml").write_text(appspec)
    return path


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "outside" / "secret"
    victim.parent.mkdir()
    victim.write_text("#!/bin/sh\necho ran-the-outside-file\n")
    victim.chmod(0o600)
    return victim


def _last_error(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert "Traceback" not in out, out
    return lines[-1]


# ------------------------------------------------------------------------ 3. links leaving the bundle

def test_local_folder_bundle_hook_symlink_outside_is_refused_and_not_chmodded(tmp_path, capsys):
    """A hook that is a symlink to a file outside the bundle: exit 2, one line; the target keeps mode 0600."""
    victim = _victim(tmp_path)
    b = _folder(tmp_path / "b")
    (b / "s" / "AfterInstall").symlink_to(victim)
    assert _local(b, tmp_path / "root") == 2
    out = capsys.readouterr().out
    assert "s/AfterInstall: symlink leaves the bundle" in _last_error(out)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert "ran-the-outside-file" not in out


def test_local_folder_bundle_directory_symlink_outside_is_refused(tmp_path, capsys):
    """A folder of the bundle that links outside it (s -> /elsewhere) is refused the same way, also by --dry-run."""
    victim = _victim(tmp_path)
    b = tmp_path / "b"
    b.mkdir()
    (b / "appspec.yml").write_text(HOOK)
    (victim.parent / "AfterInstall").write_text("#!/bin/sh\necho ran-the-outside-file\n")
    (victim.parent / "AfterInstall").chmod(0o644)
    (b / "s").symlink_to(victim.parent)
    assert _local(b, tmp_path / "root") == 2
    assert "s: symlink leaves the bundle" in _last_error(capsys.readouterr().out)
    assert stat.S_IMODE((victim.parent / "AfterInstall").stat().st_mode) == 0o644
    assert _local(b, tmp_path / "root2", "--dry-run") == 2
    assert "symlink leaves the bundle" in capsys.readouterr().err


def test_local_zip_bundle_symlink_entry_outside_is_refused(tmp_path, capsys):
    """A zip whose hook entry is a symlink (as `zip -y` stores it) to a path outside: exit 2, never followed."""
    victim = _victim(tmp_path)
    z = tmp_path / "rev.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("appspec.yml", HOOK)
        link = zipfile.ZipInfo("s/AfterInstall")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, str(victim))
    assert _local(z, tmp_path / "root") == 2
    assert "s/AfterInstall: symlink leaves the bundle" in _last_error(capsys.readouterr().out)
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def test_local_zip_entry_leaving_the_bundle_is_refused(tmp_path, capsys):
    """Zip slip: an entry named ../../x is refused before anything is extracted."""
    z = tmp_path / "rev.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("appspec.yml", HOOK)
        zf.writestr("../../escaped", "x")
    assert _local(z, tmp_path / "root") == 2
    assert "entry '../../escaped' would be extracted outside the bundle" in _last_error(capsys.readouterr().out)
    assert not list(tmp_path.rglob("escaped"))


def test_local_zip_bundle_symlink_inside_is_kept(tmp_path, capsys):
    """A link that stays inside the bundle is fine (unpacked as a link, as unzip does) and runs."""
    z = tmp_path / "rev.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("appspec.yml", HOOK)
        real = zipfile.ZipInfo("real/hook.sh")
        real.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(real, "#!/bin/sh\necho inside-link-ran\n")
        link = zipfile.ZipInfo("s/AfterInstall")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../real/hook.sh")
    assert _local(z, tmp_path / "root", "--events", "AfterInstall") == 0
    assert "inside-link-ran" in capsys.readouterr().out


# ------------------------------------------------------------------------ 14. appspec edge cases, damaged zips

@pytest.mark.parametrize("timeout", ["²", "1" * 5000, "0" * 5000 + "1", "٣", "1e3", "-1", "0x10", "1_000"])
def test_appspec_odd_timeouts_are_one_line(timeout):
    """Unicode digits, 5000-digit numbers, signs, underscores: one ConfigError naming the key, no traceback."""
    with pytest.raises(ConfigError) as e:
        parse(BASE + f"hooks:\n  AfterInstall:\n    - location: x\n      timeout: {timeout}\n")
    assert str(e.value).startswith("appspec.yml: hooks/AfterInstall/0/timeout: should be a whole number of seconds")
    assert "\n" not in str(e.value)


def test_appspec_non_utf8_is_one_line():
    with pytest.raises(ConfigError) as e:
        decode(b"version: 0.0\nos: linux\n# caf\xe9\n")
    assert str(e.value) == "appspec.yml: line 3: not UTF-8 text (byte 0xe9); save the appspec as UTF-8"


def test_local_non_utf8_appspec_exits_2_with_one_line(tmp_path, capsys):
    """Through the runner: the documented exit 2 for a bad appspec, the parser's line last, no traceback."""
    b = _folder(tmp_path / "b")
    (b / "appspec.yml").write_bytes(HOOK.encode() + b"# \xff\xfe\n")
    assert _local(b, tmp_path / "root") == 2
    assert "appspec.yml: line 7: not UTF-8 text (byte 0xff)" in _last_error(capsys.readouterr().out)


def test_local_bad_appspec_timeout_exits_2(tmp_path, capsys):
    b = _folder(tmp_path / "b", BASE + "hooks:\n  AfterInstall:\n    - location: s/x\n      timeout: ²\n")
    assert _local(b, tmp_path / "root") == 2
    assert "hooks/AfterInstall/0/timeout: should be a whole number" in _last_error(capsys.readouterr().out)


def _bundle_zip_with_a_stored_wheel(path: Path) -> int:
    """A bundle zip whose last entry is a wheel stored uncompressed; return where that wheel's data ends."""
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as wz:
        wz.writestr("docker/__init__.py", "x = 1\n" * 50)
        wz.writestr("docker-7.1.0.dist-info/METADATA", "Name: docker\n")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("appspec.yml", HOOK)
        zf.writestr("bluegreen.toml", 'app = "shop"\n')
        zf.writestr(zipfile.ZipInfo("wheels/docker-7.1.0-py3-none-any.whl"), wheel.getvalue())
        info = zf.getinfo("wheels/docker-7.1.0-py3-none-any.whl")
    return info.header_offset + 30 + len(info.filename) + len(wheel.getvalue())


def test_truncated_zip_is_reported_damaged_not_as_missing_appspec(tmp_path, capsys):
    """Cut off after an embedded wheel, zipfile would read the wheel's directory: we say the zip is damaged."""
    z = tmp_path / "rev.zip"
    end = _bundle_zip_with_a_stored_wheel(z)
    z.write_bytes(z.read_bytes()[:end])
    with zipfile.ZipFile(z) as zf:            # the trap: the wheel's entries, no appspec.yml
        assert "appspec.yml" not in zf.namelist()
    assert _local(z, tmp_path / "root") == 2
    last = _last_error(capsys.readouterr().out)
    assert "the zip is damaged (its end is missing (truncated?)" in last and "no appspec.yml" not in last
    with pytest.raises(DeliveryError, match="the zip is damaged"):
        read_bundle(z)


def test_zip_with_a_crc_error_is_reported_damaged(tmp_path, capsys):
    z = tmp_path / "rev.zip"
    _bundle_zip_with_a_stored_wheel(z)
    data = bytearray(z.read_bytes())
    at = data.index(b"x = 1")
    data[at] = ord("y")
    z.write_bytes(bytes(data))
    assert _local(z, tmp_path / "root") == 2
    assert "fails its CRC check" in _last_error(capsys.readouterr().out)
    with pytest.raises(DeliveryError, match="fails its CRC check"):
        read_bundle(z)


def test_zip_cut_in_its_first_entry_is_damaged_not_foreign(tmp_path, capsys):
    z = tmp_path / "rev.zip"
    _bundle_zip_with_a_stored_wheel(z)
    z.write_bytes(z.read_bytes()[:40])
    assert _local(z, tmp_path / "root") == 2
    assert "the zip is damaged" in _last_error(capsys.readouterr().out)


# ------------------------------------------------------------------------ 7. SIGTERM to `local`

def _hook_processes(root: Path) -> list[int]:
    """Processes (other than zombies) whose command line names a path under ``root``: the runner's hooks."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root) in cmd and state != "Z" and "local" not in cmd.split():
            found.append(int(entry))
    return found


def test_sigterm_to_local_stops_the_running_hook_and_nothing_switches_later(bed, tmp_path):
    """A real deployment through `local`, a real SIGTERM while ApplicationStart waits for the new colour:
    the runner forwards it to the hook's group and waits; the hook cleans up; traffic stays on blue; no
    ValidateService; no hook process survives the runner; exit 143 with one ERROR line."""
    import threading

    from testbed.bundle import deploy
    from tests.helpers import ok

    ok(deploy(bed.bundle("v1"), "d-one"))
    slow = bed.bundle("v2", container={"env": {"HOST": "127.0.0.1", "START_DELAY": "8"}})
    root = tmp_path / "local-root"
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "bluegreen_hooks", "local", str(slow), "--root", str(root),
                             "-a", bed.app, "--deployment-id", "d-slow"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(Path(__file__).resolve().parent.parent))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("starting" in ln and "[ApplicationStart" in ln for ln in lines), timeout=120,
                 what="ApplicationStart to start the green container")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    out = "".join(lines)
    assert code == 128 + signal.SIGTERM, out
    last = _last_error(out)
    assert last.startswith("ERROR local deployment d-slow failed at ApplicationStart") and "SIGTERM" in last, out
    assert "==> ValidateService" not in out
    assert _hook_processes(root) == [], out
    assert bed.state()["live"] == "blue" and "colour=blue" in bed.include()
    wait_for(lambda: bed.running_colours() == ["blue"], timeout=30, what="the hook's cleanup to remove green")


# ------------------------------------------------------------------------ 12, 13. values the hooks must refuse

def _bad_values():
    """(table overrides, key): trailing newlines (``$`` matched before them) and names Docker/compose refuse."""
    return [
        ({"nginx": {"variable": "service_url\n"}}, "nginx/variable"),
        ({"nginx": {"colour_variable": "bluegreen_colour\n"}}, "nginx/colour_variable"),
        ({"nginx": {"upstream": "shop_backend\n"}}, "nginx/upstream"),
        ({"nginx": {"include": "/tmp/x.inc\n"}}, "nginx/include"),
        ({"nginx": {"validate_path": "/\n"}}, "nginx/validate_path"),
        ({"nginx": {"colour_header": "X-Colour\n"}}, "nginx/colour_header"),
        ({"colours": {"host": "localhost\n"}}, "colours/host"),
        ({"health": {"path": "/health\n"}}, "health/path"),
        ({"container": {"image": "busybox:1\n", "build": None}}, "container/image"),
        ({"container": {"env": {"PORT\n": "1"}}}, "container/env/PORT\n"),
        ({"container": {"port_env": "PORT\n"}}, "container/port_env"),
        ({"container": {"dockerfile": "Dockerfile\n"}}, "container/dockerfile"),
        ({"container": {"build_network": "host\n"}}, "container/build_network"),
        ({"deploy": {"state_dir": "/tmp/state\n"}}, "deploy/state_dir"),
        ({"app": "shop\n"}, "app"),
        # valid for our old pattern, not for Docker: bluegreen-a..b is no image name, x- no repository
        ({"app": "a..b"}, "app"),
        ({"app": "x-"}, "app"),
        ({"app": "x."}, "app"),
        ({"app": "x_"}, "app"),
        ({"app": "a.-b"}, "app"),
        ({"app": "a___b"}, "app"),
        ({"app": "a" * 64}, "app"),
        ({"container": {"image": "a..b:1", "build": None}}, "container/image"),
        ({"container": {"image": "busybox:", "build": None}}, "container/image"),
        ({"container": {"image": "Busybox:1", "build": None}}, "container/image"),
        ({"container": {"image": "busybox-:1", "build": None}}, "container/image"),
        ({"container": {"image": "busybox@sha256:abc", "build": None}}, "container/image"),
        ({"container": {"image": "busybox:" + "1" * 129, "build": None}}, "container/image"),
    ]


def _docker_objects(client, apps):
    """Containers and images Docker has for any of ``apps`` (labels, names, repositories)."""
    found = []
    for c in client.containers.list(all=True, ignore_removed=True):
        if c.labels.get("bluegreen.app") in apps or any(c.name.startswith(f"{a}-") for a in apps):
            found.append(c.name)
    for img in client.api.images():   # the list call: no inspect per image
        found += [t for t in img.get("RepoTags") or [] if any(t.startswith(f"bluegreen-{a}:") for a in apps)]
    return found


def test_values_with_a_newline_or_invalid_for_docker_are_refused_by_before_install(bed):
    """Through the real BeforeInstall hook: exit 2, one line naming the key; the live app's state, include and
    containers unchanged; no Docker object created for the refused names."""
    from testbed.bundle import bed_config, deploy, make_bundle, run_hook
    from tests.helpers import ok

    ok(deploy(bed.bundle("v1"), "d-good"))
    state_bytes = (bed.state_dir / f"{bed.app}.json").read_bytes()
    include = bed.include()
    containers = sorted((c.id, c.status) for c in bed.containers())
    apps = {o["app"] for o, _ in _bad_values() if "app" in o}
    wrong = []
    for i, (overrides, key) in enumerate(_bad_values()):
        cfg = bed_config(bed.app, bed.nginx, bed.site, bed.ports, bed.state_dir, "v2")
        for table, values in overrides.items():
            cfg[table] = {k: v for k, v in {**cfg[table], **values}.items() if v is not None} \
                if isinstance(values, dict) else values
        b = make_bundle(bed.tmp / f"bad-{i}", cfg)
        run = run_hook(b, "BeforeInstall", f"d-bad-{i}", python=sys.executable)
        lines = [ln for ln in run.output.splitlines() if ln.strip()]
        prefix = f"ERROR BeforeInstall: bluegreen.toml: {key}: "
        if key.endswith("\n"):          # a key with a newline is shown as its repr
            prefix = "ERROR BeforeInstall: bluegreen.toml: container/env/PORT\\n: "
        if run.returncode != 2 or len(lines) != 1 or not lines[0].startswith(prefix) or "Traceback" in run.output:
            wrong.append(f"{key!r} {overrides}: exit {run.returncode}\n{run.output}")
    assert not wrong, "\n".join(wrong)
    assert (bed.state_dir / f"{bed.app}.json").read_bytes() == state_bytes
    assert bed.include() == include
    assert sorted((c.id, c.status) for c in bed.containers()) == containers
    assert _docker_objects(bed.client, apps) == []


# ------------------------------------------------------------------------ 16. smaller messages

def test_port_held_by_another_apps_container_names_that_app(bed, run_container, example_images):
    """Another app's bluegreen container (host network) listens on our green port: BeforeInstall says which
    app, colour and container holds it, not "not a bluegreen-hooks container"."""
    from testbed.bundle import deploy, run_hook
    from tests.helpers import get, ok

    ok(deploy(bed.bundle("v1"), "d-one"))
    other = run_container(example_images("v1"), name=f"{bed.app}x-blue",
                          environment={"PORT": str(bed.ports[1]), "HOST": "127.0.0.1"},
                          labels={"bluegreen.app": f"{bed.app}x", "bluegreen.colour": "blue",
                                  "bluegreen.deployment": "d-other"})
    wait_for(lambda: get(f"http://127.0.0.1:{bed.ports[1]}/health")[0] == 200, timeout=30,
             what="the other app's container to listen")
    run = run_hook(bed.bundle("v2"), "BeforeInstall", "d-two", python=sys.executable)
    assert run.returncode == 1, run.output
    assert run.last_line.startswith(f"ERROR BeforeInstall: green port 127.0.0.1:{bed.ports[1]} is already in use by "
                                    f"the bluegreen-hooks container {other.name} (app {bed.app}x, colour blue, "
                                    f"deployment d-other); each app needs its own ports: change colours/green"), \
        run.output
    assert "not a bluegreen-hooks container" not in run.output and len(run.last_line) < 300


def _image_ids_built_from(client, marker: str) -> list[str]:
    """Images whose history has a step with ``marker`` (the failed build's own layers)."""
    found = []
    for img in client.images.list(all=True):
        try:
            if any(marker in (h.get("CreatedBy") or "") for h in img.history()):
                found.append(img.short_id)
        except Exception:       # removed meanwhile (other tests share the daemon)
            continue
    return found


def test_failed_build_says_what_serves_and_leaves_no_dangling_images(bed, example_images):
    """A Dockerfile whose third step fails: ApplicationStart exits 1; the last line says the cause, that blue
    keeps serving and to fix the Dockerfile; the images of the two steps that succeeded are removed."""
    import uuid

    from testbed.bundle import deploy
    from tests.helpers import ok

    example_images("v1")          # the base image exists
    ok(deploy(bed.bundle("v1"), "d-one"))
    marker = f"bgh-{uuid.uuid4().hex}"
    b = bed.bundle("v2")
    (b / "app" / "Dockerfile").write_text(f"FROM bluegreen-base:busybox\nRUN echo {marker} > /a\n"
                                          f"RUN echo two > /b\nRUN echo failing-step; exit 3\n")
    runs = deploy(b, "d-broken", events=("BeforeInstall", "ApplicationStart"))
    start = runs[-1]
    assert (start.event, start.returncode) == ("ApplicationStart", 1), start.output
    last = start.last_line
    assert last.startswith("ERROR ApplicationStart: docker build of app/Dockerfile failed: "), last
    assert last.endswith("; blue keeps serving; fix the Dockerfile and deploy again"), last
    assert "removed 2 intermediate image(s) of the failed build" in start.output
    assert _image_ids_built_from(bed.client, marker) == []
    assert bed.state()["live"] == "blue" and "colour=blue" in bed.include()


def test_relative_state_dir_is_resolved_and_a_bad_one_is_named(bed, monkeypatch, capsys):
    """--state-dir state (relative) works from its parent folder; a bad --state-dir is refused naming
    --state-dir, not $BLUEGREEN_STATE_DIR."""
    from testbed.bundle import deploy
    from tests.helpers import ok

    ok(deploy(bed.bundle("v1"), "d-one"))
    monkeypatch.chdir(bed.state_dir.parent)
    monkeypatch.delenv("BLUEGREEN_STATE_DIR", raising=False)
    assert main(["history", "--state-dir", bed.state_dir.name]) == 0, capsys.readouterr()
    assert "d-one" in capsys.readouterr().out
    assert main(["history", "--state-dir", "a;b"]) == 2
    assert capsys.readouterr().err.strip() == ("ERROR --state-dir: should be a path of letters, digits, '.', '_', "
                                               "'-', '@', '+' and '/', not 'a;b'")
