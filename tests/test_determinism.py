"""A training repeats to the bit in a new process (fixed seeds, deterministic kernels): benchmarks/determinism.py."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "determinism.py"


@pytest.mark.slow
def test_tiny_training_in_two_processes_predicts_identically():
    out = subprocess.run([sys.executable, str(SCRIPT), "--images=96", "--size=24", "--epochs=2", "--pairs=2",
                          "--tiny", "--only-deterministic"], check=True, capture_output=True, text=True, timeout=600).stdout
    assert "deterministic: 2 processes, identical predictions: True" in out, out
