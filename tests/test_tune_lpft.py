"""LP-FT (docs/tuning.md): the linear probe folded into a softmax layer's weights, and the adoption rule."""

import numpy as np
import pandas as pd
import pytest

from cryptomed import docs
from cryptomed.transfer import linear_probe


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_folded_probe_is_a_softmax_layer_giving_the_probes_probabilities(n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = np.arange(240) % n_classes
    x = rng.normal(5.0, 3.0, (240, 6)) + y[:, None] * rng.normal(0, 2.0, 6)  # not standardised: the fold matters
    kernel, bias, c, loss = linear_probe(x[:160], y[:160], x[160:], y[160:], n_classes, [0.01, 1.0])
    assert kernel.shape == (6, n_classes) and bias.shape == (n_classes,) and c in (0.01, 1.0)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight="balanced",
                                                               random_state=0)).fit(x[:160], y[:160])
    logits = x[160:] @ kernel.astype(np.float64) + bias
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(softmax, probe.predict_proba(x[160:]), atol=1e-4)
    other = make_pipeline(StandardScaler(), LogisticRegression(C=1.01 - c, max_iter=3000, class_weight="balanced",
                                                               random_state=0)).fit(x[:160], y[:160])
    from sklearn.metrics import log_loss
    assert loss <= log_loss(y[160:], other.predict_proba(x[160:])) + 1e-9  # the C of lowest validation loss


def _rows(lpft, average, seconds=100.0, datasets=("d",)):
    rows = [{"dataset": ds, "arm": arm, "C": c, "val_loss": loss, "val_accuracy": acc,
             "train_seconds": seconds if arm != "frozen" else 1.0}
            for ds in datasets
            for arm, c, (loss, acc) in (("frozen", 0.1, (0.30, 0.90)), ("frozen", 1.0, (0.40, 0.95)),
                                        ("lpft", float("nan"), lpft), ("lpft_average", 0.1, average))]
    return pd.DataFrame(rows)


def test_the_lpft_rule_adopts_the_passing_candidate_of_lower_loss_within_the_budget():
    decide = docs.lpft_decisions
    assert decide(_rows((0.20, 0.90), (0.25, 0.91)))["d"][2] == "lpft"
    assert decide(_rows((0.20, 0.89), (0.25, 0.91)))["d"][2] == "lpft_average"  # lpft loses accuracy
    assert decide(_rows((0.20, 0.95), (0.31, 0.99)))["d"][2] == "lpft"  # the average's loss is not lower
    assert decide(_rows((0.30, 0.95), (0.35, 0.95)))["d"][2] is None
    frozen, judged, arm, over = decide(_rows((0.20, 0.90), (0.10, 0.90), seconds=300.0, datasets=("a", "b")))["a"]
    assert frozen["C"] == 0.1 and [ok for _, ok in judged] == [True, True] and arm is None and over == 600.0
    rows = _rows((0.20, 0.90), (0.10, 0.90), seconds=300.0, datasets=("a", "b"))
    rows.loc[(rows["dataset"] == "b") & (rows["arm"] != "frozen"), "val_loss"] = 0.5  # b fails: a's 300 s fit
    assert {ds: d[2] for ds, d in decide(rows).items()} == {"a": "lpft_average", "b": None}
    with pytest.raises(docs.DocsError, match="needs frozen, lpft and lpft_average rows"):
        decide(_rows((0.2, 0.9), (0.2, 0.9)).query("arm != 'lpft_average'"))


def test_the_lpft_block_prints_every_row_and_the_verdict(tmp_path):
    rows = _rows((0.20, 0.89), (0.25, 0.91), datasets=("a",)).assign(
        image_size=224, val_balanced_accuracy=0.9, val_roc_auc=0.99, epochs_run=7, best_epoch=3, device="cpu",
        recipe=lambda f: np.where(f["arm"] == "frozen", None, "learning_rate=0.0003 probe_C=0.01"))
    (tmp_path / "tuning").mkdir()
    rows.to_csv(tmp_path / "tuning/lpft.csv", index=False)
    block = docs.tuning_lpft(docs.Results(tmp_path), None)
    assert block.count("\n| a | 224 |") == 4 and "7 epochs (best 3), 100 s; probe C = 0.01" in block
    assert "mean with frozen C = 0.1" in block and "| **0.300** |" in block and "| 0.400 |" in block
    assert ("lpft 0.200, 0.890 (does not pass); lpft_average 0.250, 0.910 (passes): **adopted: lpft_average**."
            in block)


