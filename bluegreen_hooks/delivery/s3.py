"""S3 and the AWS plumbing: sessions, one-line AWS errors, upload with progress, read back, register (push).

boto3 and botocore are imported inside the functions: importing this module costs nothing.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from bluegreen_hooks.delivery.bundle import read_bundle
from bluegreen_hooks.errors import DeliveryError

MIB = 1024 * 1024

_HINTS = {
    "NoSuchBucket": "create the bucket or fix --bucket",
    "404": "the bucket does not exist: create it or fix --bucket",
    "403": "access denied: check the credentials' IAM policy (and --expected-bucket-owner)",
    "AccessDenied": "check the credentials' IAM policy (and --expected-bucket-owner)",
    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / the profile",
    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY / the profile",
    "UnrecognizedClientException": "check the AWS credentials",
    "InvalidSignatureException": "check the AWS credentials",
    "ExpiredToken": "refresh the session credentials",
    "ApplicationDoesNotExistException": "create it (aws deploy create-application) or pass --application",
    "DeploymentGroupDoesNotExistException": "create it (aws deploy create-deployment-group) or fix --group",
    "DeploymentConfigDoesNotExistException": "fix --deployment-config (e.g. CodeDeployDefault.OneAtATime)",
    "RevisionDoesNotExistException": "push the bundle first (build.py push)",
    "DeploymentLimitExceededException": "another deployment is running for this group; wait for it",
    "InvalidETagException": "the object changed after it was pushed; push again",
    "InvalidRevisionException": "check --bucket/--key (the object must exist and be a zip)",
}


def aws_error(what: str, exc: BaseException) -> DeliveryError:
    """One line: what failed, the AWS error code and message, what to do."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        msg = (err.get("Message") or "").strip().splitlines()
        hint = _HINTS.get(code, "")
        text = f"{what}: {code}" + (f": {msg[0]}" if msg and msg[0] else "") + (f"; {hint}" if hint else "")
    elif isinstance(exc, bex.NoCredentialsError):
        text = f"{what}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    elif isinstance(exc, bex.NoRegionError):
        text = f"{what}: no AWS region; set AWS_REGION or pass --region"
    elif isinstance(exc, (bex.EndpointConnectionError, bex.ConnectionError, bex.ConnectTimeoutError,
                          bex.ReadTimeoutError)):
        text = f"{what}: network error: {exc}; check the network, proxy or AWS_ENDPOINT_URL_* settings"
    else:
        text = f"{what}: {type(exc).__name__}: {exc}"
    return DeliveryError(" ".join(text.split()))


