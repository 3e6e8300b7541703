"""The operator commands' parsers (``add_commands``) and the glue that turns their arguments into plain
values for ``status``, ``history``, ``rollback`` and ``doctor``. Importing this module imports neither
docker nor the commands: each glue function imports its command when it runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

from bluegreen_hooks import config as config_mod
from bluegreen_hooks.config import Config
from bluegreen_hooks.errors import ConfigError, HookError
from bluegreen_hooks.model import CanaryRequest

SELECT_HELP = ("The app is found in the state directory: ApplicationStart keeps a copy of the live bluegreen.toml "
               "there as <app>.toml.")
EXIT_STATUS = ("exit codes: 0 live colour healthy and state, nginx include and containers agree (or nothing deployed "
               "yet); 1 warnings printed (they disagree, or the live colour is not healthy); 2 bad input (no app "
               "found, bad config or arguments)")
EXIT_HISTORY = "exit codes: 0 ok; 2 bad input (no app found, bad config or arguments)"
EXIT_ROLLBACK = ("exit codes: 0 rolled back; 1 refused (no previous release) or a step failed (the last line says "
                 "why; the colour that was live keeps serving); 2 bad input; 3 a deployment is in progress")
EXIT_DOCTOR = "exit codes: 0 every check passed (WARN lines allowed); 1 at least one FAIL line; 2 bad arguments"
EXIT_UNLOCK = ("exit codes: 0 released (or nothing held the app); 1 the state could not be used; 2 bad input; "
               "3 refused: the holder's event process is still running (pass --force)")


# ---------------------------------------------------------------------------------------------- the glue

def _find_config(args: argparse.Namespace) -> Config:
    from bluegreen_hooks.operator.find_app import find_config

    return find_config(args.state_dir, args.app, args.config)


def _status(args: argparse.Namespace) -> int:
    from bluegreen_hooks.operator import state_view
    from bluegreen_hooks.operator.status import gather_status, print_status
    from bluegreen_hooks.operator.text import dump

    try:
        s = gather_status(_find_config(args))
        show = print_status
    except ConfigError as exc:   # no config: what the state file alone says
        if args.config is not None:
            raise
        s = state_view.gather(state_view.state_store(args.state_dir, args.app, exc), str(exc))
        show = state_view.print_state
    if args.json:
        dump(s)
    else:
        show(s)
    return 0 if s["ok"] else 1


def _history(args: argparse.Namespace) -> int:
    from bluegreen_hooks.operator.history import print_history, read_history
    from bluegreen_hooks.operator.text import dump

    if args.n < 1:
        raise ConfigError(f"-n: should be a positive number of records, not {args.n}")
    try:
        h = read_history(_find_config(args), args.n)
    except ConfigError as exc:   # no config: the history is all in the state file
        from bluegreen_hooks.operator.history import read_store
        from bluegreen_hooks.operator.state_view import state_store

        if args.config is not None:
            raise
        h = read_store(state_store(args.state_dir, args.app, exc), args.n)
    if args.json:
        dump(h)
    else:
        print_history(h, deployments=args.deployments)
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from bluegreen_hooks.lifecycle.runner import Reporter
    from bluegreen_hooks.operator.rollback import ROLLBACK_EVENT, rollback
    from bluegreen_hooks.operator.text import dump

    cfg = _find_config(args)
    say = Reporter(ROLLBACK_EVENT, sys.stderr if args.json else sys.stdout)
    result = rollback(cfg, say, keep_other=args.keep_other)
    if args.json:
        dump(result)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from bluegreen_hooks.operator.doctor import doctor, print_checks
    from bluegreen_hooks.operator.text import dump

    try:
        cfg: Config | None = _find_config(args)
        config_error = None
    except HookError as exc:
        cfg, config_error = None, str(exc)
    checks = doctor(cfg, config_error)
    if args.json:
        dump({"ok": not checks.failed, "checks": checks.items})
    else:
        print_checks(checks)
    return 1 if checks.failed else 0


def _canary(args: argparse.Namespace) -> int:
    from bluegreen_hooks.operator.canary import request

    phase = request(_find_config(args), args.action, print)
    return 0 if phase != "running" else 1


def _unlock(args: argparse.Namespace) -> int:
    from bluegreen_hooks.operator.find_app import choose_app, default_state_dir
    from bluegreen_hooks.operator.text import dump
    from bluegreen_hooks.operator.unlock import unlock

    if args.config is not None:
        cfg = _find_config(args)
        state_dir, app, history = cfg.state_dir, cfg.app, cfg.history
    else:
        state_dir = args.state_dir if args.state_dir is not None else default_state_dir()
        app, history = choose_app(state_dir, args.app), 100
    result = unlock(state_dir, app, force=args.force, history=history)
    if args.json:
        dump(result)
    else:
        print(result["message"])
    return 0


def _select_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("choosing the app")
    g.add_argument("--state-dir", type=Path, default=None,
                   help=f"the state directory (default: ${config_mod.STATE_DIR_ENV}, "
                        f"else {config_mod.DEFAULT_STATE_DIR})")
    g.add_argument("--app", default=None, help="the app's name (default: the only app in the state directory)")
    g.add_argument("--config", type=Path, default=None,
                   help="a bluegreen.toml to use instead of the copy in the state directory")


# ---------------------------------------------------------------------------------------------- the parsers

def add_commands(sub: Any) -> None:
    """Add status, history, rollback, doctor and unlock to the ``bluegreen-hooks`` subparsers."""
    p = sub.add_parser("status", help="what is live, since when, from which deployment, and is it healthy",
                       description="Show the live colour, since when, its deployment and image, the previous release, "
                                   "a deployment in progress, each colour's containers with their state and health "
                                   "(Docker health and a direct HTTP check), and what the nginx include points at. "
                                   "Warns when the state file, the include and the containers disagree. Changes "
                                   "nothing. " + SELECT_HELP,
                       epilog=EXIT_STATUS)
    p.add_argument("--json", action="store_true", help="print one JSON object (stable keys; see docs/operator.md)")
    _select_args(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("history", help="the audit log: one record per event run (and per deployment)",
                       description="Print the audit log kept in the state file: one record per lifecycle event run "
                                   "(and rollback), with deployment id, event, outcome, duration, live/target colours, "
                                   "user and host. The log is bounded (deploy/history deployments, 5x as many "
                                   "events). " + SELECT_HELP,
                       epilog=EXIT_HISTORY)
    p.add_argument("-n", type=int, default=20, metavar="N", help="show the last N records (default: 20)")
    p.add_argument("--deployments", action="store_true", help="show one line per deployment instead of per event")
    p.add_argument("--json", action="store_true", help="print {app, state_file, events, deployments} as JSON")
    _select_args(p)
    p.set_defaults(func=_history)

    p = sub.add_parser("rollback", help="make the previous release live again",
                       description="Make the previous release live again, under the same lock as deployments. If "
                                   "the previous colour still runs, nginx is switched to it at once (write the "
                                   "include, nginx -t, reload, verify through nginx). Otherwise the previous image "
                                   "(still tagged bluegreen-<app>:<deployment>) is started as that colour, "
                                   "health-checked, and then nginx is switched. Afterwards it waits until the old "
                                   "nginx workers have finished their requests (at most deploy/drain_timeout) and "
                                   "stops the colour rolled back from, unless --keep-other. "
                                   "Refuses when there is no previous release. Recorded in history as a "
                                   "'Rollback' event. " + SELECT_HELP,
                       epilog=EXIT_ROLLBACK)
    p.add_argument("--keep-other", action="store_true",
                   help="leave the colour rolled back from running (a second rollback then switches back at once)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    _select_args(p)
    p.set_defaults(func=_rollback)

    p = sub.add_parser("doctor", help="check the host: Python, Docker, compose, nginx, include, state dir, ports, disk",
                       description="Print one OK/WARN/FAIL line per check: Python version, Docker reachable (and "
                                   "its version), compose available, the nginx binary and its config test, nginx "
                                   "running, the include path writable, the state directory's permissions, each "
                                   "colour's port free or held by whom, and free disk space (FAIL below 1 GiB, WARN "
                                   "below 5 GiB). Changes nothing. " + SELECT_HELP,
                       epilog=EXIT_DOCTOR)
    p.add_argument("--json", action="store_true", help="print {ok, checks: [{name, level, detail}]} as JSON")
    _select_args(p)
    p.set_defaults(func=_doctor)
    _add_canary(sub)
    _add_unlock(sub)


def _add_canary(sub: Any) -> None:
    p = sub.add_parser("canary", help="end a running canary early: promote (100 %% now) or abort (back to 0 %%)",
                       description="Record a request for the running canary ([canary] in bluegreen.toml) under the "
                                   "state lock; the ApplicationStart hook running it acts within a second: promote "
                                   "sends 100 %% of requests to the new colour (ValidateService then goes on as "
                                   "usual), abort sends them all back to the old colour, removes the new one and "
                                   "fails the deployment. Waits up to 30 s for the hook to act. " + SELECT_HELP,
                       epilog="exit codes: 0 the hook acted; 1 no canary running, or the hook did not act in time; "
                              "2 bad input")
    p.add_argument("action", choices=get_args(CanaryRequest))
    _select_args(p)
    p.set_defaults(func=_canary)


def _add_unlock(sub: Any) -> None:
    p = sub.add_parser("unlock", help="release the app from a deployment that will not finish",
                       description="End the claim of the deployment holding the app (one that failed outside the "
                                   "hooks, or was stopped), instead of waiting deploy/stale_after. Refuses while "
                                   "the holder's event process is still running, unless --force. Records the "
                                   "deployment as 'unlocked' and an 'Unlock' event naming who released it. "
                                   "Changes no container and no nginx file. " + SELECT_HELP,
                       epilog=EXIT_UNLOCK)
    p.add_argument("--force", action="store_true",
                   help="release it even while the holder's event process still runs (it keeps running)")
    p.add_argument("--json", action="store_true",
                   help="print {ok, app, released, forced, by, message} as JSON ({ok: false, error, exit} on failure)")
    _select_args(p)
    p.set_defaults(func=_unlock)
