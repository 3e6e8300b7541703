"""Delivery: build a reproducible revision bundle, push it to S3, register it, deploy it with CodeDeploy.

    python build.py bundle --config bluegreen.toml -o dist/app.zip
    python build.py push dist/app.zip --bucket my-revisions
    python build.py deploy dist/app.zip --bucket my-revisions --group prod

(the same commands are ``bluegreen-hooks bundle|push|deploy``). See docs/delivery.md.

A bundle is a zip with, at its root: appspec.yml, hooks/ (mode 0755), bluegreen_hooks/, bluegreen.toml,
the app's files (include/exclude rules; never .git, caches, virtualenvs, dist/) and wheels/ with the
runtime dependencies as pure-Python wheels plus wheels/requirements.txt (pinned, with sha256 hashes),
from which hooks/launch builds a virtual environment on the host, offline. Entries are sorted, their
timestamps fixed (SOURCE_DATE_EPOCH, else the last commit time) and their modes fixed, so building
twice gives the same bytes.

boto3 is imported inside the functions that talk to AWS, and only here in the package: the hooks import
this module (to build their CLI parser) but never need boto3.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from bluegreen_hooks.appspec import FILE_EXISTS, check_bundle
from bluegreen_hooks.appspec import bad_relpath as _bad_relpath
from bluegreen_hooks.appspec import norm as _norm
from bluegreen_hooks.appspec import parse as parse_appspec
from bluegreen_hooks.errors import ConfigError, DeliveryError, HookError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent          # where appspec.yml and hooks/ live in a checkout

# The runtime dependencies carried in a bundle: exact pins (reproducible), all pure-Python wheels that
# install on Python 3.9+ (tenacity 9.1.3+ needs 3.10; 9.1.2 is the last for 3.9). Update together.
RUNTIME_WHEELS: tuple[tuple[str, str, str], ...] = (
    ("certifi", "2026.10.19.post1", ""),
    ("charset-normalizer", "3.5.3", ""),
    ("docker", "7.2.0", ""),
    ("idna", "3.20", ""),
    ("requests", "2.32.5", ""),
    ("tenacity", "9.1.2", ""),
    ("tomli", "2.5.0", 'python_version < "3.11"'),
    ("urllib3", "2.6.3", ""),
)
WHEEL_CACHE_ENV = "BLUEGREEN_WHEEL_CACHE"
DEFAULT_WHEEL_CACHE = Path.home() / ".cache" / "bluegreen-hooks" / "wheels"

# never bundled: VCS folders, caches, virtualenvs (also any folder holding pyvenv.cfg), dist/ at the top
NEVER_NAMES = (".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
               ".pytest_cache", ".ruff_cache", ".eggs", "*.egg-info", "*.pyc", "*.pyo", ".DS_Store")
NEVER_TOP = ("dist",)
RESERVED = ("appspec.yml", "bluegreen.toml", "hooks", "bluegreen_hooks", "wheels")
ZIP_EPOCH_MIN = 315532800     # 1980-01-01, the earliest time a zip entry can hold

DONE = ("Succeeded", "Failed", "Stopped")


# ---------------------------------------------------------------------------------------------- file selection

def _match(rel: str, pattern: str) -> bool:
    """gitignore-like: a pattern without '/' matches any path component; with '/', the path or a parent of it."""
    from fnmatch import fnmatchcase

    parts = rel.split("/")
    pattern = pattern.strip("/")
    if "/" not in pattern:
        return any(fnmatchcase(p, pattern) for p in parts)
    return any(fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


@dataclass(frozen=True)
class Rules:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def never(self, rel: str, top: bool) -> bool:
        name = rel.rsplit("/", 1)[-1]
        from fnmatch import fnmatchcase

        return any(fnmatchcase(name, p) for p in NEVER_NAMES) or (top and name in NEVER_TOP)

    def wanted(self, rel: str) -> bool:
        if any(_match(rel, p) for p in self.exclude):
            return False
        return not self.include or any(_match(rel, p) for p in self.include)

    def excluded_dir(self, rel: str) -> bool:
        return any(_match(rel, p) for p in self.exclude)


def walk(root: Path, rules: Rules, label: str) -> Iterator[tuple[str, Path]]:
    """Yield (relative posix path, real file) under ``root``, sorted; symlinks must stay inside ``root``."""
    real_root = Path(os.path.realpath(root))

    def inside(p: str) -> bool:
        return p == str(real_root) or p.startswith(str(real_root) + os.sep)

    def rec(d: Path, prefix: str, seen: frozenset) -> Iterator[tuple[str, Path]]:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            raise DeliveryError(f"{label}/{prefix}: cannot read: {exc.strerror}") from exc
        for e in entries:
            rel = f"{prefix}{e.name}"
            if rules.never(rel, top=not prefix) or rules.excluded_dir(rel):
                continue
            path = Path(e.path)
            target = os.path.realpath(path)
            if e.is_symlink():
                if not e.is_dir() and not rules.wanted(rel):
                    continue          # a link the rules leave out need not be valid
                if not inside(target):
                    raise DeliveryError(f"{label}/{rel}: symlink leaves the tree (-> {os.readlink(path)}); "
                                        "replace it with the file or exclude it")
                if not os.path.exists(target):
                    raise DeliveryError(f"{label}/{rel}: broken symlink (-> {os.readlink(path)})")
            if os.path.isdir(target):
                if os.path.exists(os.path.join(target, "pyvenv.cfg")):
                    continue
                if target in seen:
                    raise DeliveryError(f"{label}/{rel}: symlink loop")
                yield from rec(Path(target) if e.is_symlink() else path, rel + "/", seen | {target})
            elif os.path.isfile(target):
                if rules.wanted(rel):
                    yield rel, Path(target)
            # sockets, fifos, devices: never bundled

    yield from rec(root, "", frozenset({str(real_root)}))


# ---------------------------------------------------------------------------------------------- wheels

def _wheel_prefix(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _find_wheel(cache: Path, name: str, version: str) -> Path | None:
    prefix = _wheel_prefix(name, version)
    for p in sorted(cache.glob("*.whl")) if cache.is_dir() else ():
        if p.name.lower().startswith(prefix) and p.name.endswith("-none-any.whl"):
            return p
    return None


def wheel_cache(path: Path | str | None = None) -> Path:
    return Path(path or os.environ.get(WHEEL_CACHE_ENV) or DEFAULT_WHEEL_CACHE)


def runtime_wheels(cache: Path, pins: Sequence[tuple[str, str, str]] = RUNTIME_WHEELS,
                   out=None) -> list[tuple[Path, str]]:
    """The pinned runtime wheels as (file, marker), downloaded into ``cache`` once (pip, PyPI)."""
    out = out or sys.stderr
    missing = [(n, v) for n, v, _ in pins if _find_wheel(cache, n, v) is None]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        print(f"bundle: downloading {len(missing)} wheel(s) into {cache}", file=out, flush=True)
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "--python-version", "3.9", "--implementation", "py", "--abi", "none", "--platform", "any",
                "--dest", str(cache), *(f"{n}=={v}" for n, v in missing)]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            err = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
            raise DeliveryError(f"bundle: pip download of {', '.join(f'{n}=={v}' for n, v in missing)} failed: "
                                f"{err[-1] if err else proc.returncode}; check network access to PyPI, "
                                f"or put the wheels in {cache}")
    out_list = []
    for n, v, marker in pins:
        p = _find_wheel(cache, n, v)
        if p is None:
            raise DeliveryError(f"bundle: no pure-Python wheel for {n}=={v} in {cache}")
        out_list.append((p, marker))
    return out_list


def requirements_txt(wheels: Sequence[tuple[str, bytes, str]]) -> str:
    """wheels/requirements.txt: name==version ; marker --hash=sha256:… (pip's hash-checking mode)."""
    lines = ["# runtime of the bluegreen-hooks bundle; installed offline by hooks/launch"]
    for name, data, marker in sorted(wheels):
        dist, version = name.split("-")[:2]
        req = f"{dist}=={version}" + (f" ; {marker}" if marker else "")
        lines.append(f"{req} --hash=sha256:{hashlib.sha256(data).hexdigest()}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- bundle

@dataclass(frozen=True)
class Entry:
    name: str                  # posix path in the zip
    mode: int                  # 0o644 or 0o755
    source: Path | None = None
    data: bytes | None = None

    def read(self) -> bytes:
        return self.data if self.data is not None else self.source.read_bytes()   # type: ignore[union-attr]


@dataclass(frozen=True)
class BundleResult:
    path: Path
    sha256: str
    size: int
    files: int
    app: str
    seconds: float = 0.0

    def summary(self) -> str:
        return f"bundle {self.path}: {self.files} files, {self.size:,} bytes, sha256 {self.sha256}"


def source_date_epoch(app_dir: Path, environ: Mapping[str, str] | None = None) -> int:
    """SOURCE_DATE_EPOCH, else the last commit time of the app's git checkout, else 1980-01-01."""
    environ = os.environ if environ is None else environ
    value = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise DeliveryError(f"SOURCE_DATE_EPOCH: should be seconds since 1970, not {value!r}")
        return max(int(value), ZIP_EPOCH_MIN)
    try:
        proc = subprocess.run(["git", "-C", str(app_dir), "log", "-1", "--format=%ct"], capture_output=True,
                              text=True, timeout=10)
        if proc.returncode == 0 and proc.stdout.strip().isdigit():
            return max(int(proc.stdout.strip()), ZIP_EPOCH_MIN)
    except (OSError, subprocess.SubprocessError):
        pass
    return ZIP_EPOCH_MIN


def _mode(path: Path, force_exec: bool = False) -> int:
    return 0o755 if force_exec or os.stat(path).st_mode & 0o111 else 0o644


def collect(config: Path, app_dir: Path | None = None, rules: Rules = Rules(), appspec: Path | None = None,
            wheels: Sequence[tuple[Path, str]] = (), output: Path | None = None) -> tuple[list[Entry], str]:
    """Choose and validate every entry of the bundle; return (entries, app name). Writes nothing."""
    from bluegreen_hooks import config as config_mod

    config = Path(config)
    if not config.is_file():
        raise ConfigError(f"{config}: no deploy config here (pass --config path/to/bluegreen.toml)")
    app_dir = Path(app_dir) if app_dir is not None else config.resolve().parent
    if not app_dir.is_dir():
        raise ConfigError(f"{app_dir}: app folder not found (--app-dir)")
    appspec = Path(appspec) if appspec is not None else PROJECT_ROOT / "appspec.yml"
    hooks_dir = appspec.resolve().parent / "hooks"
    if not appspec.is_file():
        raise ConfigError(f"{appspec}: appspec not found (--appspec)")
    if not hooks_dir.is_dir():
        raise ConfigError(f"{hooks_dir}: hooks folder not found next to {appspec.name}")

    # the config, with the checks a host would make (environment-independent)
    cfg = config_mod.load(config, environ={}, check_files=False)

    entries: dict[str, Entry] = {}

    def add(e: Entry, origin: str) -> None:
        if e.name in entries:
            raise DeliveryError(f"{origin}: {e.name} is already in the bundle")
        entries[e.name] = e

    add(Entry("appspec.yml", 0o644, source=appspec), str(appspec))
    add(Entry("bluegreen.toml", 0o644, source=config), str(config))
    for rel, path in walk(hooks_dir, Rules(), "hooks"):
        add(Entry(f"hooks/{rel}", 0o755, source=path), "hooks")
    for rel, path in walk(PACKAGE_DIR, Rules(), "bluegreen_hooks"):
        add(Entry(f"bluegreen_hooks/{rel}", _mode(path), source=path), "bluegreen_hooks")

    ours = {os.path.realpath(p) for p in (appspec, config, hooks_dir, PACKAGE_DIR)}
    label = str(app_dir)
    skip = os.path.realpath(output) if output is not None else None
    for rel, path in walk(app_dir, rules, label):
        if skip is not None and os.path.realpath(path) == skip:
            continue              # an earlier build of this very bundle
        top = rel.split("/", 1)[0]
        if top in RESERVED:
            real_top = os.path.realpath(app_dir / top)
            if real_top in ours or os.path.realpath(path) in ours:
                continue          # the same file/folder the bundle already carries
            raise DeliveryError(f"{label}/{rel}: conflicts with the bundle's own {top}; exclude it (--exclude {top})")
        add(Entry(rel, _mode(path), source=path), label)

    if wheels:
        datas = [(p.name, p.read_bytes(), marker) for p, marker in wheels]
        for name, data, _ in datas:
            add(Entry(f"wheels/{name}", 0o644, data=data), "wheels")
        add(Entry("wheels/requirements.txt", 0o644, data=requirements_txt(datas).encode()), "wheels")

    # the build context the config names must be in the bundle (paths are relative to the bundle root)
    build = (cfg.raw.get("container") or {}).get("build")
    if isinstance(build, str):
        bad = _bad_relpath(build)
        if bad:
            raise ConfigError(f"{config.name}: container/build: {bad} (the bundle carries the build context): {build!r}")
        df = _norm(f"{build}/{cfg.container.dockerfile}")
        if df not in entries:
            raise ConfigError(f"{config.name}: container/build: {df} is not in the bundle "
                              f"(app files come from {app_dir}; check --app-dir/--include/--exclude)")

    compose = cfg.raw.get("compose") if isinstance(cfg.raw.get("compose"), dict) else {}
    files = [("compose/file", compose["file"])] if "file" in compose else \
        [(f"compose/files/{c}", f) for c, f in sorted((compose.get("files") or {}).items())]
    for key, name in files:
        if isinstance(name, str) and _norm(name) not in entries:
            raise ConfigError(f"{config.name}: {key}: {name} is not in the bundle "
                              f"(app files come from {app_dir}; check --app-dir/--include/--exclude)")

    text = appspec.read_text(encoding="utf-8")
    check_bundle(parse_appspec(text, appspec.name), {k: e.mode for k, e in entries.items()}, appspec.name)
    for name in entries:
        if _bad_relpath(name):
            raise DeliveryError(f"{name}: {_bad_relpath(name)}")
    return sorted(entries.values(), key=lambda e: e.name), cfg.app


def write_zip(entries: Iterable[Entry], out: Path, epoch: int) -> None:
    """Write the entries in order with fixed times and modes; temp file + rename."""
    import zipfile

    date_time = time.gmtime(max(epoch, ZIP_EPOCH_MIN))[:6]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for e in entries:
                zi = zipfile.ZipInfo(e.name, date_time)
                zi.create_system = 3                              # unix: the mode below is honoured
                zi.external_attr = (0o100000 | e.mode) << 16
                stored = e.name.endswith((".whl", ".zip", ".gz", ".png", ".jpg"))
                zi.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                zf.writestr(zi, e.read(), compresslevel=None if stored else 6)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundle(config: Path, output: Path | None = None, app_dir: Path | None = None, rules: Rules = Rules(),
           appspec: Path | None = None, with_wheels: bool = True, cache: Path | None = None,
           environ: Mapping[str, str] | None = None) -> BundleResult:
    """Build the bundle (validated before anything is written); return its path, sha256 and size."""
    t0 = time.monotonic()
    wheels = runtime_wheels(wheel_cache(cache)) if with_wheels else []
    if output is None:
        from bluegreen_hooks import config as config_mod

        output = Path("dist") / f"{config_mod.load(config, environ={}, check_files=False).app}.zip"
    output = Path(output)
    entries, app = collect(config, app_dir, rules, appspec, wheels, output)
    src = Path(app_dir) if app_dir is not None else Path(config).resolve().parent
    write_zip(entries, output, source_date_epoch(src, environ))
    return BundleResult(output, sha256_file(output), output.stat().st_size, len(entries), app,
                        time.monotonic() - t0)


def read_bundle(path: Path) -> tuple[str, str]:
    """(app name, sha256) of a built bundle; refuses a file that is not one of our bundles."""
    import zipfile

    from bluegreen_hooks import config as config_mod

    path = Path(path)
    if not path.is_file():
        raise DeliveryError(f"{path}: bundle not found (build it with: build.py bundle)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "appspec.yml" not in names or "bluegreen.toml" not in names:
                raise DeliveryError(f"{path}: not a bluegreen-hooks bundle (no appspec.yml/bluegreen.toml at its root)")
            raw = config_mod.tomllib.loads(zf.read("bluegreen.toml").decode())
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError) as exc:
        raise DeliveryError(f"{path}: not a readable zip bundle: {exc}") from exc
    return str(raw.get("app", "")), sha256_file(path)


# ---------------------------------------------------------------------------------------------- AWS

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


def _aws_errors() -> tuple[type, ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, Boto3Error)


def session(profile: str | None = None, region: str | None = None):
    import boto3

    try:
        return boto3.session.Session(profile_name=profile, region_name=region)
    except _aws_errors() as exc:
        raise aws_error("AWS session", exc) from exc


class Progress:
    """boto3 transfer callback: a bar on a terminal, otherwise a line every 25 %."""

    def __init__(self, total: int, label: str, stream=None) -> None:
        import threading

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


def head_revision(s3, bucket: str, key: str, expected_owner: str | None = None) -> Revision:
    kw = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **kw)
    except _aws_errors() as exc:
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


def push(path: Path, bucket: str, key: str | None = None, application: str | None = None, register: bool = True,
         description: str | None = None, sse: str | None = None, kms_key_id: str | None = None,
         expected_owner: str | None = None, multipart_mb: int = 8, profile: str | None = None,
         region: str | None = None, out=None, progress=None) -> Revision:
    """Upload the bundle (managed transfer), read it back (head_object), then register it."""
    out = out or sys.stdout
    from boto3.s3.transfer import TransferConfig

    app, sha = read_bundle(path)
    application = application or app
    size = Path(path).stat().st_size
    key = key or f"{app}/{Path(path).stem}-{sha[:12]}.zip"
    extra = upload_args(sha, sse, kms_key_id, expected_owner)
    if multipart_mb < 5:
        raise DeliveryError(f"push: --multipart-mb should be at least 5 (S3's smallest part), not {multipart_mb}")
    sess = session(profile, region)
    try:
        s3 = sess.client("s3")
        cd = sess.client("codedeploy") if register else None
    except _aws_errors() as exc:
        raise aws_error("AWS clients", exc) from exc
    owner = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}

    # fail before uploading when the revision could not be registered anyway
    if cd is not None:
        try:
            cd.get_application(applicationName=application)
        except _aws_errors() as exc:
            raise aws_error(f"application {application!r}", exc) from exc
    try:
        s3.head_bucket(Bucket=bucket, **owner)
    except _aws_errors() as exc:
        raise aws_error(f"bucket {bucket!r}", exc) from exc

    mb = 1024 * 1024
    cfg = TransferConfig(multipart_threshold=multipart_mb * mb, multipart_chunksize=multipart_mb * mb)
    callback = progress if progress is not None else Progress(size, f"upload s3://{bucket}/{key}")
    try:
        s3.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=cfg, Callback=callback)
    except _aws_errors() as exc:
        raise aws_error(f"upload to s3://{bucket}/{key}", exc) from exc

    rev = head_revision(s3, bucket, key, expected_owner)
    if rev.size != size or (rev.sha256 and rev.sha256 != sha):
        raise DeliveryError(f"s3://{bucket}/{key}: read back {rev.size} bytes (sha256 {rev.sha256}), expected {size} "
                            f"(sha256 {sha}); not registered, push again")
    rev = Revision(bucket, key, rev.etag, rev.version, application, sha, size)
    print(f"pushed s3://{bucket}/{key} ({size:,} bytes, etag {rev.etag or '(none)'}, version {rev.version or '(unversioned)'})",
          file=out, flush=True)
    if not rev.etag:
        print("warning: S3 returned no ETag; registering without one", file=out, flush=True)
    if cd is not None:
        try:
            cd.register_application_revision(applicationName=application, revision=rev.revision(),
                                             description=description or f"bluegreen-hooks bundle sha256 {sha}")
        except _aws_errors() as exc:
            raise aws_error(f"register revision of {application!r}", exc) from exc
        print(f"registered revision s3://{bucket}/{key} for application {application}", file=out, flush=True)
    return rev


