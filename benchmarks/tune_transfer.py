"""Head and feature search for the EfficientNet-Lite0 transfer baseline on the validation split only.

The test split is dropped as soon as the arrays are loaded. For each (input size, feature taps) the frozen
ImageNet features of the train and validation images are computed once; each head is fitted on train and scored
on validation. One row per (size, taps, head) goes to ``OUT/transfer.csv`` so the choice in ``docs/tuning.md`` can
be audited.

    python benchmarks/tune_transfer.py --data chest_xray=data/preprocessed/chest_xray/images.npz \\
        --weights results/pretrained/efficientnet_lite0_imagenet.weights.h5 --sizes 128 --out results/tuning
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from tune_cnn import log_row, merge_rows, score, train_val  # noqa: E402  (the same data and validation scores as the CNN search)

TAPS = {
    "head": ("head",),
    "stages567_head": ("stage5", "stage6", "stage7", "head"),
    "stages34567_head": ("stage3", "stage4", "stage5", "stage6", "stage7", "head"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="DATASET=images.npz (its test split is never used)")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--sizes", nargs="+", type=int, default=[128])
    ap.add_argument("--taps", nargs="+", default=list(TAPS), choices=list(TAPS))
    ap.add_argument("--C", nargs="+", type=float, default=[0.001, 0.01, 0.1, 1.0])
    ap.add_argument("--out", default="results/tuning")
    ap.add_argument("--device", default="2-core CPU, TensorFlow", help="machine description for the record")
    args = ap.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cryptomed.efficientnet_lite import tap_width
    from cryptomed.transfer import efficientnet_features

    out = Path(args.out) / "transfer.csv"
    rows = []
    for item in args.data:
        dataset, path = item.split("=", 1)
        d = train_val(path)
        images, labels, splits = d["images"], d["labels"], d["splits"]
        tr, va = splits == "train", splits == "val"
        every = tuple(dict.fromkeys(t for name in args.taps for t in TAPS[name]))
        for size in args.sizes:
            allfeats, seconds = efficientnet_features(args.weights, images, size, taps=every)
            start = np.cumsum([0] + [tap_width((t,)) for t in every])
            columns = {t: slice(start[i], start[i + 1]) for i, t in enumerate(every)}
            for name in args.taps:
                feats = np.concatenate([allfeats[:, columns[t]] for t in TAPS[name]], axis=1)
                for c in args.C:
                    t0 = time.perf_counter()
                    head = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000,
                                                                              class_weight="balanced", random_state=0))
                    head.fit(feats[tr], labels[tr])
                    row = {"dataset": dataset, "image_size": size, "taps": name, "features": feats.shape[1],
                           "head": "logistic_regression", "C": c,
                           **score(labels[va], head.predict_proba(feats[va])),
                           "feature_images_per_second": len(feats) / seconds,
                           "head_seconds": time.perf_counter() - t0, "device": args.device}
                    rows.append(row)
                    log_row(row)
    merge_rows(out, rows, ["dataset", "image_size", "taps", "head", "C"])


if __name__ == "__main__":
    main()
