"""The ``bluegreen-hooks`` command. ``main(argv)`` returns the exit status, so tests call it directly.

Exit codes: 0 ok; 1 a step failed (the last line says why); 2 bad input (config, arguments);
3 another deployment holds the app.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

EVENTS = ("ApplicationStop", "BeforeInstall", "ApplicationStart", "ValidateService")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bluegreen-hooks", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    h = sub.add_parser("hook", help="run one CodeDeploy lifecycle event (what hooks/<Event> runs)",
                       description="Run one lifecycle event against the bundle's bluegreen.toml. Uses the agent's "
                                   "environment (DEPLOYMENT_ID, …); without it, a stable manual-… deployment id.")
    h.add_argument("event", choices=EVENTS)
    h.add_argument("--bundle", type=Path, default=None, help="the bundle root (default: the current directory)")
    h.add_argument("--deployment-id", help="deployment id for a hand run (default: $DEPLOYMENT_ID)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "hook":
        from bluegreen_hooks.events import run_event

        environ = dict(os.environ)
        if args.deployment_id:
            environ["DEPLOYMENT_ID"] = args.deployment_id
        return run_event(args.event, (args.bundle or Path.cwd()).resolve(), environ)
    return 2  # pragma: no cover - argparse enforces a command


def entrypoint() -> None:
    raise SystemExit(main(sys.argv[1:]))
