"""Hardening of the state, the include and the operator commands (issue 12, part A), against the real test bed:
real dockerd and nginx, the real hooks run as the agent runs them, the operator commands through ``main()``.

* a state dir / state, lock or config copy another user could write is refused before anything runs, and
  doctor never runs a command from an unverified config copy; symlinks there are never followed;
* ``nginx/include`` must name a file that is ours to replace; a failed verify restores content, owner, mode;
* a full (or read-only) state dir after the switch: one ERROR line and state, include, containers agree;
* the same deployment id twice at once: the second process is refused;
* ``unlock``, and a new deployment of the same group taking over one that failed outside our hooks;
* a state file of the wrong types: rebuilt by BeforeInstall, reported by doctor, no traceback anywhere;
* ``--json`` prints exactly one object, also on failure.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bluegreen_hooks.cli import main
from testbed.bundle import bed_config, deploy, hook_env, run_hook, toml_dumps
from tests.helpers import get, ok, wait_for

OTHER_UID = 65534   # nobody


def cli(bed, capsys, *argv):
    """Run an operator command on the bed's state dir: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([*argv, "--state-dir", str(bed.state_dir)])
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot(bed):
    """What serves: the include's bytes, the running containers, the state file's bytes."""
    return (bed.site.include.read_bytes(), sorted((c.id, c.status) for c in bed.containers()),
            (bed.state_dir / f"{bed.app}.json").read_bytes())


