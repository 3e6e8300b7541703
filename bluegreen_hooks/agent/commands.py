"""The ``local`` command: argparse only; the Runner (local.py) and the dry run (dry_run.py) do the work."""
from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from bluegreen_hooks.agent.dry_run import dry_run
from bluegreen_hooks.agent.local import (
    DEFAULT_GROUP_ID,
    DEFAULT_GROUP_NAME,
    DEFAULT_ROOT,
    ORDER,
    Options,
    Runner,
    new_deployment_id,
)
from bluegreen_hooks.config.appspec import FILE_EXISTS, near
from bluegreen_hooks.errors import ConfigError
from bluegreen_hooks.model import is_deployment_id


def _events(value: str) -> list[str]:
    out = []
    for e in re.split(r"[,\s]+", value.strip()):
        if not e:
            continue
        if e not in ORDER:
            raise argparse.ArgumentTypeError(f"unknown lifecycle event {e!r}{near(e, ORDER)}")
        out.append(e)
    return out


def _deployment_id(value: str) -> str:
    if not is_deployment_id(value):
        raise argparse.ArgumentTypeError(f"should be letters, digits, '.', '_' or '-', not {value!r}")
    return value


def _local(args: argparse.Namespace) -> int:
    bundle = Path(args.bundle).resolve()
    if not bundle.exists():
        raise ConfigError(f"{args.bundle}: no such bundle folder or zip file")
    events = tuple(e for group in (args.events or []) for e in group)
    root = Path(args.root).resolve()
    app = args.application_name or (bundle.stem if bundle.is_file() else bundle.name)
    opts = Options(bundle, root, app, args.deployment_group_name, args.deployment_group_id,
                   args.deployment_id or new_deployment_id(), events, args.file_exists_behavior,
                   Path(args.install_root).resolve() if args.install_root else None)
    if args.dry_run:
        return dry_run(opts)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise ConfigError(f"--root {root}: not writable ({exc.strerror}); pass --root DIR") from exc
    return Runner(opts).run()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("local", help="run a revision's lifecycle hooks here, the way the CodeDeploy agent does",
                       description="Run the appspec's hooks in the CodeDeploy agent's order, with its environment, "
                                   "timeouts and stop-at-first-failure rule (ApplicationStop from the previous "
                                   "revision run here). --dry-run prints the plan and changes nothing.")
    p.add_argument("bundle", nargs="?", default=".", help="bundle folder or .zip (default: the current directory)")
    p.add_argument("--events", "-e", action="append", type=_events, metavar="E1,E2",
                   help="run only these events (DownloadBundle and Install are always added); "
                        f"order: {', '.join(ORDER)}")
    p.add_argument("--dry-run", action="store_true", help="print what would happen; run nothing, change nothing")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"runner folder, kept between runs (default: {DEFAULT_ROOT})")
    p.add_argument("--application-name", "-a", help="APPLICATION_NAME (default: the bundle's name)")
    p.add_argument("--deployment-group-name", "-d", default=DEFAULT_GROUP_NAME, help="DEPLOYMENT_GROUP_NAME")
    p.add_argument("--deployment-group-id", "-g", default=DEFAULT_GROUP_ID, type=_deployment_id,
                   help="DEPLOYMENT_GROUP_ID; the previous revision is looked up per group id")
    p.add_argument("--deployment-id", type=_deployment_id, help="DEPLOYMENT_ID (default: a new d-LOCALxxxxx)")
    p.add_argument("--file-exists-behavior", "-b", choices=FILE_EXISTS,
                   help="when a files: destination exists (default: the appspec's, else DISALLOW)")
    p.add_argument("--install-root", help="where files: are installed (default: ROOT/install-root/GROUP_ID)")
    p.set_defaults(func=_local)
