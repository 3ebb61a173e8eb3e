"""The test suite's own rules: data tests fail in CI when ../shared/data is missing, and
``make test`` runs the doctests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import REPO

DATA_TEST = '''
import pytest
from conftest import shared_data

@pytest.mark.data
def test_marked():
    pass

def test_reads_a_file():
    shared_data("no/such/file.txt")
'''


def _run_missing_data(tmp_path, **env: str) -> tuple[int, str]:
    """Run a two-test suite with our conftest and the data pointed somewhere absent."""
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(DATA_TEST)
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "MASKEDLM_REQUIRE_DATA")}
    clean.update(MASKEDLM_SHARED_DATA=str(tmp_path / "absent"), **env)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsf",
                        "-o", "markers=data: needs data", str(tmp_path)],
                       capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=120)
    return r.returncode, r.stdout


def test_missing_data_skips_locally_and_fails_in_ci(tmp_path):
    code, out = _run_missing_data(tmp_path)
    assert code == 0 and "2 skipped" in out, out
    for env in ({"CI": "true"}, {"MASKEDLM_REQUIRE_DATA": "1"}):
        code, out = _run_missing_data(tmp_path, **env)
        # the marked test errors in setup, the helper fails the other: neither passes
        assert code == 1 and "1 failed, 1 error" in out and "CI / MASKEDLM_REQUIRE_DATA" in out, out
    code, out = _run_missing_data(tmp_path, CI="false")
    assert code == 0 and "2 skipped" in out, out


def test_make_test_runs_the_doctests_of_src():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "--doctest-modules src" in recipe, recipe


def private_uses(source: str) -> list[str]:
    """``from maskedlm... import _x`` and ``m._x`` where ``m`` was imported from maskedlm."""
    import ast

    tree = ast.parse(source)
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("maskedlm"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("maskedlm"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                not node.attr.startswith("__") and isinstance(node.value, ast.Name) and \
                node.value.id in modules:
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_private_uses_are_found():
    assert private_uses("from maskedlm.x import a, _b\nimport maskedlm.y as y\ny._c()\n") == \
        ["from maskedlm.x import _b", "y._c"]


def test_tests_and_benchmarks_use_no_private_names():
    """What the tests and benchmarks reach is the public surface (issue #29)."""
    files = sorted((REPO / "tests").rglob("*.py")) + sorted((REPO / "benchmarks").rglob("*.py"))
    bad = [f"{f.relative_to(REPO)}: {u}" for f in files for u in private_uses(f.read_text())]
    assert not bad, "\n".join(bad)
