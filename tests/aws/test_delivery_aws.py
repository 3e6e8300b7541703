"""build.py push/deploy against a real S3 server (Ceph radosgw) and the CodeDeploy emulator running the real agent."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from bluegreen_hooks.cli import main as build_main
from bluegreen_hooks.delivery.bundle import bundle, sha256_file
from testbed.bundle import ROOT, bed_config, toml_dumps
from testbed.load import Load
from testbed.ports import free_port
from tests.helpers import get

pytestmark = pytest.mark.aws

EXAMPLE_APP = ROOT / "example" / "app"


def make_bundle_zip(tmp_path: Path, config: dict, name: str = "rev.zip", wheels: bool = True,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    src = tmp_path / f"src-{name}"
    shutil.copytree(EXAMPLE_APP, src / "app")
    (src / "bluegreen.toml").write_text(toml_dumps(config))
    for rel, data in (extra_files or {}).items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    res = bundle(src / "bluegreen.toml", tmp_path / name, with_wheels=wheels)
    return res.path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = build_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def revisions(codedeploy, app: str) -> list[dict]:
    return [r["s3Location"] for r in codedeploy.list_application_revisions(applicationName=app)["revisions"]]


def test_push_small_bundle_registers_etag_and_version(tmp_path, capsys, s3, codedeploy, bucket, cd_app):
    """Upload, head_object, register: the registered revision carries S3's ETag and VersionId."""
    app, _ = cd_app
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False)
    rc, out, err = run(capsys, "push", str(z), "--bucket", bucket, "--application", app, "--key", "demo/small.zip",
                       "--revision-file", str(tmp_path / "rev.json"))
    assert rc == 0, err
    head = s3.head_object(Bucket=bucket, Key="demo/small.zip")
    assert head["ContentLength"] == z.stat().st_size
    assert head["Metadata"]["bluegreen-sha256"] == sha256_file(z)
    etag, version = head["ETag"].strip('"'), head["VersionId"]
    assert revisions(codedeploy, app) == [{"bucket": bucket, "key": "demo/small.zip", "bundleType": "zip",
                                           "eTag": etag, "version": version}]
    assert f"etag {etag}, version {version}" in out
    rev = json.loads((tmp_path / "rev.json").read_text())
    assert (rev["etag"], rev["version"], rev["application"]) == (etag, version, app)


def test_push_20mb_bundle_goes_multipart_and_registers(tmp_path, capsys, s3, codedeploy, bucket, cd_app):
    """A 20 MB bundle is uploaded in 8 MiB parts (ETag '-3'); the read-back ETag is the one registered."""
    app, _ = cd_app
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False,
                        extra_files={"data/blob.bin": os.urandom(20 * 1024 * 1024)})
    assert z.stat().st_size > 20_000_000
    rc, _out, err = run(capsys, "push", str(z), "--bucket", bucket, "--application", app)
    assert rc == 0, err
    assert "upload s3://" in err and "100%" in err            # progress (a bar on a terminal)
    [loc] = revisions(codedeploy, app)
    assert loc["eTag"].endswith("-3") and loc["version"]
    head = s3.head_object(Bucket=bucket, Key=loc["key"], VersionId=loc["version"])
    assert head["ETag"].strip('"') == loc["eTag"] and head["ContentLength"] == z.stat().st_size


def test_push_to_missing_bucket_is_one_line_and_registers_nothing(tmp_path, capsys, codedeploy, cd_app):
    app, _ = cd_app
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False)
    rc, _out, err = run(capsys, "push", str(z), "--bucket", "bgh-no-such-bucket-x1", "--application", app)
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("ERROR bucket 'bgh-no-such-bucket-x1': 404"), err
    assert "create it or fix --bucket" in err
    assert revisions(codedeploy, app) == []


