"""Release tasks (``[[tasks]]``) run inside the new colour's container, on the real test bed under load."""
from __future__ import annotations

import pytest

from bluegreen_hooks.config.tasks import parse_tasks
from bluegreen_hooks.errors import ConfigError
from testbed.bundle import deploy, toml_value
from testbed.load import Load
from tests.helpers import get, ok


def _with_tasks(bundle, *tasks):
    """Append ``[[tasks]]`` tables to the bundle's bluegreen.toml."""
    text = "".join("\n[[tasks]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in t.items()) for t in tasks)
    toml = bundle / "bluegreen.toml"
    toml.write_text(toml.read_text() + text)
    return bundle


MIGRATE = {"name": "migrate", "when": "before_switch", "timeout": 30,
           "run": ["sh", "-c", "echo migrated $BLUEGREEN_DEPLOYMENT from $BLUEGREEN_OLD_COLOUR to $BLUEGREEN_COLOUR "
                               "> /tmp/www/migrated; echo done"]}


def test_before_switch_and_after_validate_tasks_run_in_the_new_colour(bed):
    """A migration before the switch: its effect is served by the new colour before any traffic reaches it;
    an after_validate task runs once ValidateService passed. Both are in the output and the history."""
    ok(deploy(bed.bundle("v1"), "d-t1"))
    after = {"name": "warm", "when": "after_validate", "run": ["sh", "-c", "echo warm > /tmp/www/warm"]}
    with Load(bed.url + "/", threads=3) as load:
        runs = ok(deploy(_with_tasks(bed.bundle("v2"), MIGRATE, after), "d-t2"))
    assert load.result.failed == 0 and load.result.versions_in_order == ["v1", "v2"], load.result.summary()
    start = next(r for r in runs if r.event == "ApplicationStart").output
    assert "task migrate (before_switch) succeeded" in start, start
    assert start.index("task migrate (before_switch) succeeded") < start.index("nginx now sends traffic to green")
    assert get(f"http://127.0.0.1:{bed.ports[1]}/migrated")[1].strip() == "migrated d-t2 from blue to green"
    assert get(bed.url + "/warm")[1].strip() == "warm"
    timings = bed.state()["deployments"][-1]["timings"]
    assert "task_migrate" in timings and "task_warm" in timings, timings


def test_a_failing_before_switch_task_means_no_switch(bed):
    """The migration exits 3: no switch, green removed, blue keeps serving (0 failed); the last line names the
    task, its exit code and the tail of its output."""
    ok(deploy(bed.bundle("v1"), "d-f1"))
    before = bed.include()
    bad = {**MIGRATE, "run": ["sh", "-c", "echo applying 0042; echo 'relation users does not exist' >&2; exit 3"]}
    with Load(bed.url + "/", threads=3) as load:
        runs = deploy(_with_tasks(bed.bundle("v2"), bad), "d-f2")
    last = runs[-1]
    assert last.event == "ApplicationStart" and last.returncode != 0, last.output
    assert last.last_line.startswith("ERROR ApplicationStart: task migrate (before_switch) failed with exit code 3")
    assert "relation users does not exist" in last.last_line and last.last_line.endswith("blue keeps serving")
    assert len(last.output) > 0 and len(last.last_line) <= 300
    assert load.result.failed == 0 and load.result.versions_seen == {"v1"}, load.result.summary()
    assert bed.include() == before and bed.containers("green") == [] and bed.state()["live"] == "blue"


def test_a_hanging_task_is_ended_by_its_timeout(bed):
    """A before_switch task that never ends is killed at its timeout (2 s): no switch, blue keeps serving."""
    ok(deploy(bed.bundle("v1"), "d-h1"))
    hang = {"name": "migrate", "when": "before_switch", "timeout": 2, "run": ["sleep", "600"]}
    runs = deploy(_with_tasks(bed.bundle("v2"), hang), "d-h2")
    last = runs[-1]
    assert last.returncode != 0 and "did not finish within its timeout of 2s (killed)" in last.last_line, last.output
    assert last.seconds < 60 and bed.state()["live"] == "blue" and bed.containers("green") == []


def test_tasks_are_validated_with_one_line_naming_the_key():
    for raw, key in (([{"name": "m", "when": "before", "run": ["x"]}], "tasks/1/when"),
                     ([{"when": "before_switch", "run": ["x"]}], "tasks/1/name"),
                     ([{"name": "m", "run": "x"}], "tasks/1/run"),
                     ([{"name": "m", "run": ["x"], "service": "api"}], "tasks/1/service"),
                     ([{"name": "m", "run": ["x"], "timeout": 3000}, {"name": "n", "run": ["y"], "timeout": 3000}],
                      "tasks:")):
        with pytest.raises(ConfigError, match=f"bluegreen.toml: {key}"):
            parse_tasks("bluegreen.toml", raw, compose=False)


def test_dry_run_lists_the_tasks(bed, capsys):
    from bluegreen_hooks.cli import main

    b = _with_tasks(bed.bundle("v1"), MIGRATE)
    assert main(["local", str(b), "--dry-run", "--root", str(bed.tmp / "root")]) == 0
    out = capsys.readouterr().out
    assert "task migrate (before_switch, timeout 30s)" in out, out


@pytest.mark.agent
def test_tasks_through_the_real_codedeploy_agent(bed):
    """The same migration through the real agent (CODEDEPLOY_LOCAL): succeeds before the switch; a failing one
    fails ApplicationStart with the task named in what the agent reports."""
    run = bed.agent()
    assert run(bed.bundle("v1")).returncode == 0
    with Load(bed.url + "/", threads=2) as load:
        good = run(_with_tasks(bed.bundle("v2"), MIGRATE))
        assert good.returncode == 0, good.stdout
        bad = {**MIGRATE, "run": ["sh", "-c", "echo broken >&2; exit 4"]}
        failed = run(_with_tasks(bed.bundle("v3"), bad))
    assert failed.returncode != 0
    logs = "".join(p.read_text() for p in run.root.rglob("scripts.log"))
    assert "task migrate (before_switch) failed with exit code 4" in logs, logs[-3000:]
    assert get(f"http://127.0.0.1:{bed.ports[1]}/migrated")[1].startswith("migrated")
    assert load.result.failed == 0 and bed.state()["live"] == "green", load.result.summary()
