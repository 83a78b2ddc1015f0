"""DMIFBatch.py, the headless entry point: any failure is one line on stderr and a non-zero exit code (inside
Slicer it then quits the application with that code; here the plain-Python path runs)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="the PyPI package slicer-core is needed")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def batch_script():
    spec = importlib.util.spec_from_file_location("DMIFBatch", ROOT / "DMIFBatch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def test_bad_cohort_exits_2_with_one_line_in_a_real_process(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "DMIFBatch.py"), "--", str(tmp_path / "missing.csv"),
                           str(tmp_path / "model.pt"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert line.startswith("DMIFBatch: error: ") and "missing.csv: cohort file not found" in line


def test_usage_error_is_argparse_exit_2(batch_script, capsys):
    assert batch_script.run_batch(["only-one-argument.csv"]) == 2
    assert "usage: DMIFBatch.py" in capsys.readouterr().err


def test_missing_dependency_is_one_line_and_exit_1(batch_script, monkeypatch, tmp_path, capsys):
    from DMIFPredictLib import dependencies

    monkeypatch.setattr(dependencies, "TORCH_REQUIREMENT", ">=99")
    code = batch_script.run_batch([str(tmp_path / "c.csv"), str(tmp_path / "m.pt"), str(tmp_path / "out")])
    line = _one_line(capsys.readouterr().err)
    assert code == 1 and "missing Python packages: torch>=99 (installed: " in line and "pip install" in line


def test_any_unexpected_exception_is_one_line_and_exit_1(batch_script, monkeypatch, tmp_path, capsys):
    import DMIFLib.mrml.batch as batch

    def broken(args):
        raise KeyError("an unexpected failure")

    monkeypatch.setattr(batch, "run", broken)
    code = batch_script.run_batch([str(tmp_path / "c.csv"), str(tmp_path / "m.pt"), str(tmp_path / "out")])
    assert code == 1 and "an unexpected failure" in _one_line(capsys.readouterr().err)
