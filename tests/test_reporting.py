import numpy as np

from cryptomed.metrics import evaluate
from cryptomed.reporting import comparison_frame, comparison_markdown

PAPER = {"source": "test", "methods": {"aes_cnn": {"accuracy": 0.965}}, "aes_time_per_image_s": {"encrypt": 0.012}}


def metrics(method, title, acc_noise):
    rng = np.random.default_rng(acc_noise)
    y = rng.integers(0, 2, 100)
    pred = np.where(rng.random(100) < 0.8, y, 1 - y)
    p = np.stack([1 - pred * 0.8 - 0.1, pred * 0.8 + 0.1], 1)
    r = evaluate(y, p, ["N", "P"], "P", n_boot=20)
    r.update(method=method, method_title=title, timing_per_image_s={"inference": 0.001, "total": 0.001})
    return r


def test_table_has_papers_columns_and_one_row_per_method():
    frame = comparison_frame([metrics("aes_cnn", "Proposed", 1), metrics("plain_cnn", "Baseline", 2)], PAPER)
    assert list(frame["Method"]) == ["Proposed", "Baseline"]
    assert frame.loc[0, "Paper Accuracy"] == 0.965 and np.isnan(frame.loc[1, "Paper Accuracy"])
    md = comparison_markdown(frame, "Chest", PAPER)
    header = md.splitlines()[2]
    for col in ("Method", "Accuracy", "Precision", "Recall", "F1", "Processing time (s)", "Paper Accuracy"):
        assert f"| {col} |" in header or f" {col} |" in header
    assert "| Proposed | " in md and "0.965" in md and "—" in md
