"""Dry runs (hook --dry-run, local --dry-run) against the real Docker daemon and nginx: they print the
plan and change nothing — the app's containers and images, the include, the state file and nginx's
master/worker pids are identical before and after."""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.agent import plan
from bluegreen_hooks.cli import main
from bluegreen_hooks.decide import World
from bluegreen_hooks.host.nginx import render_include
from bluegreen_hooks.model import InProgress, Running, State
from testbed.bundle import bed_config, deploy, make_bundle
from testbed.ports import free_port

EVENTS = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")


@pytest.fixture
def dry(docker_client, nginx, site, app_name, tmp_path):
    ports = (free_port(), free_port())
    state_dir = tmp_path / "state"

    class Dry:
        def bundle(self, version: str = "v1", **overrides) -> Path:
            cfg = bed_config(app_name, nginx, site, ports, state_dir, version, **overrides)
            return make_bundle(tmp_path / f"bundle-{version}-{uuid.uuid4().hex[:6]}", cfg)

        def snapshot(self) -> dict:
            conts = docker_client.containers.list(all=True, filters={"label": f"bluegreen.app={app_name}"})
            imgs = docker_client.images.list(name=f"bluegreen-{app_name}")
            files = {}
            kept = sorted(f for f in state_dir.iterdir() if f.is_file()) if state_dir.exists() else []
            for p in [site.include, *kept]:
                files[str(p)] = (p.read_bytes(), p.stat().st_mtime_ns)
            return {
                "containers": sorted((c.id, c.name, c.status, c.attrs["State"]["StartedAt"], c.attrs["RestartCount"],
                                      tuple(sorted(c.labels.items()))) for c in conts),
                "images": sorted((i.id, tuple(sorted(i.tags))) for i in imgs),
                "files": files,
                "state_dir_exists": state_dir.exists(),
                "nginx": (nginx.master_pid(), sorted(nginx.worker_pids())),
            }

    d = Dry()
    d.app, d.ports, d.state_dir, d.site, d.nginx = app_name, ports, state_dir, site, nginx
    return d


def _dry_runs(bundle: Path, root: Path, monkeypatch, capsys) -> dict[str, str]:
    monkeypatch.setenv("DEPLOYMENT_ID", "d-DRYRUN001")
    out = {}
    for event in EVENTS:
        assert main(["hook", event, "--bundle", str(bundle), "--dry-run"]) == 0
        out[event] = capsys.readouterr().out
    monkeypatch.delenv("DEPLOYMENT_ID")
    assert main(["local", str(bundle), "--dry-run", "--root", str(root), "--deployment-id", "d-DRYRUN001"]) == 0
    out["local"] = capsys.readouterr().out
    return out


def test_dry_run_on_a_fresh_host_changes_nothing(dry, tmp_path, monkeypatch, capsys):
    """Before any deployment: the plan targets blue, builds the image, starts blue; nothing is created."""
    b = dry.bundle("v1")
    before = dry.snapshot()
    out = _dry_runs(b, tmp_path / "runner-root", monkeypatch, capsys)
    assert dry.snapshot() == before
    assert not (tmp_path / "runner-root").exists()
    start = out["ApplicationStart"]
    assert "target colour: blue (live: none)" in start
    assert f"image: build bluegreen-{dry.app}:d-DRYRUN001 from {b / 'app'}/Dockerfile" in start
    assert (f"start container {dry.app}-blue from bluegreen-{dry.app}:d-DRYRUN001 "
            f"(host network, port {dry.ports[0]}") in start
    assert f"health: GET http://127.0.0.1:{dry.ports[0]}/health until HTTP 200, deadline 60s" in start
    assert "DRY RUN (nothing is changed)" in out["local"] and "ApplicationStop: skipped" in out["local"]


