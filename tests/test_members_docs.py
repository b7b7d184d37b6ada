"""The generated blocks of the seed-ensemble amendment (docs/tuning.md): the default run before against this one
(members-test), and the seed ensembles' spread (seeds-members)."""

import json
import shutil

import pandas as pd
import pytest

from cryptomed import docs


def _runs(tmp_path):
    from conftest import REPO

    snapshot = REPO / "results" / docs.MEMBERS_BASE / "chest_xray"
    root = tmp_path / "results"
    shutil.copytree(snapshot, root / docs.MEMBERS_BASE / "chest_xray")
    now = root / "chest_xray"
    for part in ("metrics", "predictions"):
        shutil.copytree(snapshot / part, now / part)
    shutil.copy(snapshot / "paired_tests.json", now)
    (now / "training").mkdir()
    old = json.loads((snapshot / "training/aes_cnn_training.json").read_text())
    members = [{"seed": s, "epochs_run": e, "best_epoch": b, "train_seconds": 100.0} for s, e, b in
               ((42, 15, 9), (43, 8, 2), (44, 20, 14))]
    info = {**old, "members": members, "threads": 1, "train_seconds": 300.0, "val_accuracy": 0.97, "val_loss": 0.07}
    (now / "training/aes_cnn_training.json").write_text(json.dumps(info))
    return root, now


def test_the_members_block_compares_both_cnns_with_the_run_before(tmp_path):
    root, now = _runs(tmp_path)
    preds = now / "predictions/shallow_cnn.csv"
    frame = pd.read_csv(preds, dtype={"id": str})
    wrong = frame.index[frame["predicted"] != frame["label"]][:3]
    frame.loc[wrong, "predicted"] = frame.loc[wrong, "label"]  # three the run before got wrong, now right
    frame.to_csv(preds, index=False)
    metrics = json.loads((now / "metrics/aes_cnn.json").read_text())
    metrics["accuracy"] = {"value": 0.8512, "ci95": [0.82, 0.88]}  # the new run differs: old → new in that order
    metrics["specificity"]["value"] = 0.75
    (now / "metrics/aes_cnn.json").write_text(json.dumps(metrics))
    text = docs.members_test(docs.Results(root), None)
    assert ("- chest_xray: one network (seed 42; 15 epochs, best 9), 2 thread(s), AMD EPYC without AVX-512 → mean of 3 "
            "networks (seeds 42, 43, 44; epochs run (best) 15 (9) / 8 (2) / 20 (14)), 1 thread(s), AMD EPYC without "
            "AVX-512; validation accuracy 0.962 → 0.970, loss 0.081 → 0.070; training 143 s → 300 s.") in text
    assert text.startswith("The proposed CNN, `results/history/8a463aa` → this run:")
    rows = {r.split(" | ")[1]: r for r in text.splitlines() if r.startswith("| chest_xray |")}
    assert set(rows) == {"proposed CNN", "shallow CNN", "transfer", "ensemble"}
    old_acc = json.loads((root / docs.MEMBERS_BASE / "chest_xray/metrics/aes_cnn.json").read_text())["accuracy"]["value"]
    assert rows["proposed CNN"].startswith(f"| chest_xray | proposed CNN | {docs.f3(old_acc)} → **0.851** [0.820, 0.880] |")
    assert "→ 0.750 |" in rows["proposed CNN"]
    assert "| (reference) | 1.000 (0 / 0) |" in rows["proposed CNN"]
    assert rows["shallow CNN"].endswith("| 0.250 (0 / 3) |")  # between the runs: only the new one right, on three
    assert rows["ensemble"].endswith("| 1.000 (0 / 0) |")


def test_the_members_block_needs_the_run_before(tmp_path):
    root, _ = _runs(tmp_path)
    shutil.rmtree(root / docs.MEMBERS_BASE)
    with pytest.raises(docs.DocsError, match="history/8a463aa/chest_xray/training/aes_cnn_training.json is missing: a "
                                             "snapshot"):
        docs.members_test(docs.Results(root), None)
    with pytest.raises(docs.DocsError, match="unknown comparison"):
        docs.members_test(docs.Results(root), "elsewhere")


