import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from cryptomed.metrics import confusion, evaluate, metrics_table


def one_hot_probs(pred, n, conf=0.9):
    p = np.full((len(pred), n), (1 - conf) / (n - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_binary_uses_positive_class_and_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    score = np.clip(y * 0.6 + rng.normal(0.2, 0.3, 300), 0, 1)
    probs = np.stack([1 - score, score], axis=1)
    pred = probs.argmax(1)
    r = evaluate(y, probs, ["NORMAL", "PNEUMONIA"], "PNEUMONIA", n_boot=200)
    assert r["accuracy"]["value"] == pytest.approx((pred == y).mean())
    assert r["precision"]["value"] == pytest.approx(precision_score(y, pred))
    assert r["recall"]["value"] == pytest.approx(recall_score(y, pred))
    assert r["specificity"]["value"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert r["f1"]["value"] == pytest.approx(f1_score(y, pred))
    assert r["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, score))
    for k in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
        lo, hi = r[k]["ci95"]
        assert lo <= r[k]["value"] <= hi and hi - lo > 0


def test_multiclass_is_macro_averaged():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    pred = np.where(rng.random(400) < 0.7, y, rng.integers(0, 4, 400))
    r = evaluate(y, one_hot_probs(pred, 4), list("abcd"), None, n_boot=50)
    assert r["averaging"] == "macro over classes"
    assert r["f1"]["value"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert r["precision"]["value"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert np.array(r["confusion_matrix"]).sum() == 400
    assert set(r["per_class"]) == set("abcd")


def test_confusion_layout_rows_true_columns_predicted():
    cm = confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        evaluate(np.array([0, 1]), np.zeros((2, 3)), ["a", "b"], None, n_boot=0)


def test_metrics_table_rows():
    y = np.array([0, 1, 1, 0])
    r = evaluate(y, one_hot_probs(np.array([0, 1, 0, 0]), 2), ["N", "P"], "P", n_boot=20)
    r["timing_per_image_s"] = {"total": 0.01}
    rows = metrics_table(r)
    names = {(x["metric"], x["class"]) for x in rows}
    assert ("accuracy", "all") in names and ("recall", "P") in names and ("time_per_image_s_total", "all") in names
