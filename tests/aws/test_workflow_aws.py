"""example/github-actions/deploy.yml's commands against aws-local, in the workflow's order: its run: steps are
taken from the YAML and run by testbed/workflow.py (GitHub's shell, the job's env, a $GITHUB_STEP_SUMMARY file)
in a checkout laid out like a user's repository. The `uses:` steps are what this machine provides instead:
the checkout (a folder), python (the test venv on PATH), the OIDC credentials (aws-local's keys in the env),
and Java + Maven (a `./mvnw` stand-in that writes what it built into app/)."""
from __future__ import annotations

import os
import sys
import zipfile

import pytest

from testbed import workflow
from testbed.bundle import ROOT, bed_config, toml_dumps
from testbed.ports import free_port
from tests.helpers import get

pytestmark = [pytest.mark.aws, pytest.mark.agent]

WORKFLOW = ROOT / "example" / "github-actions" / "deploy.yml"
def test_workflow_steps_deploy_through_codedeploy_and_write_the_job_summary(
        tmp_path, aws_env, bucket, cd_app, codedeploy, docker_client, nginx, site, app_name):
    """Build, bundle, deploy: the deployment succeeds and the summary says so with its last lines; a second
    run whose ValidateService fails fails the deploy step, and the summary step still writes the failure and
    the agent's one-line cause."""
    app, group = cd_app
    ports, state_dir = (free_port(), free_port()), tmp_path / "state"
    env = {"PATH": workflow.path_with(os.path.dirname(sys.executable)), "HOME": str(tmp_path),
           **{k: v for k, v in os.environ.items() if k.startswith(("AWS_", "DOCKER_", "BLUEGREEN_WHEEL"))}}
    variables = {"CODEDEPLOY_BUCKET": bucket, "CODEDEPLOY_APPLICATION": app, "CODEDEPLOY_GROUP": group,
                 "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/github-deploy", "AWS_REGION": "us-east-1"}

    def run(version: str, sha: str, **overrides):
        config = bed_config(app_name, nginx, site, ports, state_dir, version, **overrides)
        repo = workflow.user_checkout(tmp_path / f"repo-{version}", toml_dumps(config))
        return repo, workflow.run_job(WORKFLOW, "deploy", repo, env, variables, workflow.default_github(sha),
                                      inputs={"environment": "production"})

    repo, job = run("v1", "a" * 40)
    assert [s.outcome for s in job.steps] == ["success"] * len(job.steps), \
        "\n".join(f"--- {s.name}: {s.outcome}\n{s.output}" for s in job.steps)
    creds = next(u for u in job.uses if u["uses"].startswith("aws-actions/configure-aws-credentials@"))
    assert creds["with"]["role-to-assume"] == variables["AWS_ROLE_ARN"]
    did = job.step("deploy").outputs["deployment_id"]
    assert did.startswith("d-")
    assert codedeploy.get_deployment(deploymentId=did)["deploymentInfo"]["status"] == "Succeeded"
    assert get(site.url + "/")[1].strip() == "v1"
    with zipfile.ZipFile(repo / "dist" / f"{app}-{'a' * 40}.zip") as zf:   # built, then bundled
        names = zf.namelist()
        assert zf.read("app/BUILT").decode() == "built by ./mvnw -B -ntp package -DskipTests\n"
    assert "src/Main.java" not in names and "bluegreen.toml" in names
    summary = job.summary
    assert summary.startswith("### Deploy to production: success\n"), summary
    assert f"Deployment {did} of {app} to {group}, revision {'a' * 40}" in summary
    assert f"deployment {did} Succeeded" in summary, summary

    repo, job = run("v2", "b" * 40, nginx={"validate_path": "/missing"})
    outcomes = {s.name: s.outcome for s in job.steps}
    assert outcomes["Bundle the revision"] == "success" and job.step("deploy").outcome == "failure", outcomes
    assert outcomes["Job summary"] == "success"
    did = job.step("deploy").outputs["deployment_id"]
    assert did.startswith("d-") and codedeploy.get_deployment(deploymentId=did)["deploymentInfo"]["status"] == "Failed"
    summary = job.summary
    assert summary.startswith("### Deploy to production: failure\n"), summary
    assert f"ERROR deployment {did} Failed in ValidateService: validation through nginx failed" in summary, summary
    assert get(site.url + "/")[1].strip() == "v1"   # switched back
