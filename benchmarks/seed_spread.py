"""Seed spread of the default configuration: the proposed CNN trained with several seeds, scored on validation
and, for reporting only (no choice depends on it), on the test split.

Trains on the preprocessed plaintext arrays: they are bit-identical to the decrypted container (the decrypt rule's
``lossless.json``), so this is the proposed method's training without the AES round trip. Writes one row per seed
to ``OUT/<dataset>.csv`` with the machine it ran on.

    python benchmarks/seed_spread.py data/preprocessed/chest_xray/images.npz --seeds 42 43 44 --out results/seeds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--out", default="results/seeds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adapt", action="store_true",
                    help="re-estimate batch-norm statistics on each split's images before scoring it (evaluate."
                         "adapt_batchnorm; labels unused)")
    args = ap.parse_args()
    import pandas as pd
    from tune_cnn import score, start_keras_benchmark

    params, backend, d, dataset, machine = start_keras_benchmark(args.npz, args.threads)
    import keras

    from cryptomed.adapt import predict_unadapted_and_adapted
    from cryptomed.models import as_model_input, predict_proba, train, train_config

    part = {s: d["splits"] == s for s in ("train", "val", "test")}
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        cfg = train_config({**params, "seed": seed})
        t0 = time.perf_counter()
        model, history, info = train(as_model_input(d["images"][part["train"]]), d["labels"][part["train"]],
                                     as_model_input(d["images"][part["val"]]), d["labels"][part["val"]],
                                     len(d["classes"]), cfg, verbose=0)
        row = {"dataset": dataset, "seed": seed, "epochs_run": info["epochs_run"], "best_epoch": info["best_epoch"],
               "train_seconds": round(time.perf_counter() - t0, 1)}
        for split in ("val", "test"):
            x, y = as_model_input(d["images"][part[split]]), d["labels"][part[split]]
            if args.adapt:  # the unadapted scores too (suffix _unadapted), from the same network: reported, never used
                unadapted, adapted, _ = predict_unadapted_and_adapted(model, x)
                views = {"_unadapted": unadapted, "": adapted}
            else:
                views = {"": predict_proba(model, x)[0]}
            for suffix, probs in views.items():
                row.update({k.replace("val_", f"{split}_") + suffix: v for k, v in score(y, probs).items()
                            if k != "val_loss"})
                if probs.shape[1] == 2:  # specificity of the negative class (label 0)
                    row[f"{split}_specificity{suffix}"] = float((probs[y == 0].argmax(1) == 0).mean())
        row.update({"adapt_batchnorm": args.adapt, "backend": backend, "keras": keras.__version__,
                    "machine": machine})
        rows.append(row)
        print(json.dumps(row), flush=True)
        pd.DataFrame(rows).to_csv(out / f"{dataset}.csv", index=False)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
