"""Run a GitHub Actions job's ``run:`` steps here, in order, the way a runner does: for the test of
example/github-actions/deploy.yml against aws-local (tests/aws/test_workflow_aws.py).

Each ``run:`` step runs with GitHub's default shell (``bash --noprofile --norc -eo pipefail``), the job's and
the step's ``env:`` (their ``${{ }}`` expressions evaluated), fresh ``$GITHUB_OUTPUT``/``$GITHUB_ENV`` files and
one ``$GITHUB_STEP_SUMMARY`` file for the job. ``uses:`` steps are not run (the caller provides what they
would: a checkout, python on PATH, AWS credentials); they are returned so a test can check them. ``if:`` is
honoured for ``always()``, ``success()`` and ``failure()`` only, and only the expression forms the workflow
uses are understood; anything else raises, so a changed workflow breaks its test instead of being skipped.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SHELL = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]


class UnsupportedExpression(ValueError):
    """An expression this small runner does not evaluate (extend ``evaluate`` or change the workflow)."""


@dataclass
class StepResult:
    name: str
    id: str | None
    outcome: str            # success, failure, skipped (as steps.<id>.outcome)
    output: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class JobRun:
    steps: list[StepResult]
    uses: list[dict[str, Any]]
    summary: str

    def step(self, name_or_id: str) -> StepResult:
        return next(s for s in self.steps if name_or_id in (s.id, s.name))


def load(path: Path) -> dict[str, Any]:
    """The workflow as a dict (PyYAML reads the key ``on`` as True: it is put back as "on")."""
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def evaluate(expr: str, ctx: Mapping[str, Any]) -> str:
    """The value of one expression of the forms ``vars.X``, ``inputs.X || 'default'``, ``github.X``,
    ``steps.ID.outcome``, ``steps.ID.outputs.X`` (a missing value is "", as on GitHub)."""
    m = re.fullmatch(r"inputs\.(\w+)\s*\|\|\s*'([^']*)'", expr)
    if m:
        return str(ctx["inputs"].get(m.group(1)) or m.group(2))
    m = re.fullmatch(r"(vars|inputs|github)\.(\w+)", expr)
    if m:
        return str(ctx[m.group(1)].get(m.group(2), ""))
    m = re.fullmatch(r"steps\.([\w-]+)\.(outcome|outputs\.([\w-]+))", expr)
    if m:
        step = ctx["steps"].get(m.group(1))
        if step is None:
            return ""
        return step.outcome if m.group(2) == "outcome" else step.outputs.get(m.group(3), "")
    raise UnsupportedExpression(f"unsupported expression: ${{{{ {expr} }}}}")


def substitute(value: Any, ctx: Mapping[str, Any]) -> str:
    return EXPR.sub(lambda m: evaluate(m.group(1), ctx), str(value))


def _read_outputs(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def run_job(workflow: Path, job: str, workdir: Path, env: Mapping[str, str], vars: Mapping[str, str],
            github: Mapping[str, str], inputs: Mapping[str, str] | None = None, timeout: float = 900) -> JobRun:
    """Run ``job``'s steps of ``workflow`` in ``workdir`` with ``env`` as the runner's environment."""
    spec = load(workflow)["jobs"][job]
    ctx: dict[str, Any] = {"vars": dict(vars), "inputs": dict(inputs or {}), "github": dict(github), "steps": {}}
    runner = workdir.parent / f".runner-{workdir.name}"
    runner.mkdir(exist_ok=True)
    summary = runner / "step_summary.md"
    summary.write_text("")
    job_env = {k: substitute(v, ctx) for k, v in (spec.get("env") or {}).items()}
    results: list[StepResult] = []
    uses: list[dict[str, Any]] = []
    failed = False
    for i, step in enumerate(spec["steps"]):
        if "uses" in step:
            uses.append({"uses": step["uses"], "with": {k: substitute(v, ctx) for k, v in
                                                         (step.get("with") or {}).items()}})
            continue
        name, sid = step.get("name", step["run"].splitlines()[0]), step.get("id")
        cond = str(step.get("if", "success()")).strip()
        if cond not in ("always()", "success()", "failure()"):
            raise UnsupportedExpression(f"unsupported if: {cond}")
        if (cond == "success()" and failed) or (cond == "failure()" and not failed):
            res = StepResult(name, sid, "skipped")
        else:
            gh_output, gh_env = runner / f"output-{i}", runner / f"env-{i}"
            gh_output.write_text("")
            gh_env.write_text("")
            step_env = {k: substitute(v, ctx) for k, v in (step.get("env") or {}).items()}
            script = runner / f"step-{i}.sh"
            script.write_text(step["run"])
            full = {**env, **job_env, **step_env, "GITHUB_OUTPUT": str(gh_output), "GITHUB_ENV": str(gh_env),
                    "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_WORKSPACE": str(workdir), "CI": "true",
                    "GITHUB_ACTIONS": "true", **{f"GITHUB_{k.upper()}": v for k, v in github.items()}}
            proc = subprocess.run([*SHELL, str(script)], cwd=workdir, env=full, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
            res = StepResult(name, sid, "success" if proc.returncode == 0 else "failure", proc.stdout,
                             _read_outputs(gh_output))
            failed = failed or proc.returncode != 0
            job_env.update(_read_outputs(gh_env))
        results.append(res)
        if sid:
            ctx["steps"][sid] = res
    return JobRun(results, uses, summary.read_text())


def run_steps(workflow: Path, job: str) -> list[str]:
    """The ``run:`` scripts of ``job``, in order (for checks that need no runner)."""
    return [s["run"] for s in load(workflow)["jobs"][job]["steps"] if "run" in s]


def default_github(sha: str = "0" * 40) -> dict[str, str]:
    return {"sha": sha, "repository": "example/shop", "run_id": "4242", "run_attempt": "1", "ref": "refs/heads/main",
            "event_name": "workflow_dispatch"}


def path_with(*dirs: str) -> str:
    return os.pathsep.join([*dirs, os.environ.get("PATH", "")])


MVNW = """#!/bin/sh
# stands in for Maven here: "builds" by writing its arguments into the Dockerfile's context
set -eu
echo "built by ./mvnw $*" > app/BUILT
"""


def user_checkout(dest: Path, config_toml: str, hooks: Mapping[str, str] | None = None) -> Path:
    """A user's repository as the workflow expects it: build.py, appspec.yml, hooks/, bluegreen_hooks/, app/
    (the example app), bluegreen.toml, src/ (left out of the bundle) and a ``./mvnw`` stand-in.

    ``hooks`` ({event: script}) replaces bluegreen-hooks' hooks and appspec with these scripts (a revision
    for a CodeDeploy agent that cannot reach the test bed's Docker daemon)."""
    from testbed.bundle import ROOT

    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "bluegreen_hooks", dest / "bluegreen_hooks", ignore=ignore)
    shutil.copy2(ROOT / "build.py", dest / "build.py")
    if hooks is None:
        shutil.copytree(ROOT / "hooks", dest / "hooks", ignore=ignore)
        shutil.copy2(ROOT / "appspec.yml", dest / "appspec.yml")
    else:
        (dest / "hooks").mkdir()
        spec = ["version: 0.0", "os: linux", "hooks:"]
        for event, script in hooks.items():
            (dest / "hooks" / event).write_text(script)
            (dest / "hooks" / event).chmod(0o755)
            spec += [f"  {event}:", f"    - location: hooks/{event}", "      timeout: 60"]
        (dest / "appspec.yml").write_text("\n".join(spec) + "\n")
    shutil.copytree(ROOT / "example" / "app", dest / "app", ignore=ignore)
    (dest / "src").mkdir()
    (dest / "src" / "Main.java").write_text("class Main {}\n")
    (dest / "bluegreen.toml").write_text(config_toml)
    (dest / "mvnw").write_text(MVNW)
    (dest / "mvnw").chmod(0o755)
    return dest