def test_push_for_unknown_application_uploads_nothing(tmp_path, capsys, s3, bucket):
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False)
    rc, _out, err = run(capsys, "push", str(z), "--bucket", bucket, "--application", "bgh-nope")
    assert rc == 1
    assert err.startswith("ERROR application 'bgh-nope': ApplicationDoesNotExistException"), err
    assert err.count("\n") == 1, err
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_push_with_wrong_secret_is_access_denied(tmp_path, capsys, monkeypatch, codedeploy, bucket, cd_app):
    app, _ = cd_app
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    rc, _out, err = run(capsys, "push", str(z), "--bucket", bucket, "--application", app)
    assert rc == 1
    assert err.startswith(f"ERROR bucket '{bucket}': 403") and "access denied" in err and err.count("\n") == 1, err
    assert revisions(codedeploy, app) == []


def test_push_network_failure_is_one_line(tmp_path, capsys, monkeypatch, bucket, cd_app):
    app, _ = cd_app
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    rc, _out, err = run(capsys, "push", str(z), "--bucket", bucket, "--application", app)
    assert rc == 1
    assert err.startswith(f"ERROR bucket '{bucket}': network error:") and err.count("\n") == 1, err


def test_push_refused_by_the_server_is_one_line_and_registers_nothing(tmp_path, capsys, codedeploy, bucket, cd_app):
    """Ceph 16 over http refuses SSE-S3 (InvalidRequest): the upload error is one line; nothing is registered."""
    app, _ = cd_app
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False)
    rc, _out, err = run(capsys, "push", str(z), "--bucket", bucket, "--application", app, "--sse", "AES256")
    assert rc == 1
    last = err.splitlines()[-1]
    assert last.startswith(f"ERROR upload to s3://{bucket}/") and "InvalidRequest" in last, err
    assert revisions(codedeploy, app) == []


def test_deploy_to_unknown_group_is_one_line(tmp_path, capsys, bucket, cd_app):
    app, _ = cd_app
    z = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, wheels=False)
    rc, _out, err = run(capsys, "deploy", str(z), "--bucket", bucket, "--application", app, "--group", "nope")
    assert rc == 1
    assert "DeploymentGroupDoesNotExistException" in err and err.count("\n") == 1, err