# ---------------------------------------------------------------------------------------------- deploy

@dataclass
class DeployResult:
    deployment_id: str
    status: str
    info: dict = field(default_factory=dict)
    failed_events: list = field(default_factory=list)


def _targets(cd, deployment_id: str) -> list[tuple[str, list[dict]]]:
    """[(instance id, lifecycle events)] via the targets API, else the (older) instances API."""
    from botocore.exceptions import ClientError

    try:
        ids = cd.list_deployment_targets(deploymentId=deployment_id).get("targetIds", [])
        if not ids:
            return []
        got = cd.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=ids[:25])
        out = []
        for t in got.get("deploymentTargets", []):
            inst = t.get("instanceTarget") or {}
            out.append((inst.get("targetId") or inst.get("targetArn", "?"), inst.get("lifecycleEvents") or []))
        return out
    except ClientError:
        ids = cd.list_deployment_instances(deploymentId=deployment_id).get("instancesList", [])
        if not ids:
            return []
        got = cd.batch_get_deployment_instances(deploymentId=deployment_id, instanceIds=ids[:25])
        return [(i.get("instanceId", "?"), i.get("lifecycleEvents") or []) for i in got.get("instancesSummary", [])]


def _duration(ev: Mapping[str, Any]) -> str:
    a, b = ev.get("startTime"), ev.get("endTime")
    try:
        return f" ({(b - a).total_seconds():.0f}s)" if a and b else ""
    except TypeError:
        return ""


