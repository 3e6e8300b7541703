"""``history``: the audit log kept in the state file, one record per event run (and per deployment)."""
from __future__ import annotations

from typing import Any

from bluegreen_hooks.config import Config
from bluegreen_hooks.host.releases import images_text
from bluegreen_hooks.host.store import Store
from bluegreen_hooks.operator.find_app import open_store, read_state
from bluegreen_hooks.operator.text import utc


def read_history(cfg: Config, n: int) -> dict[str, Any]:
    """``{app, state_file, events, deployments}``: the last ``n`` records of each, as the state stores them."""
    return read_store(open_store(cfg), n)


def read_store(store: Store, n: int) -> dict[str, Any]:
    """``read_history`` from a store (no config needed)."""
    from bluegreen_hooks.host import releases

    state, _ = read_state(store)
    recorded = releases.summary(store.dir, store.app)
    deployments = [{**d, "images": recorded[d["id"]]["images"]} if isinstance(d, dict) and d.get("id") in recorded
                   else d for d in state.deployments[-n:]]
    return {"app": store.app, "state_file": str(store.path), "events": state.events[-n:],
            "deployments": deployments}


def deployment_line(d: dict[str, Any]) -> str:
    """One deployment record: when it ended, id, outcome, colours, duration, image, cause."""
    return (f"{utc(d.get('ended'))}  {d.get('id') or '-':<28} {d.get('outcome') or '-':<10} "
            f"{(d.get('from') or '-') + ' -> ' + (d.get('target') or '-'):<14} {d.get('seconds') or 0:8.2f}s  "
            f"image {d.get('image') or '-'}" + (f" ({images_text(d['images'])})" if d.get("images") else "")
            + (f"  cause: {d['cause']}" if d.get("cause") else "")
            + canary_text(d.get("canary")) + receipt_text(d.get("receipt")))


def receipt_text(r: Any) -> str:
    """A deployment's receipt (lifecycle/watch.py): the window's verdict and what each colour's clients got."""
    if not isinstance(r, dict):
        return ""

    def side(c: Any) -> str:
        if not isinstance(c, dict):
            return "-"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted((c.get("failures") or {}).items()))
        p95 = f", p95 {c['p95']:.3f}s" if isinstance(c.get("p95"), (int, float)) else ""
        return (f"{c.get('colour')} {c.get('requests', 0)} requests, {c.get('failed', 0)} failed"
                + (f" ({kinds})" if kinds else "") + p95)
    b = r.get("baseline")     # the old colour's latency before the switch (observe/baseline.py)
    before = (f"; {b.get('colour')} p95 {b['p95']:.3f}s before the switch ({b.get('samples')} requests)"
              if isinstance(b, dict) and isinstance(b.get("p95"), (int, float)) else "")
    return (f"  {r.get('window', 'watch')} {r.get('verdict')} after {r.get('seconds', 0)}s: {side(r.get('new'))}; "
            f"{side(r.get('old'))}{before}")


def canary_text(c: Any) -> str:
    """A deployment's canary: how it ended and each step's figures (new colour, then old)."""
    if not isinstance(c, dict):
        return ""
    def side(t: Any) -> str:       # records before issue 24 count "5xx"; later ones every failed attempt
        t = t if isinstance(t, dict) else {}
        if "failed" not in t:
            return f"{t.get('requests', 0)} requests {t.get('5xx', 0)} 5xx"
        kinds = ", ".join(f"{k} {v}" for k, v in (t.get("failures") or {}).items())
        p95 = f", p95 {t['p95']}s" if t.get("p95") is not None else ""
        return f"{t.get('requests', 0)} requests {t.get('failed', 0)} failed{f' ({kinds})' if kinds else ''}{p95}"

    steps = "; ".join(
        f"{s.get('share')} %: {c.get('new')} {side(s.get('new'))}, {c.get('old')} {side(s.get('old'))}, "
        f"{s.get('seconds', 0)}s {s.get('verdict')}"
        for s in c.get("steps", []) if isinstance(s, dict))
    cause = f" ({c['cause']})" if c.get("cause") else ""
    return f"  canary {c.get('phase')}{cause}" + (f": {steps}" if steps else "")


def event_line(e: dict[str, Any]) -> str:
    """One event record: when, deployment, event, outcome, duration, live/target colours, user@host, cause."""
    colours = f"{e.get('live') or '-'}/{e.get('target') or '-'}"
    return (f"{utc(e.get('at'))}  {e.get('deployment') or '-':<28} {e.get('event') or '-':<16} "
            f"{e.get('outcome') or '-':<10} {e.get('seconds') or 0:7.2f}s  live/target {colours:<12} "
            f"{e.get('user') or '?'}@{e.get('host') or '?'}" + (f"  cause: {e['cause']}" if e.get("cause") else ""))


def print_history(h: dict[str, Any], deployments: bool = False) -> None:
    """Print ``read_history``'s events (or its deployments), oldest first."""
    if deployments:
        if not h["deployments"]:
            print(f"no deployments recorded in {h['state_file']}")
        for d in h["deployments"]:
            print(deployment_line(d))
        return
    if not h["events"]:
        print(f"no events recorded in {h['state_file']}")
    for e in h["events"]:
        print(event_line(e))
