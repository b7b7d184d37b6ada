"""benchmarks/threads.py: two trainings one after the other with 2 threads each, then side by side with 1 each."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "threads.py"


@pytest.mark.slow
def test_both_arrangements_train_both_networks_and_print_the_ratio(tmp_path):
    rng = np.random.default_rng(0)
    splits = np.array(["train"] * 48 + ["val"] * 16 + ["test"] * 8)
    labels = rng.integers(0, 2, len(splits))
    np.savez(tmp_path / "images.npz", images=rng.integers(0, 256, (len(splits), 64, 64), dtype=np.uint8),
             labels=labels, splits=splits)
    out = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "images.npz"), "--epochs", "1"],
                         check=True, capture_output=True, text=True, timeout=600).stdout
    for network in ("proposed", "shallow"):
        assert f"{network:9s} 2 thread(s):" in out and f"{network:9s} 1 thread(s):" in out, out
    assert "ratio (side by side / one after the other): " in out, out


@pytest.mark.slow
def test_a_failed_training_process_is_a_clear_error(tmp_path):
    (tmp_path / "images.npz").write_bytes(b"not an npz")
    res = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "images.npz"), "--epochs", "1"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "a training process failed: the proposed CNN" in res.stderr, res.stderr