def test_the_full_runs_table_and_its_columns(tmp_path):
    folder = tmp_path / "results/benchmarks"
    folder.mkdir(parents=True)
    row = {"commit": "abc1234", "what": "the default", "machine": "2-core CPU", "wall_minutes": 23.88, "measured": "time"}
    pd.DataFrame([row]).to_csv(folder / "full_runs.csv", index=False)
    assert "| `abc1234` | the default | 2-core CPU | 23.9 | — | — | — | time |" in docs.full_runs(
        docs.Results(tmp_path / "results"))
    pd.DataFrame([{**row, "cores": 2, "job_minutes": 35.8, "cpu_minutes": 29.4}]).to_csv(folder / "full_runs.csv",
                                                                                        index=False)
    assert "| 23.9 | 35.8 (75%) | 29.4 (62%) | — | time |" in docs.full_runs(docs.Results(tmp_path / "results"))
    pd.DataFrame([{**row, "cores": 2, "wall_minutes": 18.5, "job_minutes": 37.1}]).to_csv(folder / "full_runs.csv",
                                                                                         index=False)
    assert "| 18.5 | 37.1 (100%) |" in docs.full_runs(docs.Results(tmp_path / "results"))  # rounded minutes
    pd.DataFrame([{**row, "cores": 1, "job_minutes": 35.8}]).to_csv(folder / "full_runs.csv", index=False)
    with pytest.raises(docs.DocsError, match="row 2: 35.8 job-minutes on 1 cores in 23.88 minutes is impossible"):
        docs.full_runs(docs.Results(tmp_path / "results"))
    pd.DataFrame([{k: v for k, v in row.items() if k != "machine"}]).to_csv(folder / "full_runs.csv", index=False)
    with pytest.raises(docs.DocsError, match=r"columns \['machine'\] missing"):
        docs.full_runs(docs.Results(tmp_path / "results"))


def test_the_spread_of_seed_ensembles_beside_their_networks(tmp_path):
    rows = []
    for first in (42, 45):
        for seed in range(first, first + 3):
            rows.append({"dataset": "chest_xray", "seed": seed, "members": 1, "epochs_run": 10, "train_seconds": 100.0,
                         "val_accuracy": 0.95, "val_roc_auc": 0.99, "val_loss": 0.1, "test_accuracy": 0.80 + (seed - 42) / 100,
                         "test_roc_auc": 0.95, "test_specificity": 0.5, "backend": "tensorflow", "threads": 1,
                         "machine": "2-core AMD EPYC CPU"})
        rows.append({**rows[-1], "seed": first, "members": 3, "epochs_run": 30, "train_seconds": 300.0,
                     "test_accuracy": 0.85 if first == 42 else 0.87})
    folder = tmp_path / "results/seeds/members3"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "chest_xray.csv", index=False)
    text = docs.seeds_members(docs.Results(tmp_path / "results"), "3:chest_xray")
    assert "2 seed ensembles of 3 networks of the default recipe on chest_xray" in text and "1 thread(s)" in text
    assert "| 42–44 |" in text and "| 45–47 |" in text and "| 0.860 ± 0.014 |" in text
    assert "Test accuracy of the 6 networks alone: 0.800 to 0.850." in text
    pd.DataFrame(rows[:-1]).to_csv(folder / "chest_xray.csv", index=False)  # the second ensemble's row missing
    with pytest.raises(docs.DocsError, match=r"needs each ensemble of 3 \(seeds s .. s \+ 2\) beside its 3 networks"):
        docs.seeds_members(docs.Results(tmp_path / "results"), "3:chest_xray")
    pd.DataFrame([{**r, "threads": 2} if r["seed"] == 45 else r for r in rows]).to_csv(folder / "chest_xray.csv",
                                                                                         index=False)
    with pytest.raises(docs.DocsError, match="rows from more than one threads"):
        docs.seeds_members(docs.Results(tmp_path / "results"), "3:chest_xray")