def test_dry_run_after_a_deployment_changes_nothing(dry, tmp_path, monkeypatch, capsys):
    """With blue live: every event's plan (and the runner's) is printed; Docker, files and nginx are untouched."""
    first = dry.bundle("v1")
    runs = deploy(first, "d-first")
    assert all(r.returncode == 0 for r in runs), "\n".join(r.output for r in runs)
    b = dry.bundle("v2")
    before = dry.snapshot()
    out = _dry_runs(b, tmp_path / "runner-root", monkeypatch, capsys)
    assert dry.snapshot() == before
    cfg = config_mod.load(b / "bluegreen.toml")
    start = out["ApplicationStart"]
    for ln in render_include(cfg, "green", "d-DRYRUN001").splitlines():   # the exact include text
        assert f"  | {ln}" in start
    assert f"write {dry.site.include}:" in start
    assert "nginx test: " + " ".join(dry.nginx.test_argv) in start
    assert "nginx reload: " + " ".join(dry.nginx.reload_argv) in start
    assert "target colour: green (live: blue)" in start and "keep running: blue" in start
    assert "remove leftover containers of green: none" in out["BeforeInstall"]
    assert f"master pid {dry.nginx.master_pid()}" in out["BeforeInstall"]
    validate = out["ValidateService"]
    assert f"validate: GET {dry.site.url}/health answers HTTP 200 with X-Bluegreen-Colour: green" in validate
    assert f"stop (keep, for a rollback) containers of blue (grace 5s): {dry.app}-blue (running)" in validate
    assert "nothing to stop" in out["ApplicationStop"]
    local = out["local"]
    assert "ApplicationStop: skipped" in local   # this runner root never deployed
    assert "target colour: green (live: blue)" in local and "ValidateService:" in local


def test_plan_follows_the_events_decisions(dry):
    """Pure planning: a deployment in progress keeps its target; a completed one is a no-op."""
    cfg = config_mod.load(dry.bundle("v1") / "bluegreen.toml")
    base = _world(state=State(dry.app, live="green", live_deployment="d-old"), state_problem=None,
                  include_text=render_include(cfg, "green", "d-old"),
                  running={"blue": None, "green": Running("d-old", "x", "n")},
                  containers={"blue": [], "green": ["n (running)"]}, nginx_master=None, nginx_workers=[])
    p = plan.plan_deployment(cfg, "d-new", base)
    assert (p.live, p.target, p.old, p.done, p.busy) == ("green", "blue", "green", False, None)
    assert plan.plan_deployment(cfg, "d-old", base).done
    assert "already live on green" in plan.render(plan.plan_deployment(cfg, "d-old", base), ["BeforeInstall"])[-1]


def _world(state=None, state_problem="missing", include_text=None, running=None, **kw):
    """A Seen as gather() would return it (the include's colour and nginx's answer agree)."""
    include = ("green" if "colour=green" in include_text else "blue") if include_text else None
    world = World(include, include, running or {"blue": None, "green": None}, state_problem)
    base = dict(containers={"blue": [], "green": []}, nginx_master=123, nginx_workers=[124, 125], image_exists=False)
    base.update(kw)
    return plan.Seen(state or State("shop"), world, include_text, **base)


def test_plan_for_a_compose_app_shows_the_compose_commands(tmp_path):
    """With [compose]: the up/down argv of the colours' projects, the variables, the include."""
    from bluegreen_hooks.config import parse
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    cfg = parse({"app": "shop", "colours": {"blue": 8081, "green": 8082},
                 "compose": {"file": "docker-compose.yml", "command": ["docker-compose"]},
                 "nginx": {"reload": ["nginx", "-s", "reload"]}}, tmp_path / "bluegreen.toml", environ={})
    st = State("shop", live="blue", live_deployment="d-1")
    w = _world(state=st, state_problem=None, include_text=render_include(cfg, "blue", "d-1"),
               running={"blue": Running("d-1", None, "shop-blue"), "green": None},
               containers={"blue": ["shop-blue-web-1 (running)"], "green": []})
    lines = plan.render(plan.plan_deployment(cfg, "d-2", w), ["ApplicationStart", "ValidateService"])
    text = "\n".join(lines)
    f = tmp_path / "docker-compose.yml"
    mem = cfg.state_dir / "shop-green.memory.yml"   # the memory override (docs/memory.md)
    assert f"start project shop-green: docker-compose -p shop-green -f {f} -f {mem} up -d --remove-orphans" in text
    assert "BLUEGREEN_COLOUR=green" in text and "BLUEGREEN_PORT=8082" in text
    assert "  | set $service_url http://127.0.0.1:8082;" in text and "nginx reload: nginx -s reload" in text
    assert ("then: stop (keep, for a rollback) the containers of shop-blue: shop-blue-web-1 (running) "
            "(grace 10s)") in text


