"""The ``bluegreen-hooks`` command. ``main(argv)`` returns the exit status, so tests call it directly.

Exit codes: 0 ok; 1 a step failed (the last line says why); 2 bad input (config, arguments);
3 another deployment holds the app.

Each group of commands lives in its own module that defines ``add_commands(subparsers)``; a command's
parser sets ``func`` to a function ``(args) -> int``. Those modules import only what they need to
build their parsers: heavy imports (docker, boto3) happen inside the command functions.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bluegreen_hooks.errors import HookError
from bluegreen_hooks.model import AGENT_EVENTS

# modules that add commands (each defines add_commands(subparsers))
COMMAND_MODULES: tuple[str, ...] = ("bluegreen_hooks.agent.commands", "bluegreen_hooks.delivery.commands",
                                   "bluegreen_hooks.operator.commands", "bluegreen_hooks.operator.setup_host",
                                   "bluegreen_hooks.operator.parsers")


def _hook(args: argparse.Namespace) -> int:
    from bluegreen_hooks.lifecycle.runner import Describe, run_event

    environ = dict(os.environ)
    if args.deployment_id:
        environ["DEPLOYMENT_ID"] = args.deployment_id
    describe: Describe | None = None
    if getattr(args, "dry_run", False):   # the dry run's planner lives in the agent layer, above the runner
        from bluegreen_hooks.agent import plan
        describe = plan.describe
    return run_event(args.event, (args.bundle or Path.cwd()).resolve(), environ, describe=describe)


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


def json_error(error: str, code: int) -> None:
    """The one JSON object a ``--json`` command prints on stdout when it fails."""
    print(json.dumps({"ok": False, "error": error, "exit": code}, indent=2, sort_keys=True), flush=True)


def _parse(argv: list[str], prog: str) -> argparse.Namespace | int:
    """The parsed arguments; with ``--json``, a usage error is also one JSON object (returns its exit code)."""
    p = parser(only_hook=argv[:1] == ["hook"], prog=prog)
    if "--json" not in argv:
        return p.parse_args(argv)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return p.parse_args(argv)
    except SystemExit as exc:
        sys.stderr.write(captured.getvalue())
        code = exc.code if isinstance(exc.code, int) else 2
        if code == 0:   # --help
            raise
        lines = [ln for ln in captured.getvalue().splitlines() if ln.strip()]
        json_error(lines[-1] if lines else "bad arguments", code)
        return code


def main(argv: Sequence[str] | None = None, prog: str = "bluegreen-hooks") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bad = next((a for a in argv if "\0" in a), None)
    if bad is not None:      # only possible through main([...]): a command line cannot hold a NUL byte
        print(f"ERROR argument {one_line(bad)!r}: contains a NUL byte", file=sys.stderr)
        return 2
    args = _parse(argv, prog)
    if isinstance(args, int):
        return args
    as_json = getattr(args, "json", False) is True
    try:
        return args.func(args)
    except HookError as exc:
        print(f"ERROR {one_line(str(exc))}", file=sys.stderr)
        if as_json:
            json_error(one_line(str(exc)), exc.exit_code)
        return exc.exit_code
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:     # anything else is unexpected: its traceback helps
            return _unexpected(exc, as_json)
        msg = f"{one_line(str(exc.filename))[:200]}: file name too long (a path given on the command line?)"
        print(f"ERROR {msg}", file=sys.stderr)
        if as_json:
            json_error(msg, 2)
        return 2
    except Exception as exc:
        return _unexpected(exc, as_json)


def _unexpected(exc: Exception, as_json: bool) -> int:
    """A bug: its traceback (re-raised without --json; with --json, printed, plus the one JSON object)."""
    if not as_json:
        raise exc
    import traceback  # only for a bug: hooks start without it

    traceback.print_exc()
    json_error(f"unexpected {type(exc).__name__}: {exc}", 1)
    return 1


def one_line(text: str) -> str:
    """``text`` with every line break or control character escaped (``\\n``): an error is one line, even when
    it quotes a value given on the command line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def entrypoint() -> None:
    raise SystemExit(main(sys.argv[1:]))
