"""A second aws-local (shared/aws-local: Ceph S3 + the CodeDeploy emulator with the real agent) for fleets.

A fleet needs ``CDEMU_INSTANCES`` when the emulator starts, and the emulator of the ordinary delivery tests
(``$AWS_LOCAL_DIR`` default /tmp/aws-local, ports 7480/5055/13300) may be in use by another session. So
fleets get their own: its own folder (default /tmp/bgh-fleet-aws, kept between runs so its venv is made
once) and free ports, started with an instances file and stopped at the end (``down`` stops only what
its own pid files name).

    with AwsLocal(instances_file) as aws:     # up (after a down of this folder), down at the end
        os.environ.update(aws.env)            # AWS_ENDPOINT_URL_S3/_CODEDEPLOY, keys, region
"""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from testbed.bundle import ROOT
from testbed.ports import free_port

SCRIPTS = ROOT.parent / "shared" / "aws-local"
FLEET_DIR = Path(os.environ.get("BLUEGREEN_FLEET_AWS_DIR", "/tmp/bgh-fleet-aws"))


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export K=V`` values of aws-local's env file."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            out.update(w.partition("=")[::2] for w in words[1:])
    return out


class AwsLocal:
    """``up`` / ``down`` of an aws-local of our own, with an instances file."""

    def __init__(self, instances: Path, directory: Path = FLEET_DIR, scripts: Path = SCRIPTS) -> None:
        self.instances, self.dir, self.scripts = Path(instances), Path(directory), Path(scripts)
        self.env: dict[str, str] = {}
        self.up_seconds = 0.0

    def available(self) -> str | None:
        """Why aws-local cannot run here, or None."""
        if not (self.scripts / "up").is_file():
            return f"{self.scripts} not found (shared/ should be beside the checkout)"
        return None

    def _run(self, script: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.scripts / script)], env=env, capture_output=True, text=True,
                              timeout=timeout)

    def up(self) -> AwsLocal:
        import time

        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDEMU_"))}
        base["AWS_LOCAL_DIR"] = str(self.dir)
        self._run("down", base, 300)           # a leftover of an earlier run (this folder only)
        env = dict(base, S3_PORT=str(free_port()), CODEDEPLOY_PORT=str(free_port()),
                   CEPH_MON_PORT=str(free_port()), CDEMU_INSTANCES=str(self.instances))
        t0 = time.monotonic()
        proc = self._run("up", env, 1800)
        self.up_seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"aws-local/up failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        self.env = read_env_file(self.dir / "env")
        return self

    def down(self) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDEMU_"))}
        self._run("down", dict(base, AWS_LOCAL_DIR=str(self.dir)), 300)

    def client(self, service: str):
        import boto3
        from botocore.config import Config

        env = self.env
        client = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                       aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                       region_name=env["AWS_DEFAULT_REGION"]).client(
            service, endpoint_url=env[f"AWS_ENDPOINT_URL_{service.upper()}"],
            config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"))
        if not client.meta.endpoint_url.startswith("http://127.0.0.1"):   # never real AWS
            raise RuntimeError(f"{service} endpoint is {client.meta.endpoint_url}")
        return client

    def deployment_dir(self, deployment_id: str) -> Path:
        return self.dir / "codedeploy-emulator" / "deployments" / deployment_id

    def __enter__(self) -> AwsLocal:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
