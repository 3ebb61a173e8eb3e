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