def wait(cd, deployment_id: str, out=None, poll: float = 2.0, timeout: float = 3600,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> DeployResult:
    """Follow a deployment until it ends, printing each status and lifecycle event change once."""
    out = out or sys.stdout
    deadline = clock() + timeout
    status = None
    seen: dict[tuple[str, str], str] = {}
    while True:
        try:
            info = cd.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
            targets = _targets(cd, deployment_id)
        except _aws_errors() as exc:
            raise aws_error(f"deployment {deployment_id}", exc) from exc
        if info.get("status") != status:
            status = info.get("status")
            ov = info.get("deploymentOverview") or {}
            counts = ", ".join(f"{k} {v}" for k, v in ov.items() if v)
            print(f"{deployment_id}: {status}" + (f" ({counts})" if counts else ""), file=out, flush=True)
        for target, events in targets:
            for ev in events:
                k = (target, ev.get("lifecycleEventName", "?"))
                if seen.get(k) != ev.get("status"):
                    seen[k] = ev.get("status", "?")
                    print(f"  {target} {k[1]}: {seen[k]}{_duration(ev)}", file=out, flush=True)
        if status in DONE:
            failed = [(t, ev) for t, evs in targets for ev in evs if ev.get("status") == "Failed"]
            return DeployResult(deployment_id, status, info, failed)
        if clock() >= deadline:
            raise DeliveryError(f"deployment {deployment_id} still {status} after {timeout:.0f}s; follow it with "
                                f"'aws deploy get-deployment --deployment-id {deployment_id}'")
        sleep(poll)


def report_failure(result: DeployResult, out=None) -> str:
    """Print the failed events' diagnostics (error code, script, message, log tail); return the one-line cause."""
    out = out or sys.stdout
    for target, ev in result.failed_events:
        d = ev.get("diagnostics") or {}
        print(f"failed: {target} {ev.get('lifecycleEventName')}: {d.get('errorCode', '?')} "
              f"{d.get('scriptName') or ''}".rstrip(), file=out)
        if d.get("message"):
            print(f"  message: {d['message']}", file=out)
        tail = (d.get("logTail") or "").rstrip("\n")
        if tail:
            print("  --- log tail (the agent's last 2048 characters) ---", file=out)
            for ln in tail.splitlines():
                print(f"  | {ln}", file=out)
    err = result.info.get("errorInformation") or {}
    first = result.failed_events[0][1] if result.failed_events else {}
    event = first.get("lifecycleEventName") if first else None
    cause = f"deployment {result.deployment_id} {result.status}" + (f" in {event}" if event else "")
    # our hooks end a failure with "ERROR <Event>: <cause>": that is the line to repeat
    ours = [ln.split("]", 1)[-1] if ln.startswith(("[stdout]", "[stderr]")) else ln
            for ln in ((first.get("diagnostics") or {}).get("logTail") or "").splitlines()]
    ours = [ln for ln in ours if event and ln.startswith(f"ERROR {event}: ")]
    if ours:
        cause += ": " + ours[-1][len("ERROR "):][len(event) + 2:]
    elif err:
        cause += f" ({err.get('code', '?')}: {' '.join(str(err.get('message', '')).split())})"
    out.flush()
    return cause


def check_group(application: str, group: str, profile: str | None = None, region: str | None = None) -> None:
    """Fail with one line unless the application and its deployment group exist."""
    try:
        cd = session(profile, region).client("codedeploy")
        cd.get_deployment_group(applicationName=application, deploymentGroupName=group)
    except _aws_errors() as exc:
        raise aws_error(f"deployment group {group!r} of {application!r}", exc) from exc


def create_deployment(application: str, group: str, rev: Revision, deployment_config: str | None = None,
                      description: str | None = None, file_exists: str | None = None,
                      ignore_stop_failures: bool = False, auto_rollback: Sequence[str] = (),
                      profile: str | None = None, region: str | None = None, cd=None) -> tuple[Any, str]:
    if cd is None:
        try:
            cd = session(profile, region).client("codedeploy")
        except _aws_errors() as exc:
            raise aws_error("AWS clients", exc) from exc
    kw: dict[str, Any] = {"applicationName": application, "deploymentGroupName": group, "revision": rev.revision()}
    if deployment_config:
        kw["deploymentConfigName"] = deployment_config
    if description:
        kw["description"] = description
    if file_exists:
        kw["fileExistsBehavior"] = file_exists
    if ignore_stop_failures:
        kw["ignoreApplicationStopFailures"] = True
    if auto_rollback:
        kw["autoRollbackConfiguration"] = {"enabled": True, "events": list(auto_rollback)}
    try:
        cd.get_deployment_group(applicationName=application, deploymentGroupName=group)
        return cd, cd.create_deployment(**kw)["deploymentId"]
    except _aws_errors() as exc:
        raise aws_error(f"create deployment of {application!r} to group {group!r}", exc) from exc


# ---------------------------------------------------------------------------------------------- CLI

def _cmd_bundle(args: argparse.Namespace) -> int:
    res = bundle(args.config, args.output, args.app_dir, Rules(tuple(args.include), tuple(args.exclude)),
                 args.appspec, not args.no_wheels, args.wheel_cache)
    print(res.summary(), flush=True)
    return 0


def _push_args(args: argparse.Namespace, path: Path, out=None) -> Revision:
    return push(path, args.bucket, args.key, args.application, not getattr(args, "no_register", False),
                args.description, args.sse, args.sse_kms_key_id, args.expected_bucket_owner, args.multipart_mb,
                args.profile, args.region, out=out)


def _write_revision_file(path: Path | None, rev: Revision) -> None:
    if path is None:
        return
    import json

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(rev.as_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _cmd_push(args: argparse.Namespace) -> int:
    rev = _push_args(args, args.bundle)
    _write_revision_file(args.revision_file, rev)
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    import json

    if args.bundle is not None:
        if not args.bucket:
            raise DeliveryError("deploy: --bucket is required to push BUNDLE")
        # the group must exist before anything is uploaded or registered
        check_group(args.application or read_bundle(args.bundle)[0], args.group, args.profile, args.region)
        rev = _push_args(args, args.bundle)
        _write_revision_file(args.revision_file, rev)
    elif args.revision_file is not None:
        try:
            rev = Revision(**json.loads(Path(args.revision_file).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise DeliveryError(f"{args.revision_file}: not a revision file written by 'push --revision-file': {exc}") from exc
    elif args.bucket and args.key:
        s3 = session(args.profile, args.region).client("s3")
        rev = head_revision(s3, args.bucket, args.key, args.expected_bucket_owner)
    else:
        raise DeliveryError("deploy: give BUNDLE (and --bucket), --revision-file FILE, or --bucket and --key")
    application = args.application or rev.application
    if not application:
        raise DeliveryError("deploy: --application is required (the revision does not name one)")
    cd, did = create_deployment(application, args.group, rev, args.deployment_config, args.description,
                                args.file_exists_behavior, args.ignore_application_stop_failures,
                                tuple(args.auto_rollback or ()), args.profile, args.region)
    if args.no_wait:
        print(did, flush=True)
        return 0
    print(f"deployment {did}: {application} -> {args.group} (s3://{rev.bucket}/{rev.key})", flush=True)
    result = wait(cd, did, poll=args.poll, timeout=args.timeout)
    if result.status == "Succeeded":
        print(f"deployment {did} Succeeded", flush=True)
        return 0
    raise DeliveryError(report_failure(result))


def _aws_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS (credentials, region and endpoints also come from boto3's standard chain)")
    g.add_argument("--profile", help="AWS profile (default: $AWS_PROFILE / default chain)")
    g.add_argument("--region", help="AWS region (default: $AWS_REGION / the profile's)")


def _push_options(p: argparse.ArgumentParser, bucket_required: bool) -> None:
    p.add_argument("--bucket", required=bucket_required, help="S3 bucket for the revision")
    p.add_argument("--key", help="S3 key (default: <app>/<bundle name>-<sha256[:12]>.zip)")
    p.add_argument("--application", help="CodeDeploy application (default: the bundle's app name)")
    p.add_argument("--description", help="revision/deployment description")
    p.add_argument("--sse", choices=("AES256", "aws:kms"), help="server-side encryption (SSE-S3 or SSE-KMS)")
    p.add_argument("--sse-kms-key-id", help="KMS key for --sse aws:kms (default: the AWS-managed key)")
    p.add_argument("--expected-bucket-owner", help="fail unless the bucket belongs to this account id")
    p.add_argument("--multipart-mb", type=int, default=8, help="multipart threshold and part size in MiB (default 8)")
    p.add_argument("--revision-file", type=Path, help="push (and deploy BUNDLE): write the revision (bucket, key, "
                                                       "eTag, version) as JSON here; deploy without BUNDLE: deploy "
                                                       "the revision this file names")


def add_commands(sub) -> None:
    """Register bundle, push and deploy on an argparse subparsers object."""
    b = sub.add_parser("bundle", help="build a reproducible revision zip (validated, with runtime wheels)",
                       description="Build the CodeDeploy revision: appspec.yml, hooks/, bluegreen_hooks/, "
                                   "bluegreen.toml, the app's files and wheels/. Same inputs -> same bytes.")
    b.add_argument("--config", type=Path, default=Path("bluegreen.toml"), help="deploy config (default ./bluegreen.toml)")
    b.add_argument("--app-dir", type=Path, help="folder whose files go to the bundle root (default: the config's folder)")
    b.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="only app files matching (a name, or a path/glob relative to --app-dir); repeatable")
    b.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="leave out matching app files; repeatable")
    b.add_argument("--appspec", type=Path, help="appspec.yml (default: the project's; hooks/ must be beside it)")
    b.add_argument("-o", "--output", type=Path, help="zip to write (default dist/<app>.zip)")
    b.add_argument("--no-wheels", action="store_true", help="no wheels/: the host's python3 must have docker+tenacity")
    b.add_argument("--wheel-cache", type=Path, help=f"wheel cache (default ${WHEEL_CACHE_ENV} or {DEFAULT_WHEEL_CACHE})")
    b.set_defaults(func=_cmd_bundle)

    p = sub.add_parser("push", help="upload a bundle to S3, verify it, register it with CodeDeploy",
                       description="Upload with boto3's managed transfer, read it back (head_object: ETag, "
                                   "VersionId, size, sha256), then register_application_revision.")
    p.add_argument("bundle", type=Path)
    _push_options(p, True)
    p.add_argument("--no-register", action="store_true", help="upload and verify only")
    _aws_options(p)
    p.set_defaults(func=_cmd_push)

    d = sub.add_parser("deploy", help="create a CodeDeploy deployment and follow it (push BUNDLE first if given)",
                       description="create_deployment, then print status and lifecycle events as they change; on "
                                   "failure print the failed event's diagnostics and log tail and exit 1.")
    d.add_argument("bundle", type=Path, nargs="?", help="push this bundle first (needs --bucket)")
    d.add_argument("--group", required=True, help="deployment group")
    _push_options(d, False)
    d.add_argument("--deployment-config", help="e.g. CodeDeployDefault.OneAtATime (default: the group's)")
    d.add_argument("--file-exists-behavior", choices=FILE_EXISTS, help="DISALLOW (CodeDeploy's default), OVERWRITE, RETAIN")
    d.add_argument("--ignore-application-stop-failures", action="store_true")
    d.add_argument("--auto-rollback", action="append", choices=("DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM",
                                                                 "DEPLOYMENT_STOP_ON_REQUEST"),
                   help="enable auto-rollback on this event; repeatable")
    d.add_argument("--no-wait", action="store_true", help="print the deployment id and exit")
    d.add_argument("--poll", type=float, default=2.0, help="seconds between status checks (default 2)")
    d.add_argument("--timeout", type=float, default=3600, help="give up waiting after this many seconds (default 3600)")
    _aws_options(d)
    d.set_defaults(func=_cmd_deploy)


def main(argv: Sequence[str] | None = None) -> int:
    """``python build.py bundle|push|deploy …``: exit 0 ok, 1 failed, 2 bad input (last line says why)."""
    parser = argparse.ArgumentParser(prog="build.py", description="Build, push and deploy bluegreen-hooks revisions.")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HookError as exc:
        print(f"ERROR {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ERROR interrupted", file=sys.stderr)
        return 130