def aws_errors() -> tuple[type[Exception], ...]:
    """The exceptions boto3 raises for AWS and network failures (what ``aws_error`` turns into one line)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, Boto3Error)


def session(profile: str | None = None, region: str | None = None) -> Any:
    """A boto3 session (credentials, region and endpoints from boto3's usual chain unless given)."""
    import boto3

    try:
        return boto3.session.Session(profile_name=profile, region_name=region)
    except aws_errors() as exc:
        raise aws_error("AWS session", exc) from exc


def client(name: str, profile: str | None = None, region: str | None = None) -> Any:
    """One boto3 client ("s3", "codedeploy"); a failure is one line."""
    sess = session(profile, region)
    try:
        return sess.client(name)
    except aws_errors() as exc:
        raise aws_error("AWS clients", exc) from exc


class Progress:
    """boto3 transfer callback: a bar on a terminal, otherwise a line every 25 %."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label, self.done = max(total, 1), label, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.lock, self.shown = threading.Lock(), -1

    def __call__(self, n: int) -> None:
        with self.lock:
            self.done += n
            pct = min(100, self.done * 100 // self.total)
            if self.tty:
                bar = "#" * (pct // 4) + "." * (25 - pct // 4)
                end = "\n" if pct == 100 else ""
                print(f"\r{self.label} [{bar}] {pct:3d}% {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB",
                      end=end, file=self.stream, flush=True)
            elif pct // 25 > self.shown:
                self.shown = pct // 25
                print(f"{self.label}: {pct}% ({self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB)",
                      file=self.stream, flush=True)


@dataclass(frozen=True)
class Revision:
    """A revision in S3 as CodeDeploy names it (bucket, key, ETag, version), with what we know of the bundle."""

    bucket: str
    key: str
    etag: str
    version: str | None
    application: str | None = None
    sha256: str | None = None
    size: int | None = None

    def s3_location(self) -> dict[str, str]:
        loc = {"bucket": self.bucket, "key": self.key, "bundleType": "zip"}
        if self.etag:
            loc["eTag"] = self.etag
        if self.version:
            loc["version"] = self.version
        return loc

    def revision(self) -> dict[str, Any]:
        return {"revisionType": "S3", "s3Location": self.s3_location()}

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def head_revision(s3: Any, bucket: str, key: str, expected_owner: str | None = None) -> Revision:
    """The object as S3 has it now (head_object): ETag, VersionId, size, our sha256 metadata."""
    kw = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **kw)
    except aws_errors() as exc:
        raise aws_error(f"s3://{bucket}/{key}: head_object", exc) from exc
    version = head.get("VersionId")
    return Revision(bucket, key, (head.get("ETag") or "").strip('"'), None if version in (None, "null") else version,
                    sha256=(head.get("Metadata") or {}).get("bluegreen-sha256"), size=head.get("ContentLength"))


def upload_args(sha: str, sse: str | None = None, kms_key_id: str | None = None,
                expected_owner: str | None = None) -> dict[str, Any]:
    """ExtraArgs for upload_file: our sha256 as metadata, SSE-S3 / SSE-KMS, the expected bucket owner."""
    if kms_key_id and sse != "aws:kms":
        raise DeliveryError("push: --sse-kms-key-id needs --sse aws:kms")
    extra: dict[str, Any] = {"Metadata": {"bluegreen-sha256": sha}, "ContentType": "application/zip"}
    if sse:
        extra["ServerSideEncryption"] = sse
    if kms_key_id:
        extra["SSEKMSKeyId"] = kms_key_id
    if expected_owner:
        extra["ExpectedBucketOwner"] = expected_owner
    return extra


@dataclass(frozen=True)
class PushOptions:
    """Where and how ``push`` stores a bundle (the push command's options)."""

    bucket: str
    key: str | None = None                 # default: <app>/<bundle name>-<sha256[:12]>.zip
    application: str | None = None         # default: the bundle's app name
    register: bool = True
    description: str | None = None
    sse: str | None = None                 # "AES256" or "aws:kms"
    kms_key_id: str | None = None
    expected_owner: str | None = None
    multipart_mb: int = 8
    profile: str | None = None
    region: str | None = None


def _preflight(s3: Any, cd: Any, opts: PushOptions, application: str) -> None:
    """Fail before uploading when the revision could not be stored or registered anyway."""
    if cd is not None:
        try:
            cd.get_application(applicationName=application)
        except aws_errors() as exc:
            raise aws_error(f"application {application!r}", exc) from exc
    owner = {"ExpectedBucketOwner": opts.expected_owner} if opts.expected_owner else {}
    try:
        s3.head_bucket(Bucket=opts.bucket, **owner)
    except aws_errors() as exc:
        raise aws_error(f"bucket {opts.bucket!r}", exc) from exc


def _upload(s3: Any, path: Path, key: str, extra: dict[str, Any], opts: PushOptions,
            progress: Callable[[int], None]) -> None:
    from boto3.s3.transfer import TransferConfig

    part = opts.multipart_mb * MIB
    try:
        s3.upload_file(str(path), opts.bucket, key, ExtraArgs=extra,
                       Config=TransferConfig(multipart_threshold=part, multipart_chunksize=part), Callback=progress)
    except aws_errors() as exc:
        raise aws_error(f"upload to s3://{opts.bucket}/{key}", exc) from exc


def _register(cd: Any, rev: Revision, description: str | None, out: TextIO) -> None:
    try:
        cd.register_application_revision(applicationName=rev.application, revision=rev.revision(),
                                         description=description or f"bluegreen-hooks bundle sha256 {rev.sha256}")
    except aws_errors() as exc:
        raise aws_error(f"register revision of {rev.application!r}", exc) from exc
    print(f"registered revision s3://{rev.bucket}/{rev.key} for application {rev.application}", file=out, flush=True)


def push(path: Path, opts: PushOptions, out: TextIO | None = None,
         progress: Callable[[int], None] | None = None) -> Revision:
    """Upload the bundle (managed transfer), read it back (head_object), then register it."""
    out = out or sys.stdout
    app, sha = read_bundle(path)
    application = opts.application or app
    size = Path(path).stat().st_size
    key = opts.key or f"{app}/{Path(path).stem}-{sha[:12]}.zip"
    extra = upload_args(sha, opts.sse, opts.kms_key_id, opts.expected_owner)
    if opts.multipart_mb < 5:
        raise DeliveryError(f"push: --multipart-mb should be at least 5 (S3's smallest part), not {opts.multipart_mb}")
    sess = session(opts.profile, opts.region)
    try:
        s3 = sess.client("s3")
        cd = sess.client("codedeploy") if opts.register else None
    except aws_errors() as exc:
        raise aws_error("AWS clients", exc) from exc
    _preflight(s3, cd, opts, application)
    _upload(s3, Path(path), key, extra, opts, progress or Progress(size, f"upload s3://{opts.bucket}/{key}"))
    rev = head_revision(s3, opts.bucket, key, opts.expected_owner)
    if rev.size != size or (rev.sha256 and rev.sha256 != sha):
        raise DeliveryError(f"s3://{opts.bucket}/{key}: read back {rev.size} bytes (sha256 {rev.sha256}), expected "
                            f"{size} (sha256 {sha}); not registered, push again")
    rev = Revision(opts.bucket, key, rev.etag, rev.version, application, sha, size)
    print(f"pushed s3://{opts.bucket}/{key} ({size:,} bytes, etag {rev.etag or '(none)'}, "
          f"version {rev.version or '(unversioned)'})", file=out, flush=True)
    if not rev.etag:
        print("warning: S3 returned no ETag; registering without one", file=out, flush=True)
    if cd is not None:
        _register(cd, rev, opts.description, out)
    return rev