@pytest.mark.agent
def test_deploy_no_wait_prints_the_id_and_revision_file_round_trips(tmp_path, capsys, codedeploy, bucket, cd_app):
    """push --revision-file, then deploy --revision-file --no-wait: stdout is just the id; it then Succeeds."""
    app, group = cd_app
    spec = tmp_path / "spec"
    (spec / "hooks").mkdir(parents=True)
    (spec / "appspec.yml").write_text("version: 0.0\nos: linux\nhooks:\n")   # no hooks: the agent only installs
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE_APP, src / "app")
    (src / "bluegreen.toml").write_text(toml_dumps({"app": "demo", "container": {"build": "app"}}))
    z = bundle(src / "bluegreen.toml", tmp_path / "rev.zip", appspec=spec / "appspec.yml", with_wheels=False).path
    rc, out, err = run(capsys, "push", str(z), "--bucket", bucket, "--application", app,
                       "--revision-file", str(tmp_path / "rev.json"))
    assert rc == 0, err
    rc, out, err = run(capsys, "deploy", "--revision-file", str(tmp_path / "rev.json"), "--group", group, "--no-wait",
                       "--deployment-config", "CodeDeployDefault.AllAtOnce", "--description", "from a revision file",
                       "--file-exists-behavior", "OVERWRITE", "--ignore-application-stop-failures",
                       "--auto-rollback", "DEPLOYMENT_FAILURE")
    assert rc == 0, err
    did = out.strip()
    assert did.startswith("d-") and "\n" not in did
    codedeploy.get_waiter("deployment_successful").wait(deploymentId=did, WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    info = codedeploy.get_deployment(deploymentId=did)["deploymentInfo"]
    rev = json.loads((tmp_path / "rev.json").read_text())
    assert info["revision"]["s3Location"] == {"bucket": bucket, "key": rev["key"], "bundleType": "zip",
                                              "eTag": rev["etag"], "version": rev["version"]}
    assert (info["deploymentConfigName"], info["description"], info["fileExistsBehavior"],
            info["ignoreApplicationStopFailures"], info["autoRollbackConfiguration"]) == (
        "CodeDeployDefault.AllAtOnce", "from a revision file", "OVERWRITE", True,
        {"enabled": True, "events": ["DEPLOYMENT_FAILURE"]})


@pytest.mark.agent
def test_deploy_example_app_through_codedeploy_with_zero_failed_requests(
        tmp_path, capsys, s3, codedeploy, bucket, cd_app, docker_client, nginx, site, app_name, aws_local):
    """bundle -> push -> register -> create_deployment -> the real agent runs the hooks with the system python3
    (empty environment), which builds its venv from the bundled wheels.

    First deploy: blue serves v1. Second (under load): green serves v2, 0 failed requests. Third, whose
    ValidateService fails: deploy exits 1 and prints the agent's log tail with our one-line cause.
    """
    app, group = cd_app
    ports = (free_port(), free_port())
    state_dir = tmp_path / "state"

    def deploy(version: str, **overrides) -> tuple[int, str, str]:
        cfg = bed_config(app_name, nginx, site, ports, state_dir, version, **overrides)
        z = make_bundle_zip(tmp_path, cfg, name=f"{version}.zip")
        return run(capsys, "deploy", str(z), "--bucket", bucket, "--application", app, "--group", group,
                   "--poll", "0.5", "--timeout", "900", "--description", f"test {version}")

    # the venv the agent's python3 (the system one: no tenacity) will build from the bundle's wheels/
    probe = make_bundle_zip(tmp_path, {"app": "demo", "container": {"build": "app"}}, name="probe.zip")
    with zipfile.ZipFile(probe) as zf:
        key = hashlib.sha256(zf.read("wheels/requirements.txt"))
    ver = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True).stdout.strip()
    key.update(f"\0{ver}\0cpython".encode())
    venv = aws_local["venv_root"] / f"venv-{key.hexdigest()[:16]}"
    shutil.rmtree(venv, ignore_errors=True)

    rc, out, err = deploy("v1")
    assert rc == 0, out + err
    assert "Succeeded" in out and "ValidateService: Succeeded" in out, out
    assert (venv / ".bluegreen-ready").is_file()          # built by the hooks, offline, from wheels/
    assert get(site.url + "/")[1].strip() == "v1"
    assert json.loads((state_dir / f"{app_name}.json").read_text())["live"] == "blue"

    with Load(site.url + "/", threads=4) as load:
        rc, out, err = deploy("v2")
    assert rc == 0, out + err
    r = load.result
    assert r.failed == 0, r.summary()
    assert r.versions_in_order == ["v1", "v2"], r.summary()
    assert json.loads((state_dir / f"{app_name}.json").read_text())["live"] == "green"

    rc, out, err = deploy("v3", nginx={"validate_path": "/missing"})
    assert rc == 1, out + err
    assert "ValidateService: Failed" in out
    assert "failed: i-" in out and "ScriptFailed hooks/ValidateService" in out, out
    tail = out.split("--- log tail", 1)[1]
    cause = "ERROR ValidateService: validation through nginx failed"
    assert f"| [stdout]{cause}" in tail, out            # the agent's tail, as CodeDeploy shows it
    last = err.splitlines()[-1]                      # (progress lines come before it)
    assert last.startswith("ERROR deployment d-"), err
    assert "Failed in ValidateService: validation through nginx failed" in last, err
    assert get(site.url + "/")[1].strip() == "v2"      # switched back to the colour that served
    info = codedeploy.get_deployment(deploymentId=last.split()[2])["deploymentInfo"]
    assert info["status"] == "Failed"