def test_the_lpft_test_block_reads_the_pipelines_record_and_compares_with_the_run_before(tmp_path):
    """The block reads the run that introduced LP-FT (results/history/8a463aa), whatever later runs wrote."""
    import json
    import shutil

    from conftest import REPO

    snapshot = REPO / "results/finetune_cpu/chest_xray/default_run"
    root = tmp_path / "results"
    lpft_run = f"{docs.LPFT_RUN}/chest_xray"  # the run that introduced LP-FT
    for run in ("finetune_cpu/chest_xray/default_run", lpft_run):
        shutil.copytree(snapshot, root / run)
    path = root / lpft_run / "metrics/efficientnet_lite0_transfer.json"
    metrics = json.loads(path.read_text())
    record = {"probe_C": 0.1, "epochs_run": 9, "best_epoch": 5, "train_seconds": 173.4, "chosen": "mean",
              "frozen_head_C_lowest_loss": 0.1, "validation_loss_frozen_head": 0.0794, "validation_loss_lpft_top": 0.098,
              "validation_loss_mean": 0.0774, "validation_accuracy_frozen_head": 0.9656,
              "validation_accuracy_lpft_top": 0.9618, "validation_accuracy_mean": 0.9656,
              "provenance": {"cpu": {"logical_cpus": 2, "model_name": "AMD EPYC"}, "backend": "tensorflow", "threads": 2}}
    metrics["transfer"]["lpft"] = record
    metrics["accuracy"] = {"value": 0.8512, "ci95": [0.82, 0.88]}
    path.write_text(json.dumps(metrics))
    preds = root / lpft_run / "predictions/efficientnet_lite0_transfer.csv"
    frame = pd.read_csv(preds, dtype={"id": str})
    wrong = frame.index[frame["predicted"] != frame["label"]][:4]
    frame.loc[wrong, "predicted"] = frame.loc[wrong, "label"]  # four the run before got wrong, now right
    frame.to_csv(preds, index=False)
    text = docs.lpft_test(docs.Results(root), None)
    assert ("probe C = 0.1) ran 9 epochs (best 5) in 173 s; validation loss 0.079 (frozen head, C = 0.1), 0.098 "
            "(LP-FT top), 0.077 (their mean); accuracy 0.966, 0.962, 0.966: **mean kept**") in text
    row = next(r for r in text.splitlines() if r.startswith("| chest_xray | transfer |"))
    old = json.loads((snapshot / "metrics/efficientnet_lite0_transfer.json").read_text())["accuracy"]["value"]
    assert row.startswith(f"| chest_xray | transfer | {docs.f3(old)} → **0.851** [0.820, 0.880] |")
    assert row.endswith("| 0.125 (0 / 4) |")  # between the runs: only the new one right, on four
    record["chosen"] = "frozen_head"
    path.write_text(json.dumps(metrics))
    assert "**frozen head kept**" in docs.lpft_test(docs.Results(root), None)
    assert "| chest_xray |" not in docs.lpft_test(docs.Results(root), None)  # no test rows for an unchanged row
    del metrics["transfer"]["lpft"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(docs.DocsError, match="no transfer metrics with an LP-FT record"):
        docs.lpft_test(docs.Results(root), None)


def test_the_pipeline_keeps_the_mean_only_when_it_beats_the_head_at_its_c_of_lowest_loss(tmp_path):
    """_choose_lpft_average: the head at the C of lowest validation loss (not the baseline's C) averaged with the
    LP-FT top; kept only with lower loss and accuracy not lower; LP-FT arrays that do not fit are an error."""
    import json

    from cryptomed import CryptomedError
    from cryptomed.metrics import mean_log_loss
    from cryptomed.pipeline import _choose_lpft_average
    from cryptomed.transfer import logistic_head

    rng = np.random.default_rng(0)
    y = np.arange(90) % 2
    f = rng.normal(0, 1, (90, 4)) + y[:, None] * 0.8
    split = {"train": np.arange(90) < 50, "val": (np.arange(90) >= 50) & (np.arange(90) < 70), "test": np.arange(90) >= 70}
    per_c = {}
    for c in (0.001, 1.0):
        head = logistic_head(c).fit(f[split["train"]], y[split["train"]])
        p = head.predict_proba(f[split["val"]])
        per_c[c] = {"model": head, "loss": mean_log_loss(y[split["val"]], p),
                    "accuracy": float(np.mean(p.argmax(1) == y[split["val"]]))}
    best = min(per_c, key=lambda c: per_c[c]["loss"])
    info = {"recipe": {"after_stage": 6}, "probe_C": 1.0, "probe_val_loss": 0.5, "epochs_run": 2, "best_epoch": 1,
            "train_seconds": 1.0, "history": {}, "provenance": {}}
    truth = np.eye(2)[y] * 0.98 + 0.01  # an LP-FT top that is right everywhere: the mean beats the head
    data = {"features": f, "labels": y, "lpft_probabilities": truth, "lpft_seconds_per_image": np.float64(0.1),
            "lpft_info": np.array(json.dumps(info))}
    out = _choose_lpft_average("f.npz", data, per_c, split)
    assert out["record"]["frozen_head_C_lowest_loss"] == best and out["record"]["chosen"] == "mean"
    head_test = per_c[best]["model"].predict_proba(f[split["test"]])
    np.testing.assert_allclose(out["probs"], (head_test + truth[split["test"]]) / 2)
    wrong = {**data, "lpft_probabilities": truth[:, ::-1].copy()}  # a top that is wrong everywhere
    out = _choose_lpft_average("f.npz", wrong, per_c, split)
    assert out["probs"] is None and out["record"]["chosen"] == "frozen_head"
    with pytest.raises(CryptomedError, match=r"f.npz: LP-FT probabilities of shape \(89, 2\) for 90 records"):
        _choose_lpft_average("f.npz", {**data, "lpft_probabilities": truth[1:]}, per_c, split)
    with pytest.raises(CryptomedError, match="f.npz: .*no lpft_info"):
        _choose_lpft_average("f.npz", {k: v for k, v in data.items() if k != "lpft_info"}, per_c, split)
