"""The documentation builds without a warning (make docs runs the same command)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("myst_nb")
DOCS = Path(__file__).parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "dt")]
    result = subprocess.run([*command, str(DOCS), str(tmp_path / "html")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "html" / "generated" / "jointseg.io.write_xenium_explorer.html").read_text()
    assert "sopa" in api  # the page is generated from the docstring
    assert (tmp_path / "html" / "notebooks" / "tutorial.html").exists()
