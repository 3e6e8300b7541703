"""The package's shape, read from its source: no import cycle, a light no-op hook, small modules and functions."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bluegreen_hooks"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
HEAVY = ("docker", "boto3", "botocore", "tenacity", "requests", "http", "email", "ssl")   # http.client pulls email, ssl


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, at module level or inside functions.

    ``from pkg import x`` counts as importing ``pkg.x`` when that is a module, else ``pkg``. Parent packages
    are not counted: a submodule importing its sibling through the package path is not a cycle in Python.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            subs = {f"{base}.{a.name}" for a in node.names}
            found |= (subs & known) or {base}
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}          # absent: unvisited, 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_reports_the_path():
    """The checker itself: a cycle comes back as its path, an acyclic graph as None."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """Imports inside functions count, and ``from pkg import mod`` points at the module."""
    pkg = tmp_path / "bluegreen_hooks"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from bluegreen_hooks import b\n")
    (pkg / "b.py").write_text("from bluegreen_hooks.sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import x\n")
    (pkg / "sub" / "c.py").write_text("from .. import a\nx = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    graph = import_graph()
    assert graph["bluegreen_hooks.a"] == {"bluegreen_hooks.b"}
    assert graph["bluegreen_hooks.b"] == {"bluegreen_hooks.sub.c"}
    assert graph["bluegreen_hooks.sub"] == {"bluegreen_hooks.sub.c"}
    assert find_cycle(graph) == ["bluegreen_hooks.a", "bluegreen_hooks.b", "bluegreen_hooks.sub.c",
                                 "bluegreen_hooks.a"]


def test_the_package_has_no_import_cycle():
    """No module imports itself through others, not even through an import inside a function."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


# The package's layers, lowest first. A module may import only from its own layer or a lower one (at module level
# or inside a function alike); a module belongs to the layer of the longest prefix naming it. Where a package
# spans layers, its lower modules are named: host.files and host.wait are the primitives everything reads and waits
# with, and observe's pure judgement (clients, stats, judgement) sits below the nginx side that writes its log.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "model", "names", "startup"),                  # names, the typed state, errors: pure
    ("host.files", "host.wait"),                              # the one way to read/replace a file, to wait
    ("config", "decide"),                                     # the validated config; the pure decision
    ("observe.clients", "observe.stats", "observe.judgement", "observe.baseline"),  # clients' experience, judged
    ("host",),                                                # every other side effect on the host
    ("observe", "runtime"),                                   # metrics/notify/report; how a colour runs
    ("lifecycle",),                                           # the events and their steps
    ("agent", "operator", "delivery"),                        # local runner + dry run, operator commands, delivery
    ("cli", "__main__"),                                      # the command line
)


