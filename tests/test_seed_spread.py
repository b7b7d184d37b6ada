"""benchmarks/seed_spread.py: the default recipe over seeds, each seed alone or as the first of a seed ensemble."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_spread.py"


@pytest.mark.slow
def test_a_seed_ensemble_row_beside_its_members_rows(tmp_path):
    rng = np.random.default_rng(0)
    splits = np.array(["train"] * 48 + ["val"] * 16 + ["test"] * 16)
    labels = np.arange(len(splits)) % 2
    folder = tmp_path / "toy"
    folder.mkdir()
    np.savez(folder / "images.npz", images=rng.integers(0, 256, (len(splits), 64, 64), dtype=np.uint8),
             labels=labels, splits=splits, classes=np.array(["a", "b"]))
    subprocess.run([sys.executable, str(SCRIPT), str(folder / "images.npz"), "--members", "2", "--seeds", "7",
                    "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "out")],
                   check=True, capture_output=True, text=True, timeout=600)
    rows = pd.read_csv(tmp_path / "out" / "toy.csv")
    assert list(rows["members"]) == [1, 1, 2] and list(rows["seed"]) == [7, 8, 7]
    members, mean = rows.iloc[:2], rows.iloc[2]
    assert mean["train_seconds"] == pytest.approx(members["train_seconds"].sum(), abs=0.11)
    assert mean["epochs_run"] == members["epochs_run"].sum() == 2
    for split in ("val", "test"):
        assert {f"{split}_accuracy", f"{split}_roc_auc", f"{split}_loss", f"{split}_specificity"} <= set(rows.columns)
    assert (rows["threads"] == 1).all()
    assert members["val_loss"].nunique() == 2  # each member trained with its own seed
    for split in ("val", "test"):  # log loss is convex: the mean's loss is at most the members' mean loss
        assert mean[f"{split}_loss"] <= members[f"{split}_loss"].mean() + 1e-9


@pytest.mark.parametrize("args, message", [(["--members", "0"], "at least 1"),
                                           (["--members", "3", "--seeds", "42", "44"], "overlap")])
def test_bad_arguments_are_refused_before_anything_trains(tmp_path, args, message):
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none.npz"), *args, "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and message in res.stderr, res.stderr
