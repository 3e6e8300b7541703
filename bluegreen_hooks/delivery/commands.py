"""The commands ``bundle``, ``push`` and ``deploy`` (``bluegreen-hooks …`` and ``python build.py …``).

cli.py adds them with ``add_commands``; each command function takes the parsed arguments and returns the
exit status. Errors are raised (DeliveryError, ConfigError) and reported by cli.main as one ERROR line.
"""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Callable

from bluegreen_hooks.config.appspec import FILE_EXISTS
from bluegreen_hooks.delivery.bundle import bundle, read_bundle
from bluegreen_hooks.delivery.bundle_files import Rules
from bluegreen_hooks.delivery.deploy import (
    DeployOptions,
    check_group,
    create_deployment,
    failure_cause,
    follow_rollback,
    report_failure,
    wait,
)
from bluegreen_hooks.delivery.s3 import (
    PushOptions,
    Revision,
    client,
    head_revision,
    push,
)
from bluegreen_hooks.delivery.wheels import DEFAULT_WHEEL_CACHE, WHEEL_CACHE_ENV
from bluegreen_hooks.errors import DeliveryError
from bluegreen_hooks.host.files import write_atomic

Command = Callable[[argparse.Namespace], int]


class Cancelled(DeliveryError):
    """Ctrl-C during bundle, push or deploy (exit 130, as a shell reports SIGINT)."""

    exit_code = 130


def _interruptible(func: Command) -> Command:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except KeyboardInterrupt as exc:
            raise Cancelled("interrupted") from exc
    return run


@_interruptible
def _cmd_bundle(args: argparse.Namespace) -> int:
    res = bundle(args.config, args.output, args.app_dir, Rules(tuple(args.include), tuple(args.exclude)),
                 args.appspec, not args.no_wheels, args.wheel_cache)
    print(res.summary(), flush=True)
    return 0


def _push_options(args: argparse.Namespace) -> PushOptions:
    return PushOptions(bucket=args.bucket, key=args.key, application=args.application,
                       register=not getattr(args, "no_register", False), description=args.description,
                       sse=args.sse, kms_key_id=args.sse_kms_key_id, expected_owner=args.expected_bucket_owner,
                       multipart_mb=args.multipart_mb, profile=args.profile, region=args.region)


def _write_revision_file(path: Path | None, rev: Revision) -> None:
    if path is not None:
        write_atomic(path, json.dumps(rev.as_json(), indent=2, sort_keys=True) + "\n")


@_interruptible
def _cmd_push(args: argparse.Namespace) -> int:
    rev = push(args.bundle, _push_options(args))
    _write_revision_file(args.revision_file, rev)
    return 0


