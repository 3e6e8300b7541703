"""Memory preflight and OOM protection (docs/memory.md): the config keys, the pure decision, the preflight's
refusal against the real daemon (by a configured limit and by the live colour's measured use), and a
cgroup-limited run where memory runs out while the new colour starts, under load."""
from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from bluegreen_hooks.config import parse
from bluegreen_hooks.config.memory import MIB, mib, parse_size
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.host import procfs
from bluegreen_hooks.lifecycle import memory
from bluegreen_hooks.runtime import docker as containers
from testbed.bundle import deploy
from testbed.load import Load
from tests.helpers import IN_CI, get, ok, wait_for

CGROUP_V1 = Path("/sys/fs/cgroup/memory")
CGROUP_V2 = Path("/sys/fs/cgroup")


def _cfg(**deploy_keys):
    raw = {"app": "shop", "container": {"image": "shop:1"}, "deploy": deploy_keys}
    return parse(raw, Path("/tmp/bluegreen.toml"), environ={}, check_files=False, as_root=True)


# ------------------------------------------------------------------------------------------ config and units

def test_memory_keys_defaults_and_sizes():
    m = _cfg().memory
    assert (m.headroom, m.mem_limit, m.oom_score_adj, m.new_oom_score_adj, m.cgroup_parent) == \
        (128 * MIB, None, None, 500, None)
    m = _cfg(memory_headroom="1g", mem_limit=512, oom_score_adj=-100, cgroup_parent="/apps/shop").memory
    assert (m.headroom, m.mem_limit, m.new_oom_score_adj, m.cgroup_parent) == (1024 * MIB, 512 * MIB, 400, "/apps/shop")
    assert _cfg(memory_headroom="off").memory.headroom is None
    assert _cfg(memory_headroom=0).memory.headroom == 0
    assert _cfg(oom_score_adj=800).memory.new_oom_score_adj == 1000
    assert [parse_size(v) for v in ("300MiB", "1.5g", "4096k", "2G", 7)] == \
        [300 * MIB, 1536 * MIB, 4 * MIB, 2048 * MIB, 7 * MIB]


@pytest.mark.parametrize("key, value, says", [
    ("memory_headroom", "lots", "deploy/memory_headroom: should be a size such as \"512m\""),
    ("memory_headroom", -5, "deploy/memory_headroom: should be a size"),
    ("mem_limit", "512x", "deploy/mem_limit: should be a size"),
    ("mem_limit", "100k", "at least 1 MiB"),
    ("mem_limit", True, "deploy/mem_limit: should be a size"),
    ("oom_score_adj", 2000, "deploy/oom_score_adj: should be an OOM score adjustment (-1000-1000)"),
    ("new_oom_score_adj", "high", "deploy/new_oom_score_adj: should be an OOM score adjustment"),
    ("cgroup_parent", "/a/../b", "deploy/cgroup_parent: should be a cgroup path without '..'"),
    ("cgroup_parent", "/a b", "deploy/cgroup_parent: should be a cgroup path"),
    ("mem_limt", "1g", "did you mean 'mem_limit'?"),
])
def test_memory_keys_refuse_bad_values_in_one_line(key, value, says):
    with pytest.raises(ConfigError) as exc:
        _cfg(**{key: value})
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_new_colour_may_not_be_protected_more_than_the_live_one():
    with pytest.raises(ConfigError, match="new_oom_score_adj: should be at least deploy/oom_score_adj"):
        _cfg(oom_score_adj=100, new_oom_score_adj=50)


def test_run_kwargs_carry_the_memory_settings():
    kw = containers.run_kwargs(_cfg(mem_limit="256m", cgroup_parent="/apps"), "green", "img:1", "d-1")
    assert (kw["mem_limit"], kw["cgroup_parent"], kw["oom_score_adj"]) == (256 * MIB, "/apps", 500)
    kw = containers.run_kwargs(_cfg(), "green", "img:1", "d-1")
    assert "mem_limit" not in kw and "cgroup_parent" not in kw and kw["oom_score_adj"] == 500