def start_slow(bundle, deployment_id, extra_env=None):
    """Run ``hooks/ApplicationStart`` in the background, as the agent would."""
    env = hook_env(deployment_id, extra=extra_env)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return subprocess.Popen([str(bundle / "hooks" / "ApplicationStart")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd="/")


def wait_claimed(bed, event="ApplicationStart"):
    wait_for(lambda: (bed.state().get("in_progress") or {}).get("event") == event
             and not bed.state()["in_progress"]["event_done"], what=f"{event} to claim the app")


def slow_bundle(bed, version, delay=5):
    return bed.bundle(version, container={"env": {"HOST": "127.0.0.1", "START_DELAY": str(delay)}})


def hook(bundle, event, deployment_id, **env):
    return run_hook(bundle, event, deployment_id, extra_env=env or None, python=sys.executable)


# ------------------------------------------------------------------------- 2. commands from a writable place

def test_state_dir_or_config_copy_another_user_could_write_is_refused_before_anything_runs(bed, tmp_path, capsys):
    """A group/world-writable state dir, a config copy owned by another user or writable by others: the hooks and
    the operator commands refuse in one line naming the path, change nothing, and doctor never runs the copy's
    nginx/test command (it is not verified)."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    copy = bed.state_dir / f"{bed.app}.toml"
    marker = tmp_path / "ran-as-root"
    evil = bed_config(bed.app, bed.nginx, bed.site, bed.ports, bed.state_dir,
                      nginx={"test": ["/usr/bin/touch", str(marker)]})
    v2 = bed.bundle("v2")

    def world_writable_dir():
        os.chmod(bed.state_dir, 0o777)
        return bed.state_dir, "is writable by its group and others (mode 777)"

    def copy_of_another_user():
        os.chown(copy, OTHER_UID, OTHER_UID)
        return copy, f"is owned by uid {OTHER_UID}"

    def group_writable_copy():
        os.chmod(copy, 0o620)
        return copy, "is writable by its group (mode 620)"

    for tamper in (world_writable_dir, copy_of_another_user, group_writable_copy):
        os.chmod(bed.state_dir, 0o700)
        copy.write_text(toml_dumps(evil))     # what "another user" put there
        os.chown(copy, 0, 0)
        os.chmod(copy, 0o600)
        path, why = tamper()
        before = snapshot(bed)
        code, out, _ = cli(bed, capsys, "doctor", "--json")
        checks = {c["name"]: c for c in json.loads(out)["checks"]}
        assert code == 1 and checks["config"]["level"] == "fail", checks
        assert f"{path} {why}" in checks["config"]["detail"] and "refusing" in checks["config"]["detail"]
        assert "nginx config" not in checks and not marker.exists(), "doctor ran a command from an unverified file"
        code, out, err = cli(bed, capsys, "status")
        assert (code, out) == (1, "") and err.startswith(f"ERROR {path} {why}") and len(err.splitlines()) == 1
        run = hook(v2, "BeforeInstall", "d-2")
        assert run.returncode == 1 and run.last_line.startswith(f"ERROR BeforeInstall: {path} {why}"), run.output
        assert "config bluegreen.toml ok" not in run.output      # refused before anything ran
        assert snapshot(bed) == before and not marker.exists()
    os.chmod(bed.state_dir, 0o700)
    copy.unlink()
    ok(deploy(v2, "d-2"))
    assert get(bed.url)[1].strip() == "v2" and not marker.exists()


def test_lock_and_state_symlinks_are_never_followed(bed, tmp_path, capsys):
    """``<app>.lock`` as a symlink to a missing path: refused in one line, the target is never created;
    ``<app>.json`` as a symlink to another file: refused, that file untouched."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    v2 = bed.bundle("v2")
    lock = bed.state_dir / f"{bed.app}.lock"
    lock.unlink()
    target = tmp_path / "created-by-root"
    lock.symlink_to(target)
    run = hook(v2, "BeforeInstall", "d-2")
    assert run.returncode == 1 and run.last_line.startswith(f"ERROR BeforeInstall: {lock} is a symbolic link"), \
        run.output
    assert not os.path.lexists(target)
    code, _, err = cli(bed, capsys, "unlock")
    assert code == 1 and err.startswith(f"ERROR {lock} is a symbolic link") and not os.path.lexists(target)
    lock.unlink()

    state = bed.state_dir / f"{bed.app}.json"
    elsewhere = tmp_path / "elsewhere.json"
    os.replace(state, elsewhere)
    kept = elsewhere.read_bytes()
    state.symlink_to(elsewhere)
    run = hook(v2, "BeforeInstall", "d-2")
    assert run.returncode == 1 and run.last_line.startswith(f"ERROR BeforeInstall: {state} is a symbolic link"), \
        run.output
    assert elsewhere.read_bytes() == kept and state.is_symlink()
    state.unlink()
    os.replace(elsewhere, state)
    ok(deploy(v2, "d-2"))


# ------------------------------------------------------------------------------- 4. nginx/include's file

NOT_OURS = {
    "passwd": ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n", "first line: 'root:x:0:0:root:/root:/bin/bash'"),
    "dotdot": ("conf.d/../etc/x.inc", "server { listen 127.0.0.1:1; }\n", "not an include bluegreen-hooks wrote"),
    "other app": ("conf.d/other.inc", "# bluegreen-hooks: app=other colour=blue deployment=d-1\n"
                                      "set $service_url http://127.0.0.1:1;\n", "the include of app 'other'"),
    "folder": ("conf.d/a-folder", None, "it is not a regular file"),
}


@pytest.mark.parametrize("case", sorted(NOT_OURS))
def test_include_that_is_not_ours_is_refused_before_anything_changes(bed, tmp_path, capsys, case):
    """nginx/include naming /etc/passwd, a path through `..` to a server block, another app's include or a
    folder: BeforeInstall and doctor refuse (exit 2 / FAIL) naming the key and the path; the file keeps its
    content, owner and mode, and nothing is started."""
    rel, text, why = NOT_OURS[case]
    path = tmp_path / rel
    (tmp_path / "etc").mkdir(exist_ok=True)
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
        os.chown(path, OTHER_UID, OTHER_UID)
        os.chmod(path, 0o644)
    before = os.stat(path)
    b = bed.bundle("v1", nginx={"include": str(path)})
    run = hook(b, "BeforeInstall", "d-1")
    assert run.returncode == 2, run.output
    assert run.last_line.startswith(f"ERROR BeforeInstall: nginx/include: {path} is not ours to replace"), run.output
    assert why in run.last_line
    after = os.stat(path)
    assert (after.st_uid, after.st_mode, after.st_mtime_ns) == (before.st_uid, before.st_mode, before.st_mtime_ns)
    assert text is None or path.read_text() == text
    assert bed.containers() == []
    capsys.readouterr()
    assert main(["doctor", "--json", "--config", str(b / "bluegreen.toml")]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["include writable"]["level"] == "fail" and f"nginx/include: {path}" in \
        checks["include writable"]["detail"]


@pytest.mark.parametrize("case", ["legacy", "ours", "empty"])
def test_include_we_understand_is_accepted(bed, case):
    """An empty include, ours (our header for this app) or deploy.sh's legacy one-line `set` include: deployed."""
    text = {"legacy": f"set $service_url http://127.0.0.1:{bed.ports[0]};\n",
            "ours": f"# bluegreen-hooks: app={bed.app} colour=green deployment=d-0\n"
                    f"set $service_url http://127.0.0.1:{bed.ports[1]};\n", "empty": ""}[case]
    bed.site.include.write_text(text)
    ok(deploy(bed.bundle("v1"), "d-1"))
    assert get(bed.url)[1].strip() == "v1"


def test_failed_verify_restores_the_include_with_its_owner_and_mode(bed):
    """The switch's verify fails (the reload command does nothing, so no new nginx worker generation ever
    serves the include): the include gets back its text, its owner and group and its mode."""
    inc = bed.site.include
    legacy = "# the deploy.sh include\nset $service_url http://127.0.0.1:1;\n"
    inc.write_text(legacy)
    os.chown(inc, 4242, 4343)
    os.chmod(inc, 0o640)
    runs = deploy(bed.bundle("v1", nginx={"reload": ["true"], "verify_timeout": 1}), "d-1")
    assert runs[-1].event == "ApplicationStart" and runs[-1].returncode == 1, runs[-1].output
    assert "previous include restored" in runs[-1].last_line
    st = os.stat(inc)
    assert (inc.read_text(), st.st_uid, st.st_gid, st.st_mode & 0o7777) == (legacy, 4242, 4343, 0o640)
    assert bed.running_colours() == []


# ------------------------------------------------------------------- 6. the state dir full after the switch

@pytest.fixture
def small_state_dir(bed):
    """The bed's state dir on its own 1 MiB tmpfs (unmounted afterwards)."""
    bed.state_dir.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(bed.state_dir)], check=True)
    yield bed.state_dir
    subprocess.run(["umount", str(bed.state_dir)], check=False)


