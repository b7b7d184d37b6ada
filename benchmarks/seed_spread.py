"""Seed spread of the default configuration: the proposed CNN trained with several seeds, scored on validation
and, for reporting only (no choice depends on it), on the test split.

Trains on the preprocessed plaintext arrays: they are bit-identical to the decrypted container (the decrypt rule's
``lossless.json``), so this is the proposed method's training without the AES round trip. Writes one row per seed
to ``OUT/<dataset>.csv`` with the machine it ran on.

    python benchmarks/seed_spread.py data/preprocessed/chest_xray/images.npz --seeds 42 43 44 --out results/seeds

With ``--members N`` each seed ``s`` stands for the default's seed ensemble (``train.members``): the networks of
seeds ``s`` .. ``s + N - 1`` are trained and scored alone (rows with ``members`` 1) and as the mean of their class
probabilities (a row with ``members`` N and ``seed`` s), as the pipeline's ``aes_cnn`` averages them:

    python benchmarks/seed_spread.py data/preprocessed/chest_xray/images.npz --members 3 --seeds 42 45 48 \
        --threads 1 --out results/seeds/members3

(The committed rows were made as three such processes side by side, ``--seeds 42``, ``45`` and ``48`` with
``--out`` folders of their own, their CSVs then concatenated in that order: docs/results.md.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--out", default="results/seeds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--members", type=int, default=1, help="networks per seed ensemble (seeds s .. s + N - 1)")
    ap.add_argument("--epochs", type=int, default=None, help="the epoch cap (default: params.yaml's; smoke tests)")
    ap.add_argument("--adapt", action="store_true",
                    help="re-estimate batch-norm statistics on each split's images before scoring it (evaluate."
                         "adapt_batchnorm; labels unused)")
    args = ap.parse_args()
    if args.members < 1 or (args.epochs is not None and args.epochs < 1):
        ap.error("--members and --epochs must be at least 1")
    groups = sorted(args.seeds)
    if any(b < a + args.members for a, b in zip(groups, groups[1:])):
        ap.error(f"the seed groups of {args.members} network(s) starting at {groups} overlap")
    import pandas as pd
    from tune_cnn import start_keras_benchmark

    params, backend, d, dataset, machine = start_keras_benchmark(args.npz, args.threads)
    import keras

    from cryptomed.adapt import predict_unadapted_and_adapted
    from cryptomed.models import as_model_input, predict_proba, train, train_config

    part = {s: d["splits"] == s for s in ("train", "val", "test")}
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for first in args.seeds:
        views_of = []  # per member: {(split, suffix): probabilities}
        for seed in range(first, first + args.members):
            cfg = train_config({**params, "seed": seed, **({"epochs": args.epochs} if args.epochs is not None else {})})
            t0 = time.perf_counter()
            model, history, info = train(as_model_input(d["images"][part["train"]]), d["labels"][part["train"]],
                                         as_model_input(d["images"][part["val"]]), d["labels"][part["val"]],
                                         len(d["classes"]), cfg, verbose=0)
            row = {"dataset": dataset, "seed": seed, "epochs_run": info["epochs_run"],
                   "best_epoch": info["best_epoch"], "train_seconds": round(time.perf_counter() - t0, 1)}
            views = {}
            for split in ("val", "test"):
                x = as_model_input(d["images"][part[split]])
                if args.adapt:  # the unadapted scores too (suffix _unadapted), from the same network: reported, never used
                    unadapted, adapted, _ = predict_unadapted_and_adapted(model, x)
                    views.update({(split, "_unadapted"): unadapted, (split, ""): adapted})
                else:
                    views[(split, "")] = predict_proba(model, x)[0]
            views_of.append(views)
            rows.append(_scored(row, views, part, d, args, backend, machine, members=1))
            keras.backend.clear_session()
        if args.members > 1:  # the ensemble: the mean of its members' probabilities (each member adapted alone)
            mean = {key: np.mean([v[key] for v in views_of], axis=0) for key in views_of[0]}
            member_rows = rows[-args.members:]
            row = {"dataset": dataset, "seed": first,
                   "epochs_run": sum(r["epochs_run"] for r in member_rows), "best_epoch": None,
                   "train_seconds": round(sum(r["train_seconds"] for r in member_rows), 1)}
            rows.append(_scored(row, mean, part, d, args, backend, machine, members=args.members))
        pd.DataFrame(rows).to_csv(out / f"{dataset}.csv", index=False)


def _scored(row: dict, views: dict, part: dict, d: dict, args, backend: str, machine: str, members: int) -> dict:
    """``row`` with the scores of every (split, suffix) view's probabilities, and the record's provenance."""
    import keras
    from tune_cnn import score

    for (split, suffix), probs in views.items():
        y = d["labels"][part[split]]
        row.update({k.replace("val_", f"{split}_") + suffix: v for k, v in score(y, probs).items()})
        if probs.shape[1] == 2:  # specificity of the negative class (label 0)
            row[f"{split}_specificity{suffix}"] = float((probs[y == 0].argmax(1) == 0).mean())
    row.update({"members": members, "adapt_batchnorm": args.adapt, "backend": backend, "keras": keras.__version__,
                "threads": args.threads, "machine": machine})
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
