"""Validation check of label-free test-time batch-norm adaptation (AdaBN, cryptomed.adapt): the rule in
docs/tuning.md ("Test-time batch-norm adaptation"). Never reads the test split.

For each network -- a saved one (``--model``: the full run's ``aes_cnn``, seed 42) and the default recipe trained
here with each of ``--seeds`` -- scores the validation split without and with batch-norm statistics adapted to the
validation images (their labels unused), one row each, to ``OUT/<dataset>.csv`` with the machine it ran on.

    python benchmarks/adapt_validation.py data/preprocessed/chest_xray/images.npz \
        --model results/chest_xray/models/aes_cnn.keras --seeds 43 --out results/tuning/adapt
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


def rows_for(model, name: str, seed: int, x, y, extra: dict) -> list[dict]:
    from cryptomed.adapt import predict_unadapted_and_adapted
    from tune_cnn import score

    unadapted, adapted, info = predict_unadapted_and_adapted(model, x)
    rows = []
    for is_adapted, probs in ((False, unadapted), (True, adapted)):
        row = {"network": name, "seed": seed, "adapted": is_adapted, **score(y, probs)}
        if probs.shape[1] == 2:  # specificity of the negative class (label 0)
            row["val_specificity"] = float((probs[y == 0].argmax(1) == 0).mean())
        rows.append({**row, "adapt_seconds": round(info["seconds"], 2) if is_adapted else 0.0, **extra})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("--model", help="a saved network trained on these arrays (scored as seed --model-seed)")
    ap.add_argument("--model-seed", type=int, default=42)
    ap.add_argument("--seeds", nargs="*", type=int, default=[43], help="default recipe trained here with these seeds")
    ap.add_argument("--out", default="results/tuning/adapt")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import pandas as pd
    from tune_cnn import start_keras_benchmark

    params, backend, d, dataset, machine = start_keras_benchmark(args.npz, args.threads)
    import keras

    from cryptomed.models import as_model_input, load_model, train, train_config

    tr, va = d["splits"] == "train", d["splits"] == "val"  # the test split is never touched
    x_va, y_va = as_model_input(d["images"][va]), d["labels"][va]
    extra = {"dataset": dataset, "n_val": int(va.sum()), "backend": backend, "keras": keras.__version__,
             "machine": machine}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.model:
        rows += rows_for(load_model(args.model), Path(args.model).name, args.model_seed, x_va, y_va, extra)
        print(json.dumps(rows[-2:]), flush=True)
    for seed in args.seeds:
        t0 = time.perf_counter()
        model, _, info = train(as_model_input(d["images"][tr]), d["labels"][tr], x_va, y_va, len(d["classes"]),
                               train_config({**params, "seed": seed}), verbose=0)
        rows += rows_for(model, "default recipe", seed, x_va, y_va,
                         {**extra, "epochs_run": info["epochs_run"], "train_seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-2:]), flush=True)
        keras.backend.clear_session()
    pd.DataFrame(rows).to_csv(out / f"{dataset}.csv", index=False)


if __name__ == "__main__":
    main()