def test_plan_reports_a_busy_holder_and_a_first_deployment(tmp_path):
    """No state: target blue, include created; another live deployment in progress: the run would exit 3."""
    from bluegreen_hooks.config import parse
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    cfg = parse({"app": "shop", "container": {"build": "app"}}, tmp_path / "bluegreen.toml", environ={})
    first = plan.render(plan.plan_deployment(cfg, "d-1", _world()), ["BeforeInstall", "ApplicationStart"])
    assert "create an empty include /etc/nginx/conf.d/backend-url.inc (first deployment)" in "\n".join(first)
    assert "  target colour: blue (live: none)" in first
    import os

    from bluegreen_hooks.host.procfs import process_start_time
    st = State("shop", in_progress=InProgress("d-other", "blue", 0, event="ApplicationStart", event_done=False,
                                              pid=os.getpid(), pid_start=process_start_time(os.getpid())))
    busy = plan.render(plan.plan_deployment(cfg, "d-1", _world(state=st)), ["BeforeInstall"])
    assert busy[-1].startswith(
        "  would refuse (exit 3): deployment d-other is in progress (ApplicationStart running as pid")


def _shop(tmp_path):
    from bluegreen_hooks.config import parse
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    return parse({"app": "shop", "container": {"build": "app"}}, tmp_path / "bluegreen.toml", environ={})


@pytest.mark.parametrize("stage, recorded, expected", [
    ("switched", "green", "  deployment d-2 already switched nginx to green: validate through nginx, nothing else "
                          "to do"),
    ("BeforeInstall", "blue", "  would fail (exit 1): target colour green is live; refusing to replace it (run "
                              "`bluegreen-hooks status`)"),
])
def test_plan_of_application_start_renders_what_the_decision_says(tmp_path, stage, recorded, expected):
    """ApplicationStart again after its switch (Decision.switched), or its switch went through unrecorded
    (Decision.refused): the plan says what the event then does, not a start of the live colour."""
    cfg = _shop(tmp_path)
    mine = InProgress("d-2", "green", 1.0, stage=stage, event="ApplicationStart", event_done=True, updated=1.0)
    seen = _world(state=State("shop", live=recorded, live_deployment="d-1", in_progress=mine), state_problem=None,
                  include_text=render_include(cfg, "green", "d-2"),
                  running={"blue": Running("d-1", "x", "b"), "green": Running("d-2", "x", "g")})
    assert plan.render(plan.plan_deployment(cfg, "d-2", seen, event="ApplicationStart"),
                       ["ApplicationStart"])[-1] == expected


def test_the_hooks_dry_run_decides_as_its_own_event(tmp_path, monkeypatch):
    """``hook ApplicationStart --dry-run`` decides as ApplicationStart does: a holder of the same deployment group
    between events is taken over only by a new deployment's BeforeInstall, so its ApplicationStart refuses."""
    cfg = _shop(tmp_path)
    now = time.time()
    holder = InProgress("d-dead", "green", now, stage="BeforeInstall", event="ApplicationStart", event_done=True,
                        updated=now, group=GROUP)
    seen = _world(state=State("shop", live="blue", live_deployment="d-1", in_progress=holder), state_problem=None,
                  include_text=render_include(cfg, "blue", "d-1"), running={"blue": Running("d-1", "x", "b"),
                                                                            "green": None})
    monkeypatch.setattr(plan, "gather", lambda *args, **kw: seen)
    before = plan.describe(cfg, "d-next", ["BeforeInstall"], GROUP)
    start = plan.describe(cfg, "d-next", ["ApplicationStart"], GROUP)
    assert "note: would take over from stale deployment d-dead: a new deployment of its deployment group" \
        in "\n".join(before)
    assert start[-1].startswith("  would refuse (exit 3): deployment d-dead is in progress (between events"), start


# ------------------------------------------------------------------- the dry run decides as the real event

GROUP = "g-0a1b2c3d"   # the CodeDeploy deployment group id the agent passes every hook