def test_refusal_names_both_figures_in_one_line():
    est = memory.Estimate(900 * MIB, "blue's measured use, 3 containers")
    assert memory.refusal("green", "blue", est, 128 * MIB, 2048 * MIB) is None
    why = memory.refusal("green", "blue", est, 128 * MIB, 1000 * MIB)
    assert why is not None and "\n" not in why and len(why) < 300
    assert "green needs ~900 MiB (blue's measured use, 3 containers) + 128 MiB headroom" in why
    assert "MemAvailable is 1,000 MiB; blue keeps serving" in why


def test_mem_available_and_usage_parsing(tmp_path):
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:        2000000 kB\nMemFree:          100000 kB\nMemAvailable:     812345 kB\n")
    assert memory.mem_available(f) == 812345 * 1024
    f.write_text("MemTotal: 1 kB\n")
    assert memory.mem_available(f) is None
    v1 = {"memory_stats": {"usage": 300 * MIB, "stats": {"total_inactive_file": 100 * MIB, "cache": 150 * MIB}}}
    v2 = {"memory_stats": {"usage": 300 * MIB, "stats": {"inactive_file": 50 * MIB}}}
    assert (memory.usage_of(v1), memory.usage_of(v2), memory.usage_of({})) == (200 * MIB, 250 * MIB, None)