def _layer(module: str) -> int:
    name = module.removeprefix("bluegreen_hooks.")
    best = max(((len(p), i) for i, layer in enumerate(LAYERS) for p in layer
                if name == p or name.startswith(p + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {_layer(a)}) -> {b} (layer {_layer(b)})"
                  for a, deps in graph.items() if a != "bluegreen_hooks" for b in deps
                  if b != "bluegreen_hooks" and _layer(b) > _layer(a))


def test_upward_imports_are_found():
    graph = {"bluegreen_hooks.config.parsing": {"bluegreen_hooks.host.files"},
             "bluegreen_hooks.lifecycle.runner": {"bluegreen_hooks.agent.plan"}}
    assert upward_imports(graph) == ["bluegreen_hooks.lifecycle.runner (layer 6) -> bluegreen_hooks.agent.plan "
                                     "(layer 7)"]


def test_no_module_imports_from_a_higher_layer():
    """The layering of LAYERS holds: e.g. lifecycle never imports agent or operator, host never imports runtime."""
    assert upward_imports(import_graph()) == []


def test_the_no_op_hook_imports_neither_docker_nor_boto3_nor_tenacity(tmp_path):
    """``python -m bluegreen_hooks hook ApplicationStop`` (the report-only event) stays on the stdlib."""
    (tmp_path / "bluegreen.toml").write_text(
        f'app = "shop"\n[container]\nimage = "shop:1"\n[deploy]\nstate_dir = "{tmp_path / "state"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLUEGREEN_", "PYTHON"))}
    env.update(PYTHONPATH=str(ROOT), DEPLOYMENT_ID="d-STRUCTURE", LIFECYCLE_EVENT="ApplicationStop")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bluegreen_hooks", "hook", "ApplicationStop",
                           "--bundle", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    assert "bluegreen_hooks.cli" in imported, proc.stderr[-2000:]
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert not heavy, f"the no-op hook imported {heavy}"


# The runtime interface (runtime/base.py) passes plain values only: nothing typed Any crosses it, and no module
# outside runtime/ reaches through a backend to the docker SDK.
BACKEND_NAMES = ("be", "backend")       # what the package calls a Backend (``be``, ``self.be``, ``ctx.backend``)
SDK_ONLY = ("client", "attrs")          # a backend's SDK client; an SDK container's inspect data


def any_uses(source: str) -> list[int]:
    """The lines where ``typing.Any`` is named: imported, used as a name or as ``typing.Any``, or inside a string
    annotation. Comments and docstrings do not count (read with ast, not grep)."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        named = ((isinstance(node, ast.ImportFrom) and any(a.name == "Any" for a in node.names))
                 or (isinstance(node, ast.Name) and node.id == "Any")
                 or (isinstance(node, ast.Attribute) and node.attr == "Any"))
        if named:
            found.add(node.lineno)
        elif isinstance(node, (ast.arg, ast.AnnAssign, ast.FunctionDef, ast.AsyncFunctionDef)):
            ann = node.returns if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else node.annotation
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str) and any_uses(ann.value):
                found.add(node.lineno)
    return sorted(found)


def sdk_reach_throughs(source: str) -> list[str]:
    """``X.client`` / ``X.attrs`` where X is a backend (a name or attribute named as in BACKEND_NAMES), and any
    ``.attrs`` at all (only SDK objects have it in this package: a container's inspect data), as
    ``line: text``. ``session.client("s3")`` (boto3) or ``http.client`` are not a backend's and do not count."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or node.attr not in SDK_ONLY:
            continue
        owner = node.value
        owner_name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        if node.attr == "attrs" or owner_name in BACKEND_NAMES:
            out.append((node.lineno, node.col_offset, ast.unparse(node)))
    return [f"{line}: {text}" for line, _, text in sorted(out)]


def test_the_checkers_find_any_and_reach_throughs_but_not_comments_or_boto3():
    assert any_uses('"""Any docstring."""\n# Any comment\nx: int = 1\n') == []
    assert any_uses("from typing import Any, Protocol\n") == [1]
    assert any_uses("import typing\n\ndef f(x: typing.Any) -> None: ...\n") == [3]
    assert any_uses("def f(x: 'list[Any]') -> None: ...\n") == [1]
    assert sdk_reach_throughs("be.client.version()\nc.attrs.get('Id')\nself.be.client\nctx.backend.client\n"
                              "sess.client('s3')\nimport http.client\nclient.close()\n") == [
        "1: be.client", "2: c.attrs", "3: self.be.client", "4: ctx.backend.client"]


def test_the_backend_protocol_has_no_any():
    """runtime/base.py (the Backend protocol and its records) names no ``Any``: plain values only."""
    path = PACKAGE / "runtime" / "base.py"
    lines = any_uses(path.read_text(encoding="utf-8"))
    assert not lines, f"{path.relative_to(ROOT)} uses Any on line(s) {lines}"


def test_no_module_outside_runtime_reaches_through_a_backend_to_the_sdk():
    """Outside runtime/, no ``be.client`` / ``backend.client`` / ``self.be.client`` and no ``.attrs`` (an SDK
    container's inspect data): what callers need is a Backend method or a field of its records."""
    found = {name: hits for name, path in _modules().items()
             if not name.startswith("bluegreen_hooks.runtime")
             and (hits := sdk_reach_throughs(path.read_text(encoding="utf-8")))}
    assert found == {}


@pytest.mark.parametrize("paused, frozen", [(True, True), (False, False)])
def test_a_hook_process_freezes_its_imports_and_collects_again(paused, frozen):
    """hooks/launch pauses the collector; once the hook's modules (and the docker SDK) are imported they are
    frozen and collection is on again. A process that did not pause it (tests, the CLI) is left as it is."""
    code = (f"import gc\nif {paused}: gc.disable()\n"
            "from bluegreen_hooks import startup\nstartup.imports_done()\nassert gc.isenabled()\n"
            "first = gc.get_freeze_count()\n"
            "with startup.importing():\n    assert gc.isenabled() is not {paused}\n    import json\n"
            "assert gc.isenabled()\nprint(first > 0, gc.get_freeze_count() >= first)\n").replace("{paused}",
                                                                                               str(paused))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(frozen), "True"]


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_modules_are_at_most_400_lines():
    """Package modules stay small enough to hold one concern."""
    big = {name: n for name, path in _modules().items()
           if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_functions_are_at_most_60_lines():
    """Package functions (methods and nested functions too) stay at most 60 lines long."""
    long = {}
    for name, path in _modules().items():
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long[f"{name}.{fn.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"



def test_every_subpackage_has_a_map_naming_each_of_its_modules():
    """Each subpackage's ``__init__`` docstring says where things live: every module in it is named there, so a
    newcomer finds a concern from one page; an indented map line naming a module that does not exist fails too."""
    import re

    missing, stale = {}, {}
    for package in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")):
        init = package / "__init__.py"
        assert init.exists(), f"{package.name}/ has no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        modules = {m.stem for m in package.glob("*.py") if m.stem != "__init__"}
        if unnamed := sorted(m for m in modules if not re.search(rf"\b{m}\b", doc)):
            missing[package.name] = unnamed
        mapped = set(re.findall(r"^    ([a-z_]+(?:\.py)?)\s{2,}", doc, re.M))
        if unknown := sorted(n for n in mapped if n.removesuffix(".py") not in modules):
            stale[package.name] = unknown
    assert not missing, f"modules not named in their package's map: {missing}"
    assert not stale, f"package maps naming modules that do not exist: {stale}"

QUICK_PROBES = '''\
import docker
import pytest


def test_pure():
    assert True


def test_on_the_test_bed(docker_client):
    pass


@pytest.mark.aws
def test_marked_aws():
    pass


@pytest.mark.slow
def test_marked_slow():
    pass


def test_docker_without_the_fixtures():
    docker.from_env(timeout=5).ping()


@pytest.fixture
def sneaky(request):
    return request.getfixturevalue("docker_daemon")


def test_the_daemon_through_another_fixture(sneaky):
    pass
'''


def test_quick_runs_no_test_that_needs_the_test_bed(tmp_path):
    """`scripts/test --quick` (pytest --quick): tests marked integration/aws/agent (or using the test bed's
    fixtures) or slow are deselected; a test that reaches Docker or the test bed anyway fails instead of passing by
    luck or using the shared daemon."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n  integration: x\n  aws: x\n  agent: x\n  slow: x\n")
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    (tmp_path / "test_probes.py").write_text(QUICK_PROBES)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": ""}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--quick", "-p", "no:cacheprovider", "-q", "-rfE",
                           "--strict-markers", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert "1 failed, 1 passed, 3 deselected, 1 error" in out, out
    failed = {(ln.split()[0], ln.split("::")[1].split()[0]) for ln in out.splitlines()
              if ln.startswith(("FAILED", "ERROR"))}
    assert failed == {("FAILED", "test_docker_without_the_fixtures"),   # no daemon at DOCKER_HOST
                      ("ERROR", "test_the_daemon_through_another_fixture")}, out   # the fixture refuses
    assert "reached the Docker daemon under --quick" in out, out
