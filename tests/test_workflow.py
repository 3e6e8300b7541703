"""example/github-actions/deploy.yml: actionlint finds nothing; its shape (OIDC, per-environment concurrency, the
summary step); and testbed/workflow.py, the small runner that runs its steps against aws-local
(tests/aws/test_workflow_aws.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

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
