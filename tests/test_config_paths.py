"""Issue 25, findings 9 and 10, against the real test bed (Docker, nginx, the hooks as the agent runs them):

* every path the config names that the package opens (nginx/include and pid_file, deploy/metrics_dir and emf,
  notify/webhook_file and auth_file, maintenance/bypass_token_file, the state directory) goes through
  host/files.py: a FIFO (or a folder, a symlink where links are refused) there is refused in one line naming
  the key and the path, never opened in a way that blocks (a FIFO at nginx/include hung `status`,
  `maintenance on/off` and `hook BeforeInstall --dry-run` for ever). Every command runs with a subprocess
  timeout, so a regression fails instead of hanging;
* values read from the environment (`*_env`) are resolved and refused in BeforeInstall, before the build.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import files
from testbed.bundle import deploy, hook_env, run_hook
from tests.helpers import ok

QUICK = 20   # seconds: every refusal below takes well under one; a hang is killed and fails the test


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command line in a fresh process, killed after QUICK seconds (TimeoutExpired fails the test)."""
    return subprocess.run([sys.executable, "-m", "bluegreen_hooks", *argv], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=QUICK, env=env, cwd="/")


def refused_in_one_line(proc: subprocess.CompletedProcess, key: str, path: Path, what: str) -> None:
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(err) == 1 and err[0].startswith("ERROR ") and f"{key}: {path} is {what}" in err[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_fifo_at_nginx_include_is_refused_quickly_by_every_command(bed):
    """The issue's hang: nginx/include naming a FIFO. status, maintenance on/off, hook BeforeInstall (dry run
    and real) each exit 2 within seconds with one line naming the key and the path; nothing is written to it."""
    b = bed.bundle("v1")
    ok(deploy(b, "d-one"))
    include = bed.site.include
    saved = include.read_bytes()
    include.unlink()
    os.mkfifo(include)
    try:
        state, config = ["--state-dir", str(bed.state_dir)], ["--config", str(b / "bluegreen.toml")]
        for argv in (["status", *config], ["status", "--json", *config], ["maintenance", "on", *state],
                     ["maintenance", "off", *state], ["maintenance", "on", *config]):
            proc = cli(*argv)
            if argv[-3:-2] == ["--json"]:
                assert proc.returncode == 2 and "nginx/include" in proc.stdout, proc
                continue
            refused_in_one_line(proc, "nginx/include", include, "a FIFO (named pipe), not a regular file")
        guard = f"ERROR BeforeInstall: nginx/include: {include} is not ours to replace: it is not a regular file"
        proc = cli("hook", "BeforeInstall", "--dry-run", "--bundle", str(b), env=hook_env("d-two"))
        assert proc.returncode == 2 and proc.stdout.splitlines()[-1].startswith(guard), proc
        run = run_hook(b, "BeforeInstall", "d-two", timeout=QUICK, python=sys.executable)
        assert run.returncode == 2 and run.last_line.startswith(guard), run.output
        assert include.is_fifo() and bed.running_colours() == ["blue"]
    finally:
        include.unlink()
        include.write_bytes(saved)


@pytest.mark.parametrize("key", ["nginx/pid_file", "deploy/metrics_dir", "deploy/emf", "notify/webhook_file",
                                 "notify/auth_file", "maintenance/bypass_token_file"])
@pytest.mark.parametrize("shape", ["fifo", "folder"])
def test_a_fifo_or_folder_at_any_config_path_is_refused_by_before_install(bed, tmp_path, key, shape):
    """Each other config path as a FIFO (or a folder where a file belongs, a FIFO where a folder belongs):
    BeforeInstall exits 2 within seconds, one line naming the key and the path, before anything starts."""
    path = tmp_path / "odd"
    if shape == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    if key == "deploy/metrics_dir" and shape == "folder":     # a folder is right there: its .prom file is not
        (path / f"{bed.app}.prom").parent.mkdir(exist_ok=True)
        os.mkfifo(path / f"{bed.app}.prom")
        path = path / f"{bed.app}.prom"
        want = "a FIFO (named pipe), not a regular file"
    elif key == "deploy/metrics_dir":
        want = "a FIFO (named pipe), not a folder"
    else:
        want = ("a FIFO (named pipe)" if shape == "fifo" else "a folder") + ", not a regular file"
    table, name = key.split("/")
    where = "deploy" if name in ("metrics_dir", "emf") else table
    value = str(path.parent if key == "deploy/metrics_dir" and shape == "folder" else path)
    extra: dict = {where: {name: value}}
    if name == "auth_file":
        extra["notify"]["webhook"] = "http://127.0.0.1:9/"
    if table == "maintenance":
        extra["maintenance"]["bypass_header"] = "X-Ops-Bypass"
    b = bed.bundle("v1", **extra)
    run = run_hook(b, "BeforeInstall", "d-one", timeout=QUICK, python=sys.executable)
    assert run.returncode == 2, run.output
    assert run.last_line.startswith(f"ERROR BeforeInstall: {key}: {path} is {want}"), run.output
    assert bed.containers() == []


def test_a_symlink_at_deploy_emf_is_refused_by_before_install(bed, tmp_path):
    """deploy/emf is appended to as root: a symlink there (to /etc/passwd, say) is refused, never followed."""
    target, link = tmp_path / "target", tmp_path / "emf.log"
    target.write_text("keep\n")
    link.symlink_to(target)
    b = bed.bundle("v1", deploy={"emf": str(link)})
    run = run_hook(b, "BeforeInstall", "d-one", timeout=QUICK, python=sys.executable)
    assert run.returncode == 2, run.output
    assert run.last_line.startswith(f"ERROR BeforeInstall: deploy/emf: {link} is a symbolic link, not a regular "
                                    f"file"), run.output
    assert target.read_text() == "keep\n" and bed.containers() == []


def test_the_state_dir_as_a_fifo_and_the_config_as_a_fifo_are_refused_quickly(bed, tmp_path):
    """--state-dir naming a FIFO, --config naming a FIFO: one line, exit 2 or 1, no hang."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = cli("status", "--state-dir", str(fifo))
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1 and str(fifo) in proc.stderr, proc
    proc = cli("status", "--config", str(fifo))
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc
    assert f"{fifo} is not a regular file" in proc.stderr, proc


def test_the_helper_checks_the_type_on_the_descriptor_and_never_blocks(tmp_path):
    """host/files: read_file on a FIFO with no writer returns at once with the error (it used to block in open),
    a symlink is refused when not followed, a missing file is FileNotFoundError, a regular file is read."""
    fifo, link, regular = tmp_path / "fifo", tmp_path / "link", tmp_path / "regular"
    os.mkfifo(fifo)
    regular.write_text("x")
    link.symlink_to(regular)
    with pytest.raises(ConfigError, match=r"^k: .*/fifo is a FIFO \(named pipe\), not a regular file"):
        files.read_file(fifo, "k")
    with pytest.raises(ConfigError, match=r"^k: .*/fifo is a FIFO \(named pipe\), not a regular file"):
        files.open_file(fifo, "k", os.O_WRONLY | os.O_APPEND | os.O_CREAT, follow=False)
    with pytest.raises(ConfigError, match=r"^k: .*/link is a symbolic link"):
        files.open_file(link, "k", follow=False)
    with pytest.raises(ConfigError, match=r"^k: .*/fifo is a FIFO \(named pipe\), not a folder"):
        files.check_type(fifo, "k", "folder")
    with pytest.raises(FileNotFoundError):
        files.read_file(tmp_path / "missing", "k")
    assert files.read_file(link, "k") == b"x" and files.check_type(tmp_path / "missing", "k") is None



# The state directory's files, each as the package opens it, in a child killed after QUICK seconds: the code
# prints the error's class and text (or "read" when it read the file), so a hang fails the test instead.
_STATE_OPS = {
    "shop.json": "from bluegreen_hooks.host.store import Store\nStore(D, 'shop').read()",
    "shop.lock": "from bluegreen_hooks.host.store import Store\nwith Store(D, 'shop').locked(): pass",
    "shop.releases/d-ABCDEFGHI/release.json": "from bluegreen_hooks.host import releases\n"
                                             "releases.summary(D, 'shop')",
    "shop.clients.log": "from bluegreen_hooks.observe.clients import LogReader\n"
                        "LogReader(D / 'shop.clients.log', 0).read()",
    ".instance.json": "from bluegreen_hooks.host import instance\ninstance.read(D)",
}


def _in_child(state_dir: Path, code: str) -> str:
    prog = (f"import sys\nfrom pathlib import Path\nD = Path({str(state_dir)!r})\ntry:\n"
            + "".join(f"    {line}\n" for line in code.splitlines())
            + "    print('read')\nexcept Exception as exc:\n    print(type(exc).__name__ + ': ' + str(exc))\n")
    proc = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=QUICK,
                          stdin=subprocess.DEVNULL, cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.returncode == 0 and proc.stderr == "", proc
    return proc.stdout.strip()


@pytest.mark.parametrize("name", list(_STATE_OPS))
def test_a_fifo_or_symlink_in_the_state_dir_is_refused_quickly_naming_it(tmp_path, name):
    """Each file the package opens in the state directory (state, lock, release record, canary clients log,
    instance record) as a FIFO: refused at once by host/files.py's type check, one line naming deploy/state_dir
    and the path (a release record, the clients log and the instance record hung for ever). As a symlink:
    refused, never followed (trust's message for the state and the lock). The state dir itself as a FIFO:
    refused naming it."""
    state_dir = tmp_path / "state"
    path = state_dir / name
    path.parent.mkdir(parents=True, mode=0o700)
    state_dir.chmod(0o700)
    os.mkfifo(path, 0o600)
    out = _in_child(state_dir, _STATE_OPS[name])
    assert out == f"ConfigError: deploy/state_dir: {path} is a FIFO (named pipe), not a regular file; refusing to " \
                  f"open it", out
    path.unlink()
    target = tmp_path / "elsewhere"
    target.write_text('{"deployment": "d-ABCDEFGHI"}')
    target.chmod(0o600)
    path.symlink_to(target)
    out = _in_child(state_dir, _STATE_OPS[name])
    assert out.startswith((f"StateError: {path} is a symbolic link", f"ConfigError: deploy/state_dir: {path} is a "
                           f"symbolic link, not a regular file")), out
    assert target.read_text() == '{"deployment": "d-ABCDEFGHI"}'
    fifo_dir = tmp_path / "fifo-dir"
    os.mkfifo(fifo_dir)
    out = _in_child(fifo_dir, "from bluegreen_hooks.host.store import Store\nStore(D, 'shop').check()")
    assert out == f"ConfigError: deploy/state_dir: {fifo_dir} is a FIFO (named pipe), not a folder; refusing to " \
                  f"open it", out


def test_a_fifo_at_nginx_pid_file_is_named_by_status(bed, tmp_path):
    """status with a FIFO at nginx/pid_file said "nginx is not running"; now its warning names the key, the path
    and the type, in one line, within seconds."""
    fifo = tmp_path / "nginx.pid"
    os.mkfifo(fifo)
    b = bed.bundle("v1", nginx={"pid_file": str(fifo)})
    proc = cli("status", "--config", str(b / "bluegreen.toml"))
    want = f"WARNING: nginx/pid_file: {fifo} is a FIFO (named pipe), not a regular file; refusing to open it"
    assert want in proc.stdout.splitlines(), proc
    assert "nginx is not running" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr, proc


# ------------------------------------------------------------------------------------------ 9. *_env values

def test_an_unset_bypass_token_env_with_keep_is_refused_by_before_install(bed, monkeypatch):
    """Issue 25, finding 9: during_maintenance = "keep" with bypass_token_env unset in the hook's environment
    passed BeforeInstall and failed ApplicationStart after the build. Now BeforeInstall refuses, one line naming
    the key and the variable; set, the deployment succeeds."""
    monkeypatch.delenv("OPS_BYPASS_TOKEN", raising=False)
    cfg = {"deploy": {"during_maintenance": "keep"},
           "maintenance": {"bypass_header": "X-Ops-Bypass", "bypass_token_env": "OPS_BYPASS_TOKEN"}}
    b = bed.bundle("v1", **cfg)
    runs = deploy(b, "d-one")
    assert [r.event for r in runs][-1] == "BeforeInstall" and runs[-1].returncode == 2, runs[-1].output
    assert runs[-1].last_line == ("ERROR BeforeInstall: maintenance/bypass_token_env ($OPS_BYPASS_TOKEN): the "
                                  "variable is not set in this environment (the hooks need the bypass token when "
                                  "deploy/during_maintenance = \"keep\")"), runs[-1].output
    assert bed.containers() == []
    runs = deploy(b, "d-two", extra_env={"OPS_BYPASS_TOKEN": "short"})
    assert runs[-1].event == "BeforeInstall" and runs[-1].returncode == 2
    assert "maintenance/bypass_token_env ($OPS_BYPASS_TOKEN): the bypass token should be" in runs[-1].last_line
    ok(deploy(b, "d-three", extra_env={"OPS_BYPASS_TOKEN": "s3cr3t-Token-0123456789"}))


def test_an_unset_notify_auth_env_is_refused_by_before_install(bed, monkeypatch):
    """notify/auth_env unset: BeforeInstall refuses naming the key and the variable (the notifications would
    all go out without their auth header, or not at all)."""
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    b = bed.bundle("v1", notify={"webhook": "http://127.0.0.1:9/x", "auth_env": "HOOK_TOKEN"})
    run = run_hook(b, "BeforeInstall", "d-one", timeout=QUICK, python=sys.executable)
    assert run.returncode == 2 and run.last_line == (
        "ERROR BeforeInstall: notify/auth_env ($HOOK_TOKEN) is empty or not one line (notifications would not be "
        "sent)"), run.output
