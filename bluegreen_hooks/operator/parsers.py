"""The parsers of ``maintenance on|off`` and ``metrics`` and the glue from their arguments to plain values.
Importing this module imports neither docker nor prometheus_client nor the commands themselves.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from bluegreen_hooks.operator.commands import SELECT_HELP, _find_config, _select_args

EXIT_MAINTENANCE = ("exit codes: 0 done (or nothing to do); 1 a step failed (the last line says why; nginx keeps "
                    "answering as before); 2 bad input (message, Retry-After, config); 3 a deployment is in progress")
EXIT_METRICS = "exit codes: 0 ok; 2 bad input (no app found, bad config or arguments)"


def _maintenance(args: argparse.Namespace) -> int:
    from bluegreen_hooks.lifecycle.runner import Reporter
    from bluegreen_hooks.operator.maintenance import MAINTENANCE_EVENT, turn_off, turn_on
    from bluegreen_hooks.operator.text import dump

    cfg = _find_config(args)
    say = Reporter(MAINTENANCE_EVENT, sys.stderr if args.json else sys.stdout)
    if args.state == "on":
        result = turn_on(cfg, say, message=args.message, retry_after=args.retry_after)
    else:
        result = turn_off(cfg, say)
    if args.json:
        dump(result)
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from bluegreen_hooks.observe import metrics
    from bluegreen_hooks.operator.find_app import open_store, read_state
    from bluegreen_hooks.operator.text import dump

    cfg = _find_config(args)
    state, _ = read_state(open_store(cfg))
    if args.json:
        dump(metrics.as_json(cfg.app, state))
    else:
        sys.stdout.write(metrics.exposition(cfg.app, state))
    return 0


def add_commands(sub: Any) -> None:
    """Add maintenance and metrics to the ``bluegreen-hooks`` subparsers."""
    p = sub.add_parser("maintenance", help="answer every request with a 503 maintenance page, or stop doing so",
                       description="on: nginx answers every request for the app with 503, a Retry-After header and "
                                   "a small HTML page (JSON when the client accepts application/json), through the "
                                   "same write, nginx -t, reload and check as a switch; the live colour keeps "
                                   "running behind it, and the [maintenance] bypass (header, cookie, addresses) "
                                   "still reaches it. Running `on` again changes the message. off: nginx sends "
                                   "traffic to the live colour again. While maintenance is on, deployments are "
                                   "refused unless deploy/during_maintenance = \"keep\". " + SELECT_HELP,
                       epilog=EXIT_MAINTENANCE)
    p.add_argument("state", choices=("on", "off"))
    p.add_argument("--message", default=None,
                   help="the text of the page (default: maintenance/message); printable, at most 300 characters, "
                        "no $, \\, \" or `")
    p.add_argument("--retry-after", type=int, default=None, metavar="SECONDS",
                   help="the Retry-After header, 1-86400 (default: maintenance/retry_after, else 120)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    _select_args(p)
    p.set_defaults(func=_maintenance)

    p = sub.add_parser("metrics", help="the app's current figures (Prometheus text format, or JSON)",
                       description="Print the figures written to deploy/metrics_dir/<app>.prom after every event, "
                                   "computed from the state file now: live colour, maintenance, the last "
                                   "deployment's time, outcome and durations (health wait, switch, drain), the "
                                   "last run of each event, and the totals (failed deployments, rollbacks, "
                                   "failed notifications). Changes nothing. " + SELECT_HELP,
                       epilog=EXIT_METRICS)
    p.add_argument("--json", action="store_true", help="print {app, generated, metrics: {name: {type, help, "
                                                       "samples}}} as JSON")
    _select_args(p)
    p.set_defaults(func=_metrics)
