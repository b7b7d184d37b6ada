"""benchmarks/tune_distill.py's loader: test records never loaded, features aligned to images by record id."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tune_distill import load_train_val  # noqa: E402


def _files(tmp_path, feature_order, feature_labels=None, drop=None):
    ids = np.array([f"{i:06d}" for i in range(6)])
    labels = np.array([0, 1, 0, 1, 0, 1])
    splits = np.array(["train", "train", "val", "test", "train", "test"])
    np.savez(tmp_path / "images.npz", images=np.arange(6)[:, None, None] * np.ones((6, 4, 4), "uint8"), labels=labels,
             splits=splits, ids=ids, classes=np.array(["a", "b"]))
    order = [i for i in feature_order if i != drop]
    np.savez(tmp_path / "features.npz", ids=ids[order], splits=splits[order],
             labels=(labels if feature_labels is None else feature_labels)[order],
             features=np.arange(6, dtype="float32")[order, None] * 10)
    return str(tmp_path / "images.npz"), str(tmp_path / "features.npz")


def test_features_follow_the_images_by_id_and_test_records_are_dropped(tmp_path):
    d = load_train_val(*_files(tmp_path, [5, 4, 3, 2, 1, 0]))
    assert d["ids"].tolist() == ["000000", "000001", "000002", "000004"] and "test" not in d["splits"]
    np.testing.assert_array_equal(d["features"][:, 0], [0, 10, 20, 40])  # record i's features, whatever the order
    np.testing.assert_array_equal(d["images"][:, 0, 0], [0, 1, 2, 4])


def test_missing_features_or_other_labels_are_refused_naming_the_file(tmp_path):
    with pytest.raises(SystemExit, match="features.npz: no features for 1 records.*first: 000004"):
        load_train_val(*_files(tmp_path, range(6), drop=4))
    with pytest.raises(SystemExit, match="features.npz: labels or splits differ"):
        load_train_val(*_files(tmp_path, range(6), feature_labels=np.array([1, 1, 0, 1, 0, 1])))
    load_train_val(*_files(tmp_path, range(6), drop=3))  # a test record's features are not needed


def test_a_file_without_ids_or_with_repeated_ids_is_refused(tmp_path):
    images, features = _files(tmp_path, range(6))
    with np.load(features) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(features, **{k: v for k, v in arrays.items() if k != "ids"})
    with pytest.raises(SystemExit, match="features.npz: no array ids"):
        load_train_val(images, features)
    arrays["ids"] = np.array(["000000"] * 6)
    np.savez(features, **arrays)
    with pytest.raises(SystemExit, match="features.npz: record ids repeat"):
        load_train_val(images, features)