def _revision(args: argparse.Namespace) -> Revision:
    """The revision to deploy: BUNDLE pushed now, the one a revision file names, or --bucket/--key as S3 has it."""
    if args.bundle is not None:
        if not args.bucket:
            raise DeliveryError("deploy: --bucket is required to push BUNDLE")
        # the group must exist before anything is uploaded or registered
        check_group(args.application or read_bundle(args.bundle)[0], args.group, args.profile, args.region)
        rev = push(args.bundle, _push_options(args))
        _write_revision_file(args.revision_file, rev)
        return rev
    if args.revision_file is not None:
        try:
            return Revision(**json.loads(Path(args.revision_file).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DeliveryError(f"{args.revision_file}: not a revision file written by 'push --revision-file': "
                                f"{exc}") from exc
    if args.bucket and args.key:
        return head_revision(client("s3", args.profile, args.region), args.bucket, args.key,
                             args.expected_bucket_owner)
    raise DeliveryError("deploy: give BUNDLE (and --bucket), --revision-file FILE, or --bucket and --key")


@_interruptible
def _cmd_deploy(args: argparse.Namespace) -> int:
    rev = _revision(args)
    application = args.application or rev.application
    if not application:
        raise DeliveryError("deploy: --application is required (the revision does not name one)")
    opts = DeployOptions(args.deployment_config, args.description, args.file_exists_behavior,
                         args.ignore_application_stop_failures, tuple(args.auto_rollback or ()))
    cd, did = create_deployment(application, args.group, rev, opts, args.profile, args.region)
    if args.no_wait:
        print(did, flush=True)
        return 0
    print(f"deployment {did}: {application} -> {args.group} (s3://{rev.bucket}/{rev.key})", flush=True)
    result = wait(cd, did, poll=args.poll, timeout=args.timeout)
    if result.status == "Succeeded":
        print(f"deployment {did} Succeeded", flush=True)
        return 0
    report_failure(result)
    follow_rollback(cd, result, poll=args.poll, timeout=args.timeout)
    raise DeliveryError(failure_cause(result))


def _add_aws_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS (credentials, region and endpoints also come from boto3's standard chain)")
    g.add_argument("--profile", help="AWS profile (default: $AWS_PROFILE / default chain)")
    g.add_argument("--region", help="AWS region (default: $AWS_REGION / the profile's)")


def _add_push_options(p: argparse.ArgumentParser, bucket_required: bool) -> None:
    p.add_argument("--bucket", required=bucket_required, help="S3 bucket for the revision")
    p.add_argument("--key", help="S3 key (default: <app>/<bundle name>-<sha256[:12]>.zip)")
    p.add_argument("--application", help="CodeDeploy application (default: the bundle's app name)")
    p.add_argument("--description", help="revision/deployment description")
    p.add_argument("--sse", choices=("AES256", "aws:kms"), help="server-side encryption (SSE-S3 or SSE-KMS)")
    p.add_argument("--sse-kms-key-id", help="KMS key for --sse aws:kms (default: the AWS-managed key)")
    p.add_argument("--expected-bucket-owner", help="fail unless the bucket belongs to this account id")
    p.add_argument("--multipart-mb", type=int, default=8,
                   help="multipart threshold and part size in MiB (default 8)")
    p.add_argument("--revision-file", type=Path, help="push (and deploy BUNDLE): write the revision (bucket, key, "
                                                       "eTag, version) as JSON here; deploy without BUNDLE: deploy "
                                                       "the revision this file names")


def _add_bundle(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("bundle", help="build a reproducible revision zip (validated, with runtime wheels)",
                       description="Build the CodeDeploy revision: appspec.yml, hooks/, bluegreen_hooks/, "
                                   "bluegreen.toml, the app's files and wheels/. Same inputs -> same bytes.")
    b.add_argument("--config", type=Path, default=Path("bluegreen.toml"),
                   help="deploy config (default ./bluegreen.toml)")
    b.add_argument("--app-dir", type=Path,
                   help="folder whose files go to the bundle root (default: the config's folder)")
    b.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only app files matching (a name, or a path/glob relative to --app-dir); repeatable")
    b.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="leave out matching app files; repeatable")
    b.add_argument("--appspec", type=Path, help="appspec.yml (default: the project's; hooks/ must be beside it)")
    b.add_argument("-o", "--output", type=Path, help="zip to write (default dist/<app>.zip)")
    b.add_argument("--no-wheels", action="store_true", help="no wheels/: the host's python3 must have docker+tenacity")
    b.add_argument("--wheel-cache", type=Path,
                   help=f"wheel cache (default ${WHEEL_CACHE_ENV} or {DEFAULT_WHEEL_CACHE})")
    b.set_defaults(func=_cmd_bundle)


def _add_push(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("push", help="upload a bundle to S3, verify it, register it with CodeDeploy",
                       description="Upload with boto3's managed transfer, read it back (head_object: ETag, "
                                   "VersionId, size, sha256), then register_application_revision.")
    p.add_argument("bundle", type=Path)
    _add_push_options(p, True)
    p.add_argument("--no-register", action="store_true", help="upload and verify only")
    _add_aws_options(p)
    p.set_defaults(func=_cmd_push)


def _add_deploy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("deploy", help="create a CodeDeploy deployment and follow it (push BUNDLE first if given)",
                       description="create_deployment, then print status and lifecycle events as they change; on "
                                   "failure print the failed event's diagnostics and log tail and exit 1.")
    d.add_argument("bundle", type=Path, nargs="?", help="push this bundle first (needs --bucket)")
    d.add_argument("--group", required=True, help="deployment group")
    _add_push_options(d, False)
    d.add_argument("--deployment-config", help="e.g. CodeDeployDefault.OneAtATime (default: the group's)")
    d.add_argument("--file-exists-behavior", choices=FILE_EXISTS,
                   help="DISALLOW (CodeDeploy's default), OVERWRITE, RETAIN")
    d.add_argument("--ignore-application-stop-failures", action="store_true")
    d.add_argument("--auto-rollback", action="append", nargs="?", const="DEPLOYMENT_FAILURE",
                   choices=("DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"),
                   help="roll back automatically on this event (default DEPLOYMENT_FAILURE): CodeDeploy redeploys "
                        "the group's last successful revision, and deploy follows that deployment to its end; "
                        "repeatable")
    d.add_argument("--no-wait", action="store_true", help="print the deployment id and exit")
    d.add_argument("--poll", type=float, default=2.0, help="seconds between status checks (default 2)")
    d.add_argument("--timeout", type=float, default=3600,
                   help="give up waiting after this many seconds (default 3600)")
    _add_aws_options(d)
    d.set_defaults(func=_cmd_deploy)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register bundle, push and deploy on an argparse subparsers object."""
    _add_bundle(sub)
    _add_push(sub)
    _add_deploy(sub)
