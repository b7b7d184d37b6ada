"""A validation split that resembles the test images, chosen without test labels ("adversarial validation").

Kermany's chest X-ray validation split, carved at random from the official training split, is saturated (ROC-AUC
near 1 for every recipe) while the test split is shifted. This script measures that shift label-free and builds a
validation split from the training images that look most like the test images:

1. A domain classifier (histogram gradient boosting on 16x16 thumbnails of the preprocessed images) learns to tell
   official-training images (0) from test images (1). It never sees a class label. Its cross-validated ROC-AUC
   measures the shift (0.5 = none).
2. Each non-test image gets an out-of-fold test-likeness score. Per class, patients are ranked by their images'
   mean score, and the most test-like patients, about ``val_fraction`` of the class, become the validation split
   (a patient stays on one side).
3. It writes the train/validation records with the new split (no test record) for ``benchmarks/tune_cnn.py`` and
   prints, as a label-free check, how well the domain classifier still tells the new validation split from test.

    python benchmarks/shift_validation.py data/preprocessed/chest_xray/images.npz \
        data/preprocessed/chest_xray/split_manifest.csv tv_chest_testlike.npz
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images_npz")
    ap.add_argument("split_manifest")
    ap.add_argument("out_npz")
    ap.add_argument("--dataset", default="chest_xray")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--report", default=None, help="write the numbers as JSON here")
    ap.add_argument("--data-report", default=None,
                    help="the preprocess's data report (default results/DATASET/data_report.json): refused if its "
                         "validation split is already the test-like one")
    args = ap.parse_args()
    from cryptomed.data import patient_id
    from cryptomed.datasets import get_dataset
    from cryptomed.shift import domain_scores, thumbnails, validation_like_test

    spec = get_dataset(args.dataset)
    report_path = Path(args.data_report or f"results/{args.dataset}/data_report.json")
    if report_path.is_file() and json.loads(report_path.read_text()).get("validation", {}).get(
            "method", "random").startswith("test_like"):
        sys.exit(f"{report_path}: this preprocess already carved the test-like validation split, and the script "
                 "compares against the random one: preprocess with preprocess.test_like_validation: [] first")
    with np.load(args.images_npz, allow_pickle=False) as npz:
        d = {k: npz[k] for k in npz.files}
    with open(args.split_manifest, newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}
    is_test = d["splits"] == "test"
    tv = ~is_test
    # groups as the pipeline's (patients; chest X-ray has no near-copy pairs inside train), content-order keys
    groups = np.array([patient_id(spec, rows[i]["source_path"]) or f"id {i}" for i in d["ids"]], dtype=object)
    keys = np.array([rows[i]["pixel_sha256"] for i in d["ids"]])
    val, shift = validation_like_test(d["images"], is_test, d["labels"], groups, keys, args.val_fraction)
    feats = thumbnails(d["images"])

    # label-free check: can the domain classifier still tell validation from test? (old split vs new split)
    from sklearn.metrics import roc_auc_score

    old_val = d["splits"][tv] == "val"
    report = {"dataset": args.dataset, **shift,
              "n_val": int(val.sum()), "n_train": int((~val).sum()),
              "val_per_class": {str(c): int((val & (d["labels"][tv] == c)).sum()) for c in np.unique(d["labels"])},
              "overlap_with_old_val": int((val & old_val).sum())}
    for name, mask in (("old_val", old_val), ("new_val", val)):
        f = np.r_[feats[tv][mask], feats[is_test]]
        y = np.r_[np.zeros(mask.sum()), np.ones(is_test.sum())]
        _, a = domain_scores(f, y.astype(bool), seed=1)  # a new classifier: a consistency check
        report[f"domain_auc_{name}_vs_test"] = round(a, 4)
    print(json.dumps(report, indent=1))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    splits = np.where(val, "val", "train")
    np.savez_compressed(args.out_npz, images=d["images"][tv], labels=d["labels"][tv], splits=splits,
                        classes=d["classes"])


if __name__ == "__main__":
    main()
