"""benchmarks/subgroups.py: test accuracy per class and image source, with the training images each group kept and
lost as copies of test images."""

import sys

import pandas as pd
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from subgroups import subgroups  # noqa: E402


@pytest.fixture
def files(tmp_path):
    mirror = pd.DataFrame({"path": [f"m/{i}.png" for i in range(8)],
                           "source_width": [512, 512, 300, 300, 512, 300, 512, 300],
                           "source_height": [512, 512, 250, 300, 512, 300, 512, 300]})
    records = pd.DataFrame({"id": [f"{i:06d}" for i in range(6)],
                            "split": ["test", "test", "test", "train", "val", "train"],
                            "class_name": ["a", "a", "a", "a", "a", "b"], "label": [0, 0, 0, 0, 0, 1],
                            "source_path": [f"m/{i}.png" for i in range(6)]})
    dropped = pd.DataFrame({"source_path": ["m/6.png", "m/7.png"], "class_name": ["a", "a"],
                            "reason": ["copy_of_test", "duplicate_within_train"]})
    paths = {name: tmp_path / f"{name}.csv" for name in ("mirror", "records", "dropped")}
    for name, frame in (("mirror", mirror), ("records", records), ("dropped", dropped)):
        frame.to_csv(paths[name], index=False)
    return paths


def test_counts_and_accuracy_per_class_and_source(files):
    pred = pd.DataFrame({"id": ["000000", "000001", "000002"], "predicted": [0, 1, 1]})
    frame = subgroups(files["records"], files["dropped"], files["mirror"], {"m": pred}).set_index(
        ["class_name", "source"])
    assert frame.loc[("a", "512×512 original"), ["test_images", "train_val_kept", "dropped_as_copy_of_test"]].tolist() \
        == [2, 1, 1]  # the within-train duplicate is not counted
    assert frame.loc[("a", "512×512 original"), "accuracy_m"] == 0.5
    assert frame.loc[("a", "other size"), ["test_images", "train_val_kept", "accuracy_m"]].tolist() == [1, 1, 0.0]
    assert ("b", "other size") not in frame.index  # groups without test images have no row


def test_refuses_missing_sizes_unknown_files_and_foreign_predictions(files, tmp_path):
    pred = pd.DataFrame({"id": ["000000", "000001", "000002"], "predicted": [0, 0, 0]})
    pd.DataFrame({"path": ["m/0.png"]}).to_csv(tmp_path / "bare.csv", index=False)
    with pytest.raises(SystemExit, match="source_width"):
        subgroups(files["records"], files["dropped"], tmp_path / "bare.csv", {"m": pred})
    pd.read_csv(files["mirror"]).iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(SystemExit, match="m/0.png"):
        subgroups(files["records"], files["dropped"], tmp_path / "short.csv", {"m": pred})
    with pytest.raises(SystemExit, match="not for this run's test records"):
        subgroups(files["records"], files["dropped"], files["mirror"], {"m": pred.iloc[:2]})
