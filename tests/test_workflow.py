"""example/github-actions/deploy.yml: actionlint finds nothing; its shape (OIDC, per-environment concurrency, the
summary step); and testbed/workflow.py, the small runner that runs its steps against aws-local
(tests/aws/test_workflow_aws.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from testbed import workflow
from testbed.bundle import ROOT
from tests.helpers import IN_CI

WORKFLOW = ROOT / "example" / "github-actions" / "deploy.yml"


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which("actionlint", path=os.path.dirname(sys.executable))
    if not found:
        if IN_CI:
            pytest.fail("CI must lint the workflow: actionlint is missing (pip install -e '.[test]')")
        pytest.skip("actionlint is not installed (pip install -e '.[test]')")
    return found


def test_workflow_passes_actionlint_with_shellcheck():
    """Any finding fails (actionlint also runs shellcheck on every run: script when it is on PATH)."""
    if not shutil.which("shellcheck"):
        if IN_CI:
            pytest.fail("CI must check the workflow's scripts: shellcheck is missing (scripts/setup installs it)")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run([_actionlint(), "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), proc.stdout + proc.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path):
    """The lint can fail: an unknown context and a shellcheck finding in a copy of the workflow."""
    bad = tmp_path / "deploy.yml"
    bad.write_text(WORKFLOW.read_text().replace("${{ vars.CODEDEPLOY_GROUP }}", "${{ varz.CODEDEPLOY_GROUP }}")
                   .replace('>> "$GITHUB_OUTPUT"', ">> $GITHUB_OUTPUT"))
    proc = subprocess.run([_actionlint(), "-no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "varz" in proc.stdout, proc.stdout
    if shutil.which("shellcheck"):
        assert "SC2086" in proc.stdout, proc.stdout


def test_workflow_shape_oidc_concurrency_and_summary():
    wf = workflow.load(WORKFLOW)
    assert wf["permissions"] == {"contents": "read", "id-token": "write"}
    job = wf["jobs"]["deploy"]
    assert job["concurrency"] == {"group": "deploy-${{ inputs.environment || 'staging' }}", "cancel-in-progress": False}
    assert job["environment"] == "${{ inputs.environment || 'staging' }}"
    creds = next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert creds["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    assert not any("aws-access-key-id" in (s.get("with") or {}) for s in job["steps"])   # OIDC only, no keys
    runs = workflow.run_steps(WORKFLOW, "deploy")
    order = [next(i for i, r in enumerate(runs) if word in r) for word in ("mvnw", "build.py bundle",
                                                                            "build.py deploy", "GITHUB_STEP_SUMMARY")]
    assert order == sorted(order), runs
    assert job["steps"][-1]["if"] == "always()" and "GITHUB_STEP_SUMMARY" in job["steps"][-1]["run"]


def test_runner_runs_steps_in_order_and_the_always_step_after_a_failure(tmp_path):
    wf = tmp_path / "wf.yml"
    wf.write_text("""
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    env:
      WHO: ${{ vars.WHO }}
    steps:
      - uses: actions/checkout@v5
      - id: one
        run: echo "n=1" >> "$GITHUB_OUTPUT"; echo "hello $WHO"
      - id: two
        run: exit 3
      - run: echo never
      - if: always()
        env:
          ONE: ${{ steps.one.outputs.n }}
          TWO: ${{ steps.two.outcome }}
        run: echo "one=$ONE two=$TWO sha=$GITHUB_SHA" >> "$GITHUB_STEP_SUMMARY"
