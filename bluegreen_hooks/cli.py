"""The ``bluegreen-hooks`` command. ``main(argv)`` returns the exit status, so tests call it directly.

Exit codes: 0 ok; 1 a step failed (the last line says why); 2 bad input (config, arguments);
3 another deployment holds the app.

Each group of commands lives in its own module that defines ``add_commands(subparsers)``; a command's
parser sets ``func`` to a function ``(args) -> int``. Those modules import only what they need to
build their parsers: heavy imports (docker, boto3) happen inside the command functions.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bluegreen_hooks.errors import HookError
from bluegreen_hooks.model import AGENT_EVENTS

# modules that add commands (each defines add_commands(subparsers))
COMMAND_MODULES: tuple[str, ...] = ("bluegreen_hooks.agent.commands", "bluegreen_hooks.delivery.commands",
                                   "bluegreen_hooks.operator.commands")


def _hook(args: argparse.Namespace) -> int:
    from bluegreen_hooks.lifecycle.runner import run_event

    environ = dict(os.environ)
    if args.deployment_id:
        environ["DEPLOYMENT_ID"] = args.deployment_id
    return run_event(args.event, (args.bundle or Path.cwd()).resolve(), environ,
                     dry_run=getattr(args, "dry_run", False))


def parser(only_hook: bool = False, prog: str = "bluegreen-hooks") -> argparse.ArgumentParser:
    """The argument parser; ``only_hook`` skips the other command modules (hooks start faster)."""
    p = argparse.ArgumentParser(prog=prog,
                                description="Zero-downtime blue/green deployments of a Docker app behind nginx.",
                                epilog="exit codes: 0 ok, 1 failed (last line says why), 2 bad input, 3 locked by "
                                       "another deployment")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    h = sub.add_parser("hook", help="run one CodeDeploy lifecycle event (what hooks/<Event> runs)",
                       description="Run one lifecycle event against the bundle's bluegreen.toml. Uses the agent's "
                                   "environment (DEPLOYMENT_ID, …); without it, a stable manual-… deployment id.")
    h.add_argument("event", choices=AGENT_EVENTS)
    h.add_argument("--bundle", type=Path, default=None, help="the bundle root (default: the current directory)")
    h.add_argument("--deployment-id", help="deployment id for a hand run (default: $DEPLOYMENT_ID)")
    h.add_argument("--dry-run", action="store_true",
                   help="print what the event would do (colour, image, containers, include text, nginx commands); "
                        "change nothing")
    h.set_defaults(func=_hook)
    for name in () if only_hook else COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "bluegreen-hooks") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(only_hook=argv[:1] == ["hook"], prog=prog).parse_args(argv)
    try:
        return args.func(args)
    except HookError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return exc.exit_code


def entrypoint() -> None:
    raise SystemExit(main(sys.argv[1:]))
