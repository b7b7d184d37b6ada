"""Validation check of an ensemble of the proposed CNN and the EfficientNet-Lite0 transfer baseline.

The ensemble is fixed in advance: the mean of the two methods' class probabilities, equal weights, nothing fitted
(docs/tuning.md states the rule that decides whether it becomes a method). This script scores the CNN, the transfer
head and their mean on the validation split only; the test split is dropped as soon as the arrays are loaded.
The CNN is a trained model of a full run (its epochs were chosen on validation, so its validation scores are
optimistic); the transfer head is fitted here as the pipeline fits it (C by validation balanced accuracy, so its
scores are optimistic too). One row per (dataset, method) goes to ``OUT/ensemble.csv``.

    python benchmarks/tune_ensemble.py --data brain_mri=data/preprocessed/brain_mri/images.npz \\
        --model brain_mri=results/brain_mri/models/aes_cnn.keras \\
        --weights results/pretrained/efficientnet_lite0_imagenet.weights.h5 --out results/tuning
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from tune_cnn import score, train_val  # noqa: E402  (the same data and validation scores as the other searches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="DATASET=images.npz (its test split is never used)")
    ap.add_argument("--model", nargs="+", required=True, help="DATASET=aes_cnn.keras")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--config", default=str(REPO / "params.yaml"), help="taps, sizes and C grid of the baseline")
    ap.add_argument("--out", default="results/tuning")
    ap.add_argument("--device", default="2-core CPU, TensorFlow", help="machine description for the record")
    args = ap.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import pandas as pd

    from cryptomed.models import as_model_input, configure_backend, load_model, predict_proba
    from cryptomed.transfer import efficientnet_features, fit_logistic_head

    configure_backend("tensorflow", os.cpu_count())
    cfg = yaml.safe_load(Path(args.config).read_text())["baselines"]["transfer"]["efficientnet_lite0"]
    models = dict(item.split("=", 1) for item in args.model)
    rows = []
    for item in args.data:
        dataset, path = item.split("=", 1)
        d = train_val(path)
        images, labels, splits = d["images"], d["labels"], d["splits"]
        tr, va = splits == "train", splits == "val"
        t0 = time.perf_counter()
        cnn, _ = predict_proba(load_model(models[dataset]), as_model_input(images[va]))
        cnn_s = time.perf_counter() - t0
        size = cfg.get("image_size_by_dataset", {}).get(dataset, cfg["image_size"])
        feats, seconds = efficientnet_features(args.weights, images, size, taps=tuple(cfg["taps"]))
        head, c, _ = fit_logistic_head(feats[tr], labels[tr], feats[va], labels[va], cfg["C"], seed=cfg["seed"])
        transfer = head.predict_proba(feats[va])
        probs = {"aes_cnn": cnn, "efficientnet_lite0_transfer": transfer, "ensemble_mean": (cnn + transfer) / 2}
        for method, p in probs.items():
            row = {"dataset": dataset, "method": method, **score(labels[va], p), "val_images": int(va.sum()),
                   "transfer_px": size, "transfer_C": c, "seconds": {"aes_cnn": cnn_s, "efficientnet_lite0_transfer": seconds}.get(method, cnn_s + seconds),
                   "device": args.device}
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    out = Path(args.out) / "ensemble.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main()
