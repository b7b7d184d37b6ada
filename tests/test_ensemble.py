"""The ensemble baseline (cryptomed.ensemble): the mean of its members' test probabilities, nothing fitted."""

import numpy as np
import pandas as pd
import pytest

from cryptomed import CryptomedError
from cryptomed.ensemble import mean_of_predictions

CLASSES = ["normal", "pneumonia"]


def write(path, ids, labels, p1):
    p1 = np.asarray(p1, dtype=float)
    frame = pd.DataFrame({"id": ids, "label": labels, "predicted": (p1 > 0.5).astype(int), "p_normal": 1 - p1,
                          "p_pneumonia": p1})
    frame.to_csv(path, index=False)
    return path


def test_the_mean_of_the_members_probabilities_and_their_ids_and_labels(tmp_path):
    ids, labels = ["000007", "000012", "000031"], [0, 1, 1]
    a = write(tmp_path / "a.csv", ids, labels, [0.2, 0.9, 0.4])
    b = write(tmp_path / "b.csv", ids, labels, [0.6, 0.7, 0.8])
    got_ids, got_labels, probs = mean_of_predictions([a, b], CLASSES)
    assert list(got_ids) == ids  # read as text: leading zeros kept
    assert list(got_labels) == labels
    np.testing.assert_allclose(probs[:, 1], [0.4, 0.8, 0.6])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # the mean of two members that disagree can be right where one of them is wrong
    assert list(probs.argmax(1)) == [0, 1, 1]


@pytest.mark.parametrize("change,message", [
    (dict(ids=["000007", "000031", "000012"]), "ids, order"),
    (dict(ids=["000007", "000012"], labels=[0, 1]), "ids, order"),
    (dict(labels=[0, 1, 0]), "labels differ"),
])
def test_members_of_different_test_images_or_labels_are_refused_naming_the_file(tmp_path, change, message):
    ids, labels = ["000007", "000012", "000031"], [0, 1, 1]
    a = write(tmp_path / "a.csv", ids, labels, [0.2, 0.9, 0.4])
    other = {"ids": ids, "labels": labels, **change}
    b = write(tmp_path / "b.csv", other["ids"], other["labels"], [0.5] * len(other["ids"]))
    with pytest.raises(CryptomedError, match=message) as err:
        mean_of_predictions([a, b], CLASSES)
    assert "b.csv" in str(err.value)


def test_a_member_without_a_class_column_or_with_bad_probabilities_is_refused(tmp_path):
    ids, labels = ["1", "2"], [0, 1]
    a = write(tmp_path / "a.csv", ids, labels, [0.2, 0.9])
    with pytest.raises(CryptomedError, match="no column p_glioma"):
        mean_of_predictions([a], ["glioma", "notumor"])
    bad = write(tmp_path / "bad.csv", ids, labels, [np.nan, 0.5])
    with pytest.raises(CryptomedError, match="bad.csv: probabilities must be finite"):
        mean_of_predictions([a, bad], CLASSES)