""")
    (tmp_path / "w").mkdir()
    job = workflow.run_job(wf, "j", tmp_path / "w", {"PATH": os.environ["PATH"]}, {"WHO": "you"},
                           workflow.default_github("abc"))
    assert [s.outcome for s in job.steps] == ["success", "failure", "skipped", "success"]
    assert job.steps[0].output.strip() == "hello you"
    assert job.summary == "one=1 two=failure sha=abc\n"
    assert job.uses == [{"uses": "actions/checkout@v5", "with": {}}]
    wf.write_text(wf.read_text().replace("vars.WHO", "secrets.WHO"))
    with pytest.raises(workflow.UnsupportedExpression, match=r"secrets\.WHO"):
        workflow.run_job(wf, "j", tmp_path / "w", {}, {}, workflow.default_github())


# ------------------------------------------------------------------------------- against aws-local, if it is up

AWS_LOCAL_ENV = Path(os.environ.get("AWS_LOCAL_DIR") or "/tmp/aws-local") / "env"


@pytest.fixture
def aws_local_up():
    """aws-local's env when it is up (S3 and CodeDeploy answer), else skip: tests/aws/ starts it and runs the
    full version with bluegreen-hooks' own hooks (test_workflow_aws.py); this one needs no agent settings."""
    import urllib.request

    from tests.aws.conftest import read_env_file

    if not AWS_LOCAL_ENV.is_file():
        pytest.skip(f"aws-local is not up ({AWS_LOCAL_ENV} missing); tests/aws/test_workflow_aws.py covers CI")
    sets, _ = read_env_file(AWS_LOCAL_ENV)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(sets["AWS_ENDPOINT_URL_S3"], timeout=3).close()
    except OSError as exc:
        if getattr(exc, "code", None) is None:   # an HTTP error still means it answers
            pytest.skip(f"aws-local's S3 does not answer ({exc})")
    return sets


def _aws(sets, service):
    import boto3
    from botocore.config import Config

    return boto3.session.Session(aws_access_key_id=sets["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=sets["AWS_SECRET_ACCESS_KEY"],
                                 region_name=sets["AWS_DEFAULT_REGION"]).client(
        service, endpoint_url=sets[f"AWS_ENDPOINT_URL_{service.upper()}"],
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"))


@pytest.mark.aws
def test_workflow_steps_against_aws_local_with_a_one_hook_revision(tmp_path, aws_local_up):
    """The workflow's run: steps in order against aws-local (S3 + the CodeDeploy emulator), with a revision
    whose only hook is a ValidateService script: a passing one, then one that fails with a one-line ERROR.
    The summary has the result, the deployment id and the last lines (with the hook's cause on failure)."""
    s3, cd = _aws(aws_local_up, "s3"), _aws(aws_local_up, "codedeploy")
    name = f"bgh-wf-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    cd.create_application(applicationName=name, computePlatform="Server")
    cd.create_deployment_group(applicationName=name, deploymentGroupName=f"{name}-g",
                               serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy")
    env = {"PATH": workflow.path_with(os.path.dirname(sys.executable)), "HOME": str(tmp_path),
           **{k: v for k, v in aws_local_up.items() if k.startswith("AWS_")}}
    variables = {"CODEDEPLOY_BUCKET": name, "CODEDEPLOY_APPLICATION": name, "CODEDEPLOY_GROUP": f"{name}-g",
                 "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/github-deploy", "AWS_REGION": "us-east-1"}

    def run(sha, hook):
        repo = workflow.user_checkout(tmp_path / f"repo-{sha[:1]}", 'app = "shop"\n[container]\nbuild = "app"\n',
                                      hooks={"ValidateService": hook})
        return repo, workflow.run_job(WORKFLOW, "deploy", repo, env, variables, workflow.default_github(sha))

    repo, job = run("a" * 40, "#!/bin/sh\necho validated\n")
    assert [s.outcome for s in job.steps] == ["success"] * 5, \
        "\n".join(f"--- {s.name}: {s.outcome}\n{s.output}" for s in job.steps)
    did = job.step("deploy").outputs["deployment_id"]
    assert cd.get_deployment(deploymentId=did)["deploymentInfo"]["status"] == "Succeeded"
    with zipfile.ZipFile(repo / "dist" / f"{name}-{'a' * 40}.zip") as zf:   # built, then bundled (only app/)
        assert zf.read("app/BUILT").decode() == "built by ./mvnw -B -ntp package -DskipTests\n"
        assert "src/Main.java" not in zf.namelist()
    assert job.summary.startswith("### Deploy to staging: success\n"), job.summary
    assert f"Deployment {did} of {name} to {name}-g, revision {'a' * 40}" in job.summary
    assert f"deployment {did} Succeeded" in job.summary

    _, job = run("b" * 40, "#!/bin/sh\necho 'ERROR ValidateService: the new version answers 503'\nexit 1\n")
    assert [s.outcome for s in job.steps] == ["success"] * 3 + ["failure", "success"]
    did = job.step("deploy").outputs["deployment_id"]
    assert cd.get_deployment(deploymentId=did)["deploymentInfo"]["status"] == "Failed"
    assert job.summary.startswith("### Deploy to staging: failure\n"), job.summary
    assert f"ERROR deployment {did} Failed in ValidateService: the new version answers 503" in job.summary