def _scenario(bed, name: str) -> None:
    """Bring the bed into one reconcile branch (see test_dry_run_decides_what_before_install_then_does)."""
    import json as _json
    import os as _os

    from testbed.bundle import deploy as _deploy
    from tests.helpers import ok as _ok

    if name == "fresh host":
        return
    _ok(_deploy(bed.bundle("v1"), "d-1"))                          # blue live
    if name in ("live green", "interrupted switch"):
        _ok(_deploy(bed.bundle("v2"), "d-2"))                      # green live, blue stopped
    path = bed.state_dir / f"{bed.app}.json"
    st = _json.loads(path.read_text())
    if name == "stale holder":                                     # a deployment whose hook died (SIGKILL)
        st["in_progress"] = {"id": "d-dead", "target": "green", "started": 1.0, "updated": 1.0, "stage": None,
                             "event": "ApplicationStart", "event_done": False, "pid": 2 ** 22 + 1, "pid_start": 1,
                             "host": _os.uname().nodename}
        path.write_text(_json.dumps(st))
    elif name == "same group, between events":   # its ApplicationStart ended (e.g. failed outside our hooks)
        now = time.time()                           # and the agent moved on: fresh, between events, same group
        st["in_progress"] = {"id": "d-dead", "target": "green", "started": now, "updated": now,
                             "stage": "BeforeInstall", "event": "ApplicationStart", "event_done": True,
                             "pid": 2 ** 22 + 1, "pid_start": 1, "host": _os.uname().nodename, "group": GROUP}
        path.write_text(_json.dumps(st))
    elif name == "interrupted switch":                             # include rewritten, nginx never reloaded
        _ok(_deploy(bed.bundle("v3"), "d-3", events=("BeforeInstall", "ApplicationStart")))  # blue live, green runs
        st = _json.loads(path.read_text())
        # nginx workers from before that switch could still answer a probe with green: wait until they are gone
        from bluegreen_hooks.host import procfs
        from tests.helpers import wait_for
        wait_for(lambda: not any(procfs.process_alive(pid, start) for pid, start in st.get("drain_workers") or []),
                 timeout=30, what="the nginx workers from before the switch to blue to exit")
        st["in_progress"] = None
        path.write_text(_json.dumps(st))
        bed.site.include.write_text(render_include(config_mod.load(bed.bundle("v3") / "bluegreen.toml"),
                                                   "green", "d-2"))
    elif name == "include disagrees with containers":              # the state says green; only blue runs
        st["live"], st["live_deployment"] = "green", "d-x"
        path.write_text(_json.dumps(st))
    elif name == "state missing":
        path.unlink()


@pytest.mark.parametrize("name", ["fresh host", "live blue", "live green", "stale holder", "same group, between events",
                                  "interrupted switch", "include disagrees with containers", "state missing"])
def test_dry_run_decides_what_before_install_then_does(bed, name, monkeypatch, capsys):
    """For every reconcile branch, ``--dry-run`` reports the live and target colours and the repairs
    (take-over, include rewrite) that the real BeforeInstall then makes. Both run in the same deployment
    group, as the agent runs them: a holder of that group between events is taken over by both."""
    import re

    from testbed.bundle import run_hook

    _scenario(bed, name)
    bundle = bed.bundle("v9")
    monkeypatch.setenv("DEPLOYMENT_ID", "d-next")
    monkeypatch.setenv("DEPLOYMENT_GROUP_ID", GROUP)
    assert main(["hook", "BeforeInstall", "--bundle", str(bundle), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    real = run_hook(bundle, "BeforeInstall", "d-next", {"DEPLOYMENT_GROUP_ID": GROUP}, python=sys.executable)
    assert real.returncode == 0, real.output
    planned = re.search(r"DRY RUN \(nothing is changed\): deployment d-next of \S+; live (\w+), target (\w+)", dry)
    done = re.search(r"live colour: (\w+); target colour: (\w+)", real.output)
    assert planned and done, (dry, real.output)
    assert planned.groups() == done.groups(), (dry, real.output)
    assert ("would take over from stale deployment d-dead" in dry) == ("took over from stale deployment d-dead"
                                                                       in real.output)
    assert ("interrupted switch" in dry) == ("interrupted switch" in real.output)
    expected = {"fresh host": ("none", "blue"), "live blue": ("blue", "green"), "live green": ("green", "blue"),
                "stale holder": ("blue", "green"), "same group, between events": ("blue", "green"),
                "interrupted switch": ("blue", "green"),
                "include disagrees with containers": ("blue", "green"), "state missing": ("blue", "green")}
    assert done.groups() == expected[name]
    if name == "interrupted switch":
        assert "interrupted switch" in real.output
    if name in ("stale holder", "same group, between events"):
        assert "took over from stale deployment d-dead" in real.output
