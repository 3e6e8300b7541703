"""``bluegreen-hooks local --dry-run``: what a local deployment would do, without doing any of it.

Lists each event with its scripts (ApplicationStop and the BlockTraffic events from the previous
revision) and, when the bundle has a bluegreen.toml, the plan of our own events (plan.py).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable, TextIO

from bluegreen_hooks.agent.local import FROM_PREVIOUS, Options, Runner, load_appspec
from bluegreen_hooks.agent.unpack import check_links, unpack
from bluegreen_hooks.config.appspec import AppSpec
from bluegreen_hooks.model import EVENTS


def dry_run(opts: Options, out: TextIO | None = None) -> int:
    """Print what a local deployment would do; write nothing under the root, run no hook."""
    stream = out or sys.stdout

    def say(msg: str) -> None:
        print(msg, file=stream, flush=True)

    with tempfile.TemporaryDirectory(prefix="bgh-dry-") as tmp:
        archive = opts.bundle if opts.bundle.is_dir() else Path(tmp) / "bundle"
        if opts.bundle.is_dir():
            check_links(opts.bundle, opts.bundle)
        else:
            unpack(opts.bundle, archive)
        spec = load_appspec(archive)
        runner = Runner(opts, stream)
        say(f"DRY RUN (nothing is changed): local deployment {opts.deployment_id} of {opts.bundle} "
            f"(application {opts.application_name}, group {opts.group_name} / {opts.group_id})")
        for event in runner.events():
            say(_event_line(event, spec, runner))
        _our_plan(archive, spec, runner.events(), opts.deployment_id, opts.group_id, say)
    return 0


def _scripts(spec: AppSpec, event: str) -> str:
    return ", ".join(f"{s.location} ({s.timeout}s)" for s in spec.hooks.get(event) or ()) or "no hooks"


def _event_line(event: str, spec: AppSpec, runner: Runner) -> str:
    """One line: what the event would do or run."""
    if event == "DownloadBundle":
        return f"{event}: unpack into {runner.archive}"
    if event == "Install":
        if not spec.files:
            return f"{event}: no files to copy"
        return "\n".join(f"{event}: copy {src} -> {runner.install_root / dst.lstrip('/')}" for src, dst in spec.files)
    if event in FROM_PREVIOUS:
        prev = runner.last_successful()
        if prev is None:
            return f"{event}: skipped (no previous revision in this deployment group)"
        previous = load_appspec(prev / "deployment-archive")
        return f"{event}: {_scripts(previous, event)} from the previous revision {prev.name}"
    return f"{event}: {_scripts(spec, event)}"


def _our_plan(archive: Path, spec: AppSpec, events: list[str], deployment_id: str, group: str,
              say: Callable[[str], None]) -> None:
    """The plan of bluegreen-hooks' own events (model.EVENTS) that have hooks, when the bundle has our config."""
    from bluegreen_hooks import config as config_mod

    cfg_path = config_mod.find(archive)
    if not cfg_path.exists():
        return
    from bluegreen_hooks.agent import plan

    cfg = config_mod.load(cfg_path)
    ours = [e for e in EVENTS if e in events and spec.hooks.get(e)]
    say("")
    for ln in plan.describe(cfg, deployment_id, ours, group):
        say(ln)