def test_memory_in_use_reads_the_memory_cgroup_as_docker_stats_counts_it(tmp_path):
    """cgroup v1 (the memory controller's line) and v2 (the 0:: line): usage less the inactive page cache;
    None when the process, its cgroup line or the files cannot be read (the caller asks Docker then)."""
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "cgroup").write_text("12:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    v1 = root / "memory" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "memory.usage_in_bytes").write_text(f"{300 * MIB}\n")
    (v1 / "memory.stat").write_text(f"cache {150 * MIB}\ntotal_inactive_file {100 * MIB}\n")
    (proc / "8").mkdir()
    (proc / "8" / "cgroup").write_text("0::/system.slice/docker-def.scope\n")
    v2 = root / "system.slice" / "docker-def.scope"
    v2.mkdir(parents=True)
    (v2 / "memory.current").write_text(f"{300 * MIB}\n")
    (v2 / "memory.stat").write_text(f"anon {200 * MIB}\ninactive_file {50 * MIB}\n")
    (proc / "9").mkdir()
    (proc / "9" / "cgroup").write_text("4:memory:/docker/gone\n")
    found = [procfs.memory_in_use(pid, proc, root) for pid in (7, 8, 9, 10)]
    assert found == [200 * MIB, 250 * MIB, None, None]


def test_the_memory_cgroup_read_matches_docker_stats_for_a_live_container(bed):
    """The preflight reads each live container's memory cgroup (at once) instead of waiting ~1 s for Docker's
    one-shot stats: on a real container holding 100 MiB both say the same, within 8 MiB."""
    ok(deploy(bed.bundle("v1", container={"env": {"HOST": "127.0.0.1", "ALLOC_MB": "100"}}), "d-cg"))
    live = bed.containers("blue")[0]
    wait_for(lambda: memory.usage_of(live.stats(stream=False, one_shot=True)) >= 95 * MIB, 30,
             what="the live colour to hold 100 MiB")
    live.reload()
    from_cgroup = procfs.memory_in_use(live.attrs["State"]["Pid"])
    from_docker = memory.usage_of(live.stats(stream=False, one_shot=True))
    assert from_cgroup is not None and from_docker is not None
    assert abs(from_cgroup - from_docker) <= 8 * MIB, (from_cgroup, from_docker)
    from bluegreen_hooks.runtime import sdk

    used, missing = memory.measure([sdk.record(live)], lambda container_id: None)   # no Docker stats: the cgroup's
    assert missing == [] and abs(used[live.name] - from_docker) <= 8 * MIB, used


class _FakeContainer:
    """Only for the timeout bound of ``measure``: a stats call that answers late or fails."""

    def __init__(self, name, delay, used=None):
        self.name, self.delay, self.used, self.released = name, delay, used, threading.Event()
        self.id, self.labels, self.pid = name, {}, 0   # pid 0: no cgroup to read, Docker's stats are asked

    @property
    def service(self):
        return self.labels.get("com.docker.compose.service")

    def stats(self, stream, one_shot):
        assert (stream, one_shot) == (False, True)
        self.released.wait(self.delay)
        if self.used is None:
            raise RuntimeError("gone")
        return {"memory_stats": {"usage": self.used}}


def _stats(conts):
    """Backend.memory_used over the fakes (what runtime/sdk.memory_used reads from Docker)."""
    by_id = {c.id: c for c in conts}
    return lambda container_id: memory.usage_of(by_id[container_id].stats(stream=False, one_shot=True))


def test_measure_asks_in_parallel_and_leaves_a_hung_call_behind():
    fast = [_FakeContainer(f"c{i}", 0.3, 10 * MIB) for i in range(3)]
    hung, broken = _FakeContainer("hung", 60, MIB), _FakeContainer("broken", 0)
    t0 = time.monotonic()
    used, missing = memory.measure([*fast, hung, broken], _stats([*fast, hung, broken]), timeout=1.0)
    took = time.monotonic() - t0
    hung.released.set()
    assert used == {"c0": 10 * MIB, "c1": 10 * MIB, "c2": 10 * MIB}
    assert missing == ["hung", "broken"]
    assert took < 3, took   # 3 x 0.3 s in parallel, the hung call cut at the 1 s bound


class _FakeBackend:
    """Only for preflight's decision paths: the live colour's containers (the real ones are tested below)."""

    def __init__(self, conts):
        self.conts = conts

    def containers(self, colour):
        return self.conts

    def memory_used(self, container_id):
        return _stats(self.conts)(container_id)


def test_preflight_paths_skip_refuse_and_name_unmeasured(tmp_path):
    info = tmp_path / "meminfo"
    info.write_text("MemAvailable:     512000 kB\n")   # 500 MiB
    said = []
    cont = _FakeContainer("shop-blue", 0, 300 * MIB)
    cont.status = "running"
    assert memory.preflight(_cfg(), _FakeBackend([]), None, "blue", said.append, info) is None
    assert said[-1] == "memory preflight: nothing live to measure; skipped"
    assert memory.preflight(_cfg(memory_headroom="off"), _FakeBackend([cont]), "blue", "green", said.append,
                            info) is None
    est = memory.preflight(_cfg(), _FakeBackend([cont]), "blue", "green", said.append, info)
    assert est is not None and est.need == 300 * MIB and said[-1].startswith("memory ok: green needs ~300 MiB")
    with pytest.raises(memory.NotEnoughMemory, match=r"green needs ~300 MiB .* but MemAvailable is 500 MiB"):
        memory.preflight(_cfg(memory_headroom="300m"), _FakeBackend([cont]), "blue", "green", said.append, info)
    with pytest.raises(memory.NotEnoughMemory, match=r"deploy/mem_limit 600 MiB x 1 container\)"):
        memory.preflight(_cfg(mem_limit="600m"), _FakeBackend([]), None, "blue", said.append, info)
    broken = _FakeContainer("shop-blue-2", 0)
    broken.status = "running"
    memory.preflight(_cfg(), _FakeBackend([cont, broken]), "blue", "green", said.append, info)
    assert "no stats in 5s for shop-blue-2 (not counted)" in said[-2]
    info.write_text("MemTotal: 1 kB\n")
    assert memory.preflight(_cfg(), _FakeBackend([cont]), "blue", "green", said.append, info) is None
    assert said[-1] == f"memory preflight: {info} has no MemAvailable; skipped"


def _main_scores(cont) -> set[str]:
    """The OOM scores of a container's long-lived processes: its init, httpd and the memory holder (``tail``).
    Short-lived ones (``sleep`` of a loop, a HEALTHCHECK's exec, which Docker starts with the container's
    configured score) may show the start score for a moment."""
    top = cont.top(ps_args="-eo pid,comm")
    pids = {int(pid) for pid, comm in top["Processes"] if comm in ("httpd", "tail")}
    cont.reload()
    pids.add(cont.attrs["State"]["Pid"])
    return {Path(f"/proc/{p}/oom_score_adj").read_text().strip() for p in pids}


# ------------------------------------------------------------------------------------ against the real daemon

def _available_mib() -> int:
    avail = memory.mem_available()
    assert avail is not None
    return avail // MIB


def _refused(runs):
    before = next(r for r in runs if r.event == "BeforeInstall")
    assert before.returncode != 0, before.output
    assert runs[-1] is before, [r.event for r in runs]
    return before


def test_preflight_refuses_a_configured_limit_larger_than_mem_available(bed):
    """deploy/mem_limit above MemAvailable: BeforeInstall refuses in one line; nothing serving is touched."""
    ok(deploy(bed.bundle("v1"), "d-one"))
    limit = f"{_available_mib() + 8192}m"
    with Load(bed.url + "/", threads=2) as load:
        runs = deploy(bed.bundle("v2", deploy={"mem_limit": limit}), "d-big")
    before = _refused(runs)
    line = before.last_line
    assert "not enough memory for both colours: green needs" in line, before.output
    assert "deploy/mem_limit" in line and "MemAvailable is" in line and "blue keeps serving" in line
    assert load.result.failed == 0, load.result.summary()
    assert bed.running_colours() == ["blue"] and bed.containers("green") == []
    assert bed.state()["live"] == "blue" and get(bed.url + "/")[1].strip() == "v1"


def test_preflight_refuses_when_the_live_colours_measured_use_does_not_fit(bed):
    """The live colour holds 400 MiB (measured with one-shot stats); the headroom leaves less than that of
    MemAvailable: refused, naming the measured use; with the default headroom the same deployment passes."""
    ok(deploy(bed.bundle("v1", container={"env": {"HOST": "127.0.0.1", "ALLOC_MB": "400"}}), "d-one"))
    live = bed.containers("blue")[0]
    wait_for(lambda: memory.usage_of(live.stats(stream=False, one_shot=True)) >= 390 * MIB, 30,
             what="the live colour to hold 400 MiB")
    headroom = _available_mib() - 200   # fits unless the host frees 200 MiB in between
    runs = deploy(bed.bundle("v2", deploy={"memory_headroom": headroom}), "d-tight")
    line = _refused(runs).last_line
    assert "green needs ~4" in line and "blue's measured use, 1 container" in line, line
    assert "MemAvailable is" in line and "blue keeps serving" in line
    assert bed.running_colours() == ["blue"] and bed.state()["live"] == "blue"
    runs = ok(deploy(bed.bundle("v2"), "d-fits"))
    start = next(r for r in runs if r.event == "BeforeInstall").output
    assert "memory ok: green needs ~" in start and "blue's measured use" in start, start


def test_the_validated_colour_gets_the_live_oom_score(bed):
    """The new colour starts with new_oom_score_adj; ValidateService gives the live one oom_score_adj.

    (A score below 0 needs CAP_SYS_RESOURCE, which this machine's root lacks: the test uses 100 and 600.)"""
    runs = ok(deploy(bed.bundle("v1", deploy={"oom_score_adj": 100, "mem_limit": "64m"}), "d-one"))
    c = bed.containers("blue")[0]
    c.reload()
    assert (c.attrs["HostConfig"]["OomScoreAdj"], c.attrs["HostConfig"]["Memory"]) == (600, 64 * MIB)
    assert _main_scores(c) == {"100"}
    assert "blue is live: OOM score 600 -> 100 (" in runs[-1].output


def test_a_rollback_gives_the_colour_it_brings_back_the_live_oom_score(bed, capsys):
    """The stopped release starts again with the new colour's score (its recorded run arguments); once it is
    live again, rollback lowers it, as ValidateService does."""
    from bluegreen_hooks.cli import main

    ok(deploy(bed.bundle("v1"), "d-one"))
    ok(deploy(bed.bundle("v2"), "d-two"))
    capsys.readouterr()
    assert main(["rollback", "--state-dir", str(bed.state_dir)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "blue is live: OOM score 500 -> 0" in out, out
    blue = bed.containers("blue")[0]
    assert _main_scores(blue) == {"0"}


# ---------------------------------------------------------------------------------------- the OOM test

@contextlib.contextmanager
def _memory_cgroup(limit_mib: int):
    """A cgroup with a memory limit for the test's containers (docker's cgroup_parent); skips without one."""
    name = f"bgh-oom-{uuid.uuid4().hex[:8]}"
    if (CGROUP_V1 / "memory.limit_in_bytes").exists():
        path, limit_file = CGROUP_V1 / name, "memory.limit_in_bytes"
    elif "memory" in (CGROUP_V2 / "cgroup.subtree_control").read_text() if (
            CGROUP_V2 / "cgroup.subtree_control").exists() else False:
        path, limit_file = CGROUP_V2 / name, "memory.max"
    else:
        if IN_CI:
            pytest.fail("CI must run the OOM test: no memory cgroup controller")
        pytest.skip("no memory cgroup controller to limit the test's containers")
    try:
        path.mkdir()
        (path / limit_file).write_text(f"{limit_mib * MIB}\n")
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"CI must run the OOM test: cannot make a memory cgroup ({exc})")
        pytest.skip(f"cannot make a memory cgroup: {exc}")
    try:
        yield "/" + name
    finally:
        with contextlib.suppress(OSError):
            wait_for(lambda: not any(p.is_dir() for p in path.iterdir()), 30, what="the containers' cgroups to go")
            path.rmdir()


@pytest.mark.parametrize("protected", [True, False], ids=["new-colour-killed", "unprotected-live-killed"])
def test_memory_runs_out_while_the_new_colour_starts(bed, protected):
    """Both colours in a 400 MiB cgroup; the live one holds 250 MiB, the new one allocates 250 MiB at start.

    With the default OOM scores the kernel kills the new colour: 0 failed requests, the live container never
    restarts and keeps its memory, and the deployment fails in one line. ``unprotected`` (the same scores for
    both colours) shows what that protects against: the kernel then kills the bigger, live colour."""
    with _memory_cgroup(400) as cgroup:
        try:
            _run_out_of_memory(bed, cgroup, protected)
        finally:   # the cgroup can go only once its containers have
            for c in bed.containers():
                c.remove(force=True)


def _run_out_of_memory(bed, cgroup, protected):
    env = {"HOST": "127.0.0.1", "ALLOC_MB": "250"}
    keys = {"cgroup_parent": cgroup, **({} if protected else {"new_oom_score_adj": 0})}
    ok(deploy(bed.bundle("v1", container={"env": env}, deploy=keys), "d-live"))
    live = bed.containers("blue")[0]
    wait_for(lambda: memory.usage_of(live.stats(stream=False, one_shot=True)) >= 240 * MIB, 30,
             what="the live colour to hold 250 MiB")
    if protected:   # ValidateService lowered the live colour's score
        assert _main_scores(live) == {"0"}
    bundle = bed.bundle("v2", container={"env": env}, deploy=keys, health={"deadline": 30})
    with Load(bed.url + "/", threads=4) as load:
        runs = deploy(bundle, "d-oom")
    live.reload()
    if not protected:   # the kernel took the bigger process: the live colour's
        assert live.attrs["RestartCount"] > 0 or live.status != "running" or load.result.failed > 0, \
            "without the OOM scores the live colour should have been the one killed"
        return
    start = runs[-1]
    assert start.event == "ApplicationStart" and start.returncode != 0, [(r.event, r.output) for r in runs]
    assert "ERROR ApplicationStart: green" in start.last_line and "blue keeps serving" in start.last_line, \
        start.output
    assert "allocation was killed" in start.output   # the new colour's log tail: killed while starting
    assert load.result.failed == 0, load.result.summary()
    assert live.status == "running" and live.attrs["RestartCount"] == 0
    assert memory.usage_of(live.stats(stream=False, one_shot=True)) >= 240 * MIB   # it kept its memory
    assert bed.state()["live"] == "blue" and get(bed.url + "/")[1].strip() == "v1"


# ------------------------------------------------------------------------------------------ compose stacks

def _with_deploy_keys(bundle, **keys):
    import tomllib

    from testbed.bundle import toml_dumps

    cfg = tomllib.loads((bundle / "bluegreen.toml").read_text())
    cfg["deploy"].update(keys)
    (bundle / "bluegreen.toml").write_text(toml_dumps(cfg))
    return bundle


def test_compose_colours_get_the_memory_override_and_the_preflight_counts_every_container(stack):
    """compose: `up` gets an override file (mem_limit, the new colour's OOM score) for every service of the
    user's file; once validated the score is lowered; the preflight measures all 3 live containers, and a
    configured limit counts once per container."""
    ok(deploy(_with_deploy_keys(stack.per_colour_bundle("v1"), mem_limit="64m"), "d-one"))
    conts = stack.project("blue")
    assert len(conts) == 3
    for c in conts:
        assert (c.attrs["HostConfig"]["Memory"], c.attrs["HostConfig"]["OomScoreAdj"]) == (64 * MIB, 500), c.name
        assert _main_scores(c) == {"0"}
    limit = f"{_available_mib() // 3 + 4096}m"
    runs = deploy(_with_deploy_keys(stack.per_colour_bundle("v2"), mem_limit=limit), "d-limit")
    line = _refused(runs).last_line
    assert "x 3 containers" in line and "MemAvailable is" in line and "blue keeps serving" in line, line
    runs = deploy(_with_deploy_keys(stack.per_colour_bundle("v2"), memory_headroom=_available_mib() + 4096),
                  "d-headroom")
    line = _refused(runs).last_line
    assert "blue's measured use, 3 containers" in line, line
    assert stack.services("blue") == ["api", "web", "worker"] and stack.project("green") == []
    runs = ok(deploy(stack.per_colour_bundle("v2"), "d-two"))
    assert "memory ok: green needs ~" in runs[1].output and "blue's measured use, 3 containers" in runs[1].output


def test_compose_memory_override_names_every_service_without_a_version_key():
    from bluegreen_hooks.runtime.compose_release import memory_override

    text = memory_override(_cfg(mem_limit="64m", cgroup_parent="/apps/shop"), ["api", "web.v2"])
    assert "version" not in text
    assert text.splitlines()[1:] == [
        "services:",
        '  "api":', "    oom_score_adj: 500", f"    mem_limit: {64 * MIB}", '    cgroup_parent: "/apps/shop"',
        '  "web.v2":', "    oom_score_adj: 500", f"    mem_limit: {64 * MIB}", '    cgroup_parent: "/apps/shop"']
    assert memory_override(_cfg(), ["web"]).splitlines()[1:] == ["services:", '  "web":', "    oom_score_adj: 500"]


def _declare_limits(bundle, colour="green", deploy_form=(), **limits):
    """Give services of ``colour``'s compose file a memory limit: ``mem_limit``, or for the services in
    ``deploy_form`` ``deploy.resources.limits.memory``."""
    f = bundle / f"docker-compose.{colour}.yml"
    text = f.read_text()
    for svc, limit in limits.items():
        key = (f"    deploy:\n      resources:\n        limits:\n          memory: {limit}\n" if svc in deploy_form
               else f"    mem_limit: {limit}\n")
        assert f"\n  {svc}:\n" in text
        text = text.replace(f"\n  {svc}:\n", f"\n  {svc}:\n{key}", 1)
    f.write_text(text)
    return bundle


def test_the_preflight_counts_the_limits_the_new_compose_file_declares(stack):
    """No deploy/mem_limit: the limits the new colour's compose file declares (mem_limit, or
    deploy.resources.limits.memory) count for their services, the live colour's measured use for the others.
    Too big: refused in one line naming them, nothing of green created; fitting: deployed with those limits."""
    ok(deploy(stack.per_colour_bundle("v1"), "d-one"))
    big = _available_mib() + 4096
    runs = deploy(_declare_limits(stack.per_colour_bundle("v2"), web=f"{big}m", api="64m"), "d-big")
    before = _refused(runs)
    line = before.last_line
    assert f"green needs ~{mib((big + 64) * MIB)} (compose file limits: api 64 MiB, web {mib(big * MIB)}" \
        in line, line   # + worker's measured use (busybox: a few MiB)
    assert "; blue's use of 1 other container)" in before.output, before.output
    assert "MemAvailable is" in line and "blue keeps serving; lower those limits or use a larger instance" in line
    assert " ... " not in line and "\n" not in line   # short enough for the runner's last-line limit (not cut)
    assert stack.services("blue") == ["api", "web", "worker"] and stack.project("green") == []
    bundle = _declare_limits(stack.per_colour_bundle("v2"), deploy_form=("worker",), web="64m", api="48m",
                             worker="32M")
    runs = ok(deploy(bundle, "d-two"))
    before = next(r for r in runs if r.event == "BeforeInstall").output
    assert ("memory ok: green needs ~144 MiB (compose file limits: api 48 MiB, web 64 MiB, "
            "worker 32 MiB) + 128 MiB headroom") in before, before
    limits = {c.labels["com.docker.compose.service"]: c.attrs["HostConfig"]["Memory"] for c in stack.project("green")}
    assert limits == {"web": 64 * MIB, "api": 48 * MIB, "worker": 32 * MIB}


def test_compose_rollback_re_creates_the_release_with_its_memory_override(stack, capsys):
    """A compose release re-created from its record by ``rollback`` (its containers gone) gets the memory
    override its deployment's ``up`` had, from that release's config (deploy/mem_limit of v1; v2 has none):
    the limit, the new colour's OOM score in HostConfig, and the live score once it is live again."""
    from bluegreen_hooks.cli import main

    ok(deploy(_with_deploy_keys(stack.per_colour_bundle("v1"), mem_limit="64m"), "d-one"))
    ok(deploy(stack.per_colour_bundle("v2"), "d-two"))
    for c in stack.project("blue"):
        c.remove(force=True)
    capsys.readouterr()
    assert main(["rollback", "--state-dir", str(stack.state_dir)]) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    assert "re-creating" in out.out + out.err
    assert "blue is live: OOM score 500 -> 0" in out.out + out.err
    conts = stack.project("blue")
    assert sorted(c.labels["com.docker.compose.service"] for c in conts) == ["api", "web", "worker"]
    for c in conts:
        assert (c.attrs["HostConfig"]["Memory"], c.attrs["HostConfig"]["OomScoreAdj"]) == (64 * MIB, 500), c.name
        assert _main_scores(c) == {"0"}
    assert get(stack.url + "/")[1].strip() == "v1"


V1_25 = """\
version: "2.4"
services:
  web:
    image: x
    mem_limit: 512m
    scale: 2
  api:
    image: x
    mem_limit: 300000000
  worker:
    image: x
    command: ["sh", "-c", "echo mem_limit: 9g"]
    environment:
      mem_limit: 9g
"""
V3_8 = """\
version: "3.8"
services:
  web:
    image: x
    mem_limit: 256m
    deploy:
      replicas: 3
      resources:
        limits:
          memory: 1.5G
          cpus: "0.5"
        reservations:
          memory: 100M
  api:
    image: x
    deploy:
      resources:
        reservations:
          memory: 2g
"""
# compose v2's `config`: sizes in bytes, quoted
V2_RENDERED = """\
name: shop-green
services:
  web:
    deploy:
      resources:
        limits:
          memory: "536870912"
    image: x
    mem_limit: "536870912"
  api:
    image: x
    mem_limit: '268435456'
    scale: 2
volumes:
  data:
    mem_limit: 1g
"""


def test_declared_memory_reads_compose_configs_output(tmp_path, compose_cmd):
    """The limits and container counts per service, from `config`'s output of 2.x and 3.x files (rendered by
    the real docker-compose) and from compose v2's form; a limit-like value elsewhere (an environment
    variable, a command, a volume) and a reservation are not limits."""
    from bluegreen_hooks.runtime.compose_release import DeclaredMemory, declared_memory

    rendered = {}
    for name, text in (("v2.yml", V1_25), ("v3.yml", V3_8)):
        (tmp_path / name).write_text(text)
        proc = subprocess.run([*compose_cmd, "-f", name, "config"], capture_output=True, text=True, cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        rendered[name] = proc.stdout
    assert declared_memory(rendered["v2.yml"]) == {"web": DeclaredMemory(512 * MIB, 2),
                                                   "api": DeclaredMemory(300000000, 1),
                                                   "worker": DeclaredMemory(None, 1)}
    assert declared_memory(rendered["v3.yml"]) == {"web": DeclaredMemory(1536 * MIB, 3),   # deploy's wins
                                                   "api": DeclaredMemory(None, 1)}
    assert declared_memory(V2_RENDERED) == {"web": DeclaredMemory(512 * MIB, 1), "api": DeclaredMemory(256 * MIB, 2)}
    assert declared_memory("services:\n  web:\n    mem_limit: lots\n") == {"web": DeclaredMemory(None, 1)}


def test_the_estimate_mixes_declared_limits_and_measured_use():
    """compose: services with a declared limit count it (times their containers), the live containers of the
    others are measured; deploy/mem_limit wins over both."""
    from bluegreen_hooks.runtime.compose_release import DeclaredMemory

    conts = []
    for svc, used in (("web", 300), ("web", 300), ("api", 40), ("worker", 10)):
        c = _FakeContainer(f"shop-blue-{svc}-{len(conts)}", 0, used * MIB)
        c.labels = {"com.docker.compose.service": svc}
        conts.append(c)
    declared = {"web": DeclaredMemory(512 * MIB, 2), "api": DeclaredMemory(None, 1), "worker": DeclaredMemory(None)}
    est = memory.estimate(_cfg(), "blue", conts, _stats(conts), declared=declared)
    assert est.need == (1024 + 50) * MIB
    assert est.how == "compose file limits: web 512 MiB x 2; blue's use of 2 other containers"
    assert est.fix == memory.LOWER_LIMITS and memory.estimate(_cfg(), "blue", conts, _stats(conts)).fix.startswith(
        "free memory")
    all_declared = {**declared, "api": DeclaredMemory(64 * MIB), "worker": DeclaredMemory(32 * MIB)}
    est = memory.estimate(_cfg(), "blue", conts, _stats(conts), declared=all_declared)
    assert (est.need, est.unmeasured) == ((1024 + 96) * MIB, ())
    assert est.how == "compose file limits: api 64 MiB, web 512 MiB x 2, worker 32 MiB"
    est = memory.estimate(_cfg(mem_limit="100m"), "blue", conts, _stats(conts), declared=all_declared)
    assert (est.need, est.how) == (400 * MIB, "deploy/mem_limit 100 MiB x 4 containers")
