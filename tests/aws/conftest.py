"""aws-local for the delivery tests: a real S3 (Ceph radosgw) and the CodeDeploy emulator running the real agent.

The session fixture runs ``shared/aws-local/up`` (shared/ lies beside the checkout), with
CDEMU_AGENT_PASSENV so the hooks the agent runs (as root, empty environment) reach the test bed's Docker
daemon and build their venvs in a test folder; then it loads ``$AWS_LOCAL_DIR/env`` into os.environ and
runs ``down`` at the end if it started the services. Outside CI a missing aws-local skips; under
CI=true it fails. The env file's AWS_* variables are set for each test of this folder only.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers import IN_CI

ROOT = Path(__file__).resolve().parents[2]
AWS_LOCAL = ROOT.parent / "shared" / "aws-local"
# where the agent's hooks build their venvs (fixed, so every session and the running emulator agree)
HOOK_VENV_ROOT = os.environ.get("BLUEGREEN_TEST_VENV_ROOT", "/tmp/bgh-hook-venvs")


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI must have aws-local: {reason}")
    pytest.skip(reason)


def read_env_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """(exports, unsets) of aws-local's env file (lines `export K=V …` and `unset K …`)."""
    sets: dict[str, str] = {}
    unsets: list[str] = []
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            for w in words[1:]:
                k, _, v = w.partition("=")
                sets[k] = v
        elif words and words[0] == "unset":
            unsets += words[1:]
    return sets, unsets


def _emulator_environ(local_dir: Path) -> dict[str, str]:
    try:
        pid = (local_dir / "codedeploy-emulator.pid").read_text().strip()
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(x.decode(errors="replace").partition("=")[::2] for x in raw.split(b"\0") if b"=" in x)


@pytest.fixture(scope="session")
def aws_local(docker_daemon):
    """Start (or reuse) aws-local for the session; returns its env file's values (see ``aws_env``)."""
    up = AWS_LOCAL / "up"
    if not up.is_file():
        _unavailable(f"{AWS_LOCAL} not found (shared/ should be beside the checkout)")
    passenv = {"DOCKER_HOST": docker_daemon.host, "BLUEGREEN_VENV_ROOT": HOOK_VENV_ROOT}
    env = dict(os.environ, **passenv, CDEMU_AGENT_PASSENV=" ".join(passenv))
    env.pop("CDEMU_AGENT", None)
    try:
        proc = subprocess.run([str(up)], env=env, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"aws-local/up did not finish: {exc}")
    if proc.returncode != 0:
        _unavailable(f"aws-local/up failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
    started = "already up" not in proc.stderr
    local_dir = Path(env.get("AWS_LOCAL_DIR") or "/tmp/aws-local")
    if not started:   # someone else's emulator: its hooks must get our variables and run the real agent
        emu = _emulator_environ(local_dir)
        passed = emu.get("CDEMU_AGENT_PASSENV", "").split()
        wrong = [k for k, v in passenv.items() if emu.get(k) != v or k not in passed]
        mode_file = local_dir / "codedeploy-emulator.mode"
        mode = mode_file.read_text().strip() if mode_file.exists() else "?"
        if wrong or mode != "on":
            _unavailable(f"aws-local is already up without agent mode / CDEMU_AGENT_PASSENV for "
                         f"{', '.join(wrong) or '-'} (mode {mode}); run {AWS_LOCAL}/down and retry")
    sets, unsets = read_env_file(local_dir / "env")
    try:
        yield {"dir": local_dir, "env": sets, "unset": unsets, "started": started, "venv_root": Path(HOOK_VENV_ROOT)}
    finally:
        if started:
            subprocess.run([str(AWS_LOCAL / "down")], capture_output=True, text=True, timeout=300)


@pytest.fixture(autouse=True)
def aws_env(aws_local, monkeypatch):
    """aws-local's env file, applied for each test here only (other tests' environment stays as it was)."""
    for k in aws_local["unset"]:
        monkeypatch.delenv(k, raising=False)
    for k, v in aws_local["env"].items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    return aws_local["env"]


def _client(aws_local, service: str):
    import boto3
    from botocore.config import Config

    env = aws_local["env"]
    client = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                   region_name=env["AWS_DEFAULT_REGION"]).client(
        service, endpoint_url=env[f"AWS_ENDPOINT_URL_{service.upper()}"],
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"))
    assert client.meta.endpoint_url.startswith("http://127.0.0.1"), client.meta.endpoint_url  # never real AWS
    return client


@pytest.fixture(scope="session")
def s3(aws_local):
    return _client(aws_local, "s3")


@pytest.fixture(scope="session")
def codedeploy(aws_local):
    return _client(aws_local, "codedeploy")


@pytest.fixture
def bucket(s3):
    """A new versioned bucket."""
    name = f"bgh-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def cd_app(codedeploy):
    """A new CodeDeploy application with one deployment group: (application, group)."""
    app = f"bgh-{uuid.uuid4().hex[:8]}"
    codedeploy.create_application(applicationName=app, computePlatform="Server")
    group = f"{app}-group"
    codedeploy.create_deployment_group(applicationName=app, deploymentGroupName=group,
                                       serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy")
    return app, group
