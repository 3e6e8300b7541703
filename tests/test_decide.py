"""Pure logic of the state and the central decision: the store, claims, reconcile, decide()."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest

from bluegreen_hooks.decide import World, claim, decide, early_target, reconcile
from bluegreen_hooks.host import procfs
from bluegreen_hooks.host.store import Store, me
from bluegreen_hooks.model import Canary, InProgress, Retiring, Running, State

ALIVE = procfs.process_alive


def test_store_writes_atomically_with_private_permissions(tmp_path):
    store = Store(tmp_path / "st", "shop")
    with store.update() as st:
        st.live = "blue"
    assert stat.S_IMODE(os.stat(tmp_path / "st").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    read = store.read()
    assert read.state.live == "blue" and read.problem is None
    assert [p.name for p in (tmp_path / "st").iterdir() if p.name.endswith(".tmp")] == []


def test_store_treats_missing_and_corrupt_files_as_empty(tmp_path):
    store = Store(tmp_path, "shop")
    assert store.read().state.live is None and store.read().problem == "missing"
    store.path.write_text('{"app": "other"}')
    read = store.read()
    assert read.state.live is None and read.problem == "corrupt" and read.why.startswith("app: should be")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("shop.json.corrupt-")]


@pytest.mark.parametrize("bad", [
    {"started": "yesterday"}, {"deployments": [1, "x"]}, {"live": "purple"}, {"live_since": "now"},
    {"drain_workers": [[1]]}, {"in_progress": {"id": "d-1", "started": "yesterday"}},
    {"in_progress": {"id": "d-1\n", "started": 1}}, {"events": {}},
])
def test_a_state_of_the_wrong_shape_is_corrupt_and_quarantined_each_time(tmp_path, bad):
    """Valid JSON with wrong types is refused on read like a corrupt file; a second corruption keeps the first."""
    store = Store(tmp_path, "shop")
    good = State("shop").to_json()
    for n in (1, 2):
        data = {**good, **bad}
        if "started" in bad and "in_progress" not in bad:
            data["in_progress"] = {"id": "d-1", "started": bad["started"]}
        store.path.write_text(json.dumps(data))
        read = store.read()
        assert read.problem == "corrupt" and read.state == State("shop")
        assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == n


def test_state_round_trips_and_keeps_unknown_keys():
    st = State("shop", live="green", live_deployment="d-1", extra={"future": 1},
               in_progress=InProgress("d-2", "blue", 1.0, from_colour="green", extra={"later": [1]}))
    again = State.from_json(json.loads(json.dumps(st.to_json())), "shop")
    assert again == st and again.to_json()["in_progress"]["from"] == "green"


def _ip(**kw):
    now = time.time()
    base = dict(id="d-1", target="green", started=now - 30, updated=now - 10, event="ApplicationStart",
                event_done=False, pid=os.getpid(), pid_start=procfs.process_start_time(os.getpid()),
                host=os.uname().nodename)
    base.update(kw)
    return InProgress(**base)


def _claim(st, deployment, event, target, stale_after):
    return claim(st, deployment, event, target, me(), time.time(), stale_after, ALIVE)


def test_claim_refuses_while_the_holder_process_runs():
    st = State("shop", in_progress=_ip())
    busy, _ = _claim(st, "d-2", "BeforeInstall", "green", 900)
    assert "deployment d-1 is in progress (ApplicationStart running as pid" in busy and "started 30s ago" in busy
    assert st.in_progress.id == "d-1"


def test_claim_takes_over_a_holder_whose_process_died():
    st = State("shop", in_progress=_ip(pid=2 ** 22 + 1, pid_start=1))
    busy, took_over = _claim(st, "d-2", "BeforeInstall", "green", 900)
    note = took_over.text()
    assert busy is None and "took over from stale deployment d-1" in note and "died without finishing" in note
    assert st.in_progress.id == "d-2" and st.deployments[-1]["outcome"] == "abandoned"


def test_claim_between_events_is_busy_until_stale_after():
    st = State("shop", in_progress=_ip(event_done=True, event="BeforeInstall"))
    busy, _ = _claim(st, "d-2", "BeforeInstall", "green", 900)
    assert "between events" in busy
    assert _claim(st, "d-2", "BeforeInstall", "green", 5)[1] is not None   # idle 10 s > 5 s: stale


def test_claim_by_the_same_deployment_keeps_its_target():
    st = State("shop", in_progress=_ip(event_done=True))
    assert _claim(st, "d-1", "ValidateService", None, 900) == (None, None)
    assert st.in_progress.target == "green" and st.in_progress.event == "ValidateService"


def _run(d):
    return Running(d, "img", "n") if d else None


@pytest.mark.parametrize("recorded, include, running, live", [
    ("blue", "green", {"blue": _run("d-1"), "green": _run("d-9")}, "green"),   # nginx is the truth
    ("blue", "green", {"blue": _run("d-1"), "green": None}, "blue"),           # include names a dead colour
    (None, None, {"blue": None, "green": _run("d-2")}, "green"),               # only one runs
    ("green", None, {"blue": None, "green": None}, None),                      # nothing runs
    ("blue", "blue", {"blue": _run("d-1"), "green": None}, "blue"),            # agreement: no note
])
def test_reconcile(recorded, include, running, live):
    st = State("shop", live=recorded)
    notes = reconcile(st, include, running, None, time.time())
    assert st.live == live
    assert bool(notes) == (recorded != live)


def _decide(st, world, deployment="d-new"):
    return decide(st, world, deployment, "BeforeInstall", me(), time.time(), 900, ALIVE)


def test_decide_first_deployment_targets_blue_and_a_completed_one_is_a_no_op():
    d = _decide(State("shop"), World(None, None, {"blue": None, "green": None}, "missing"))
    assert (d.live, d.target, d.old, d.done, d.busy) == (None, "blue", None, False, None)
    assert d.state.in_progress.id == "d-new" and d.notes[0].startswith("state file was missing")
    live = State("shop", live="green", live_deployment="d-old")
    w = World("green", "green", {"blue": None, "green": _run("d-old")})
    assert _decide(live, w, "d-old").done
    d = _decide(live, w)
    assert (d.live, d.target, d.old) == ("green", "blue", "green")


def test_decide_repairs_an_interrupted_switch_by_what_nginx_serves():
    """SIGKILL between writing the include (green) and the reload: nginx still serves blue, which runs."""
    st = State("shop", live="blue", live_deployment="d-1")
    w = World("green", "blue", {"blue": _run("d-1"), "green": _run("d-2")})
    d = _decide(st, w)
    assert (d.live, d.target, d.repair) == ("blue", "green", "blue")


def test_decide_keeps_the_target_of_a_deployment_in_progress_and_refuses_a_busy_one():
    st = State("shop", live="blue", in_progress=_ip(target="green", stage="BeforeInstall", event_done=True))
    d = _decide(st, World("blue", "blue", {"blue": _run("d-0"), "green": None}), "d-1")
    assert d.target == "green" and "keeps target green" in d.resumed
    busy = _decide(State("shop", in_progress=_ip()), World(None, None, {"blue": None, "green": None}), "d-2")
    assert busy.busy and busy.state is None


def _after_before_install(live=None, target="green", **ip):
    """The state BeforeInstall of d-2 leaves: its claim, event done, target chosen."""
    fields = {"stage": "BeforeInstall", "event": "BeforeInstall", "event_done": True, **ip}
    return State("shop", live=live, in_progress=InProgress("d-2", target, 1.0, **fields))


@pytest.mark.parametrize("case, state, include, served, split, expected", [
    ("as BeforeInstall left it", _after_before_install("blue"), "blue", "blue", False, "green"),
    ("nginx answers without a colour header", _after_before_install("blue"), "blue", None, False, "green"),
    ("first deployment: nothing live, no include", _after_before_install(None, "blue"), None, None, False, "blue"),
    ("the include names another colour", _after_before_install("blue"), "green", "green", False, None),
    ("nginx serves another colour (an interrupted switch)", _after_before_install("blue"), "blue", "green", False,
     None),
    ("the include splits (a canary)", _after_before_install("blue"), None, None, True, None),
    ("the target is the live colour", _after_before_install("green"), "green", "green", False, None),
    ("another deployment holds the app", _after_before_install("blue"), "blue", "blue", False, "other"),
    ("BeforeInstall still runs", _after_before_install("blue", event_done=False), "blue", "blue", False, None),
    ("ApplicationStart ran before", _after_before_install("blue", stage="switched"), "blue", "blue", False, None),
    ("a canary is recorded", _after_before_install("blue", canary=Canary("blue", "green", 10)), "blue", "blue",
     False, None),
])
def test_application_start_starts_early_only_when_nothing_moved_since_before_install(case, state, include, served,
                                                                                     split, expected):
    """decide.early_target: a compose app's ``up`` may start before Docker is observed only when BeforeInstall's
    choice must still hold; anything that could have moved sends ApplicationStart the usual way."""
    deployment = "d-2"
    if expected == "other":   # the claim belongs to another deployment
        deployment, expected = "d-3", None
    assert early_target(state, deployment, include, served, split) == expected, case


def test_no_early_start_while_a_background_retire_is_recorded():
    st = _after_before_install("blue")
    assert early_target(st, "d-2", "blue", "blue", False) == "green"
    st.retiring = Retiring(colour="green", live="blue", deployment="d-1", since=1.0)
    assert early_target(st, "d-2", "blue", "blue", False) is None


def _world(include, served, running):
    return World(include, served, {c: _run(running.get(c)) for c in ("blue", "green")})


@pytest.mark.parametrize("case, state, world, switched, refused, confirmed", [
    ("as BeforeInstall left it", _after_before_install("blue"),
     _world("blue", "blue", {"blue": "d-1"}), False, False, "green"),
    ("first deployment", _after_before_install(None, "blue"), _world(None, None, {}), False, False, "blue"),
    ("an interrupted switch is repaired first", _after_before_install("blue"),
     _world("green", "blue", {"blue": "d-1", "green": "d-2"}), False, False, None),
    ("an interrupted canary is repaired first", _after_before_install("blue"),
     World(None, None, {"blue": _run("d-1"), "green": _run("d-2")}, canary_old="blue"), False, False, None),
    ("its switch went through, not recorded", _after_before_install("blue"),
     _world("green", "green", {"blue": "d-1", "green": "d-2"}), False, True, None),
    ("it already switched", _after_before_install("green", stage="switched"),
     _world("green", "green", {"blue": "d-1", "green": "d-2"}), True, False, None),
    ("it already validated", _after_before_install("green", stage="validated"),
     _world("green", "green", {"blue": "d-1", "green": "d-2"}), True, False, None),
    ("switched, then nginx went back", _after_before_install("blue", stage="switched"),
     _world("blue", "blue", {"blue": "d-1", "green": "d-2"}), False, False, None),
    ("no BeforeInstall of it (a new claim)", State("shop", live="blue", live_deployment="d-1"),
     _world("blue", "blue", {"blue": "d-1"}), False, False, None),
])
def test_application_start_reads_what_it_does_from_the_decision(case, state, world, switched, refused, confirmed):
    """decide() answers ApplicationStart's questions as fields: ``switched`` (validate, nothing else), ``refused``
    (the target is live, not by its own recorded switch), ``confirmed`` (an early start of BeforeInstall's
    choice may go on: nothing moved, nothing to repair)."""
    d = decide(state, world, "d-2", "ApplicationStart", me(), time.time(), 900, ALIVE)
    assert not d.busy and not d.done, case
    assert d.switched is switched, case
    assert d.refused == (f"target colour {d.target} is live; refusing to replace it (run `bluegreen-hooks status`)"
                         if refused else None), case
    assert d.confirmed == confirmed, case


def test_a_busy_or_completed_decision_confirms_nothing():
    """Refused by another holder, or already live: no field lets ApplicationStart go on."""
    busy = decide(State("shop", in_progress=_ip()), World(None, None, {"blue": None, "green": None}), "d-2",
                  "ApplicationStart", me(), time.time(), 900, ALIVE)
    done = decide(State("shop", live="green", live_deployment="d-2"), _world("green", "green", {"green": "d-2"}),
                  "d-2", "ApplicationStart", me(), time.time(), 900, ALIVE)
    for d in (busy, done):
        assert (d.switched, d.refused, d.confirmed) == (False, None, None)