def fill(folder: Path) -> None:
    """Write ``folder/filler`` until the file system is full (unbuffered: nothing is left to flush)."""
    with open(folder / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
        for _ in range(64):
            f.write(b"\0" * (64 << 10))


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_state_dir_full_after_the_switch_goes_back_and_ends_with_one_line(bed, small_state_dir, how):
    """The state dir fills up (or turns read-only) while ApplicationStart brings green up: after the switch the
    state cannot be written. The event goes back to blue (which the state still names) and ends with one
    ERROR line, no traceback; state, include and containers agree, and the next deployment succeeds."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    v2 = slow_bundle(bed, "v2", delay=3)
    ok(deploy(v2, "d-2", events=("BeforeInstall",)))
    proc = start_slow(v2, "d-2")
    try:
        wait_claimed(bed)
        if how == "full":
            fill(small_state_dir)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(small_state_dir)], check=True)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = out.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in out, out
    assert last.startswith("ERROR ApplicationStart: could not record the switch to green"), out
    assert "traffic is back on blue" in last and len(last) <= 300
    st = bed.state()
    assert (st["live"], st["live_deployment"]) == ("blue", "d-1")
    assert "colour=blue deployment=d-1" in bed.include()
    assert bed.running_colours() == ["blue"] and get(bed.url)[1].strip() == "v1"
    if how == "full":
        (small_state_dir / "filler").unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_state_dir)], check=True)
    runs = ok(deploy(bed.bundle("v3"), "d-3"))
    assert "took over from stale deployment d-2" in runs[1].output, runs[1].output
    assert get(bed.url)[1].strip() == "v3" and bed.running_colours() == ["green"]


# ---------------------------------------------------------------------- 8. the same deployment id twice

def test_same_deployment_id_run_twice_at_once_is_refused(bed):
    """While d-2's ApplicationStart (bundle v2) runs, every event of d-2 from another bundle (v3) is refused with
    exit 3 naming the running process; d-2 then finishes with v2, untouched."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    v2, v3 = slow_bundle(bed, "v2"), bed.bundle("v3")
    ok(deploy(v2, "d-2", events=("BeforeInstall",)))
    proc = start_slow(v2, "d-2")
    try:
        wait_claimed(bed)
        pid = bed.state()["in_progress"]["pid"]
        for event in ("BeforeInstall", "ApplicationStart", "ValidateService"):
            run = hook(v3, event, "d-2")
            assert run.returncode == 3, run.output
            assert f"deployment d-2 is already running ApplicationStart as pid {pid}" in run.last_line, run.output
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    ok(deploy(v2, "d-2", events=("ValidateService",)))
    assert get(bed.url)[1].strip() == "v2" and bed.running_colours() == ["green"]
    assert bed.state()["deployments"][-1]["outcome"] == "succeeded"


# -------------------------------------------------------------------------------- 9. unlock and takeover

def test_new_deployment_of_the_same_group_takes_over_one_that_failed_outside_the_hooks(bed):
    """d-2 passed BeforeInstall, then the agent failed it without running our hooks (e.g. its bundle has no
    hooks/ApplicationStart). CodeDeploy runs one deployment per group at a time, so d-3 of the same group takes
    over at once instead of waiting deploy/stale_after; d-2 is recorded as abandoned."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    ok(deploy(bed.bundle("v2"), "d-2", events=("ApplicationStop", "BeforeInstall")))
    runs = ok(deploy(bed.bundle("v3"), "d-3"))
    assert "took over from stale deployment d-2: a new deployment of its deployment group testbed-group" \
        in runs[1].output, runs[1].output
    st = bed.state()
    assert [(d["id"], d["outcome"]) for d in st["deployments"]][-2:] == [("d-2", "abandoned"), ("d-3", "succeeded")]
    assert get(bed.url)[1].strip() == "v3"


def test_unlock_releases_a_deployment_of_another_group_and_records_who(bed, capsys):
    """A deployment of another group between events is not taken over: the refusal names `bluegreen-hooks
    unlock`; unlock (its process is not running) releases it and records an Unlock event with user and host;
    the refused deployment then succeeds."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    ok(deploy(bed.bundle("v2"), "d-2", events=("BeforeInstall",), extra_env={"DEPLOYMENT_GROUP_ID": "group-a"}))
    v3 = bed.bundle("v3")
    run = hook(v3, "BeforeInstall", "d-3", DEPLOYMENT_GROUP_ID="group-b")
    assert run.returncode == 3, run.output
    assert "deployment d-2 is in progress (between events" in run.last_line
    assert f"`bluegreen-hooks unlock --app {bed.app}`" in run.last_line
    code, out, _ = cli(bed, capsys, "unlock", "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["released"]["id"] == "d-2" and not result["forced"]
    code, out, _ = cli(bed, capsys, "history", "--json")
    h = json.loads(out)
    unlock_event = h["events"][-1]
    assert (unlock_event["event"], unlock_event["deployment"], unlock_event["outcome"]) == ("Unlock", "d-2",
                                                                                            "succeeded")
    assert unlock_event["user"] == "root" and unlock_event["cause"] == f"unlocked by {result['by']}"
    assert (h["deployments"][-1]["id"], h["deployments"][-1]["outcome"]) == ("d-2", "unlocked")
    code, out, _ = cli(bed, capsys, "unlock")
    assert code == 0 and out.strip() == f"{bed.app} is not held by any deployment: nothing to unlock"
    ok(deploy(v3, "d-3", extra_env={"DEPLOYMENT_GROUP_ID": "group-b"}))
    assert get(bed.url)[1].strip() == "v3"


def test_unlock_refuses_while_the_holder_runs_unless_forced(bed, capsys):
    """While d-2's ApplicationStart process is alive, unlock exits 3 naming it (one JSON object with --json);
    --force releases it and says so."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    v2 = slow_bundle(bed, "v2", delay=20)
    ok(deploy(v2, "d-2", events=("BeforeInstall",)))
    proc = start_slow(v2, "d-2")
    try:
        wait_claimed(bed)
        pid = bed.state()["in_progress"]["pid"]
        code, out, err = cli(bed, capsys, "unlock", "--json")
        refused = json.loads(out)
        assert code == 3 and refused["ok"] is False and refused["exit"] == 3, (out, err)
        assert f"its ApplicationStart process (pid {pid}) is still running" in refused["error"]
        assert "--force" in refused["error"] and bed.state()["in_progress"]["id"] == "d-2"
        code, out, _ = cli(bed, capsys, "unlock", "--force", "--json")
        forced = json.loads(out)
        assert code == 0 and forced["forced"] and forced["released"]["pid"] == pid
        assert bed.state()["in_progress"] is None
        assert bed.state()["events"][-1]["cause"].endswith(f"with --force (its ApplicationStart process (pid {pid}) "
                                                           f"is still running)")
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


# ------------------------------------------------------------------------------- 10. state of wrong types

def test_state_of_wrong_types_is_rebuilt_and_reported_without_a_traceback(bed, capsys):
    """Valid JSON with wrong types (`"started": "yesterday"`, `"deployments": [1, "x"]`): status and history
    answer without a traceback, doctor FAILs the state file naming the key, and BeforeInstall quarantines it
    (timestamped name), rebuilds it from the include and the containers, and the deployment succeeds."""
    ok(deploy(bed.bundle("v1"), "d-1"))
    path = bed.state_dir / f"{bed.app}.json"
    for bad in ({"in_progress": {"id": "d-x", "started": "yesterday"}}, {"deployments": [1, "x"]}):
        data = {**bed.state(), **bad}
        path.write_text(json.dumps(data))
        code, out, err = cli(bed, capsys, "status", "--json")
        assert code == 1 and json.loads(out)["state_problem"] == "corrupt" and "Traceback" not in err
        code, out, err = cli(bed, capsys, "history")
        assert code == 0 and out.startswith("no events recorded") and err == ""
        code, out, _ = cli(bed, capsys, "doctor", "--json")
        checks = {c["name"]: c for c in json.loads(out)["checks"]}
        key = "started: should be int or float" if "in_progress" in bad else "deployments: should be a list"
        assert code == 1 and checks["state file"]["level"] == "fail" and key in checks["state file"]["detail"]
        version = "v2" if "in_progress" in bad else "v3"
        runs = ok(deploy(bed.bundle(version), f"d-{version}"))
        # (ApplicationStop's audit already quarantined the file; BeforeInstall rebuilds live from what runs)
        live = "blue" if version == "v2" else "green"
        assert f"reconciled: state said live=None, but nginx include points at {live}" in runs[1].output, \
            runs[1].output
        assert get(bed.url)[1].strip() == version
    kept = sorted(p.name for p in bed.state_dir.glob(f"{bed.app}.json.corrupt-*"))
    assert len(kept) == 2, kept     # each quarantined under its own timestamped name


# ----------------------------------------------------------------------------- 15. --json, also on failure

def test_json_commands_print_exactly_one_object_on_failure(bed, tmp_path, capsys):
    """status, history, rollback, doctor and unlock with --json: one JSON object on stdout whatever happens,
    `{"ok": false, "error": ..., "exit": N}` when the command fails (no app, bad arguments, nothing to roll back
    to)."""
    empty = tmp_path / "empty"
    for cmd in ("status", "history", "rollback", "unlock"):
        capsys.readouterr()
        assert main([cmd, "--json", "--state-dir", str(empty)]) == 2
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is False and out["exit"] == 2 and out["error"].startswith("no app has been deployed")
    capsys.readouterr()
    assert main(["history", "--json", "-n", "many"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert (out["ok"], out["exit"]) == (False, 2) and "invalid int value: 'many'" in out["error"]
    capsys.readouterr()
    assert main(["doctor", "--json", "--state-dir", str(empty)]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    ok(deploy(bed.bundle("v1"), "d-1"))
    code, out, _ = cli(bed, capsys, "rollback", "--json")
    result = json.loads(out)
    assert code == 1 and result["ok"] is False and result["exit"] == 1 and "previous" in result["error"]
    for cmd in ("status", "history", "doctor", "unlock"):
        code, out, _ = cli(bed, capsys, cmd, "--json")
        assert code == 0 and json.loads(out).get("ok", True) is True, (cmd, out)


# ------------------------------------------------------------------------- the pure parts of 8 and 9 (claim)

def _holder(**kw):
    from bluegreen_hooks.host import procfs
    from bluegreen_hooks.model import InProgress

    now = time.time()
    base = dict(id="d-1", target="green", started=now - 30, updated=now - 10, event="ApplicationStart",
                event_done=False, host=os.uname().nodename, group="g-1")
    base.update(kw)
    if "pid" not in kw:   # a live process that is not this one: our parent (pytest's launcher or shell)
        base.update(pid=os.getppid(), pid_start=procfs.process_start_time(os.getppid()))
    return InProgress(**base)


def _claim_as_me(st, deployment, event, group=None):
    from bluegreen_hooks.decide import claim
    from bluegreen_hooks.host import procfs
    from bluegreen_hooks.host.store import me

    return claim(st, deployment, event, "green", me(), time.time(), 900, procfs.process_alive, group)


def test_claim_refuses_the_same_deployment_id_from_a_second_live_process():
    """Same id, another live process mid-event: busy; the same id whose process died, or between events: claimed."""
    from bluegreen_hooks.model import State

    st = State("shop", in_progress=_holder(id="d-2"))
    busy, _ = _claim_as_me(st, "d-2", "BeforeInstall")
    assert busy and "deployment d-2 is already running ApplicationStart as pid" in busy
    st = State("shop", in_progress=_holder(id="d-2", pid=2 ** 22 + 1, pid_start=1))
    assert _claim_as_me(st, "d-2", "ApplicationStart") == (None, None)
    st = State("shop", in_progress=_holder(id="d-2", event_done=True))
    assert _claim_as_me(st, "d-2", "ApplicationStart") == (None, None) and st.in_progress.pid == os.getpid()


def test_claim_of_a_new_deployment_of_the_same_group_takes_over_between_events_only():
    """BeforeInstall of a new id of the same group takes over a holder between events; not another group, not a
    later event, not an id the history knows, never a live process."""
    from bluegreen_hooks.model import State

    def between():
        return State("shop", in_progress=_holder(event_done=True, event="BeforeInstall"))

    st = between()
    busy, note = _claim_as_me(st, "d-2", "BeforeInstall", group="g-1")
    assert busy is None and "a new deployment of its deployment group g-1 started" in note.text()
    assert st.deployments[-1]["outcome"] == "abandoned" and st.in_progress.group == "g-1"
    assert "between events" in _claim_as_me(between(), "d-2", "BeforeInstall", group="g-2")[0]
    assert "between events" in _claim_as_me(between(), "d-2", "ApplicationStart", group="g-1")[0]
    known = between()
    known.deployments.append({"id": "d-2", "outcome": "abandoned", "ended": time.time() - 100})
    assert "between events" in _claim_as_me(known, "d-2", "BeforeInstall", group="g-1")[0]
    alive = State("shop", in_progress=_holder())
    assert "ApplicationStart running as pid" in _claim_as_me(alive, "d-2", "BeforeInstall", group="g-1")[0]


def test_claim_takes_over_a_holder_whose_deployment_already_ended():
    """A holder between events whose deployment the history records as failed since it was claimed: stale."""
    from bluegreen_hooks.model import State

    st = State("shop", in_progress=_holder(event_done=True, group=None))
    st.deployments.append({"id": "d-1", "outcome": "failed", "ended": time.time() - 5})
    busy, note = _claim_as_me(st, "d-2", "ApplicationStart")
    assert busy is None and "it already ended (failed)" in note.text()
    older = State("shop", in_progress=_holder(event_done=True, group=None))
    older.deployments.append({"id": "d-1", "outcome": "failed", "ended": time.time() - 3600})   # a retried id
    assert "between events" in _claim_as_me(older, "d-2", "ApplicationStart")[0]
