"""Distillation from the transfer baseline, scored on the validation split only (docs/tuning.md, "Distillation from
the transfer baseline"; the test split is dropped on load).

The teacher is the EfficientNet-Lite0 frozen head (the pipeline's pooled features, standardised, class-balanced
logistic regression at the grid's C of lowest validation loss); its probabilities for the training images are
cross-fitted (five folds). The default recipe (``params.yaml``'s ``train`` section) and ``distill`` (the same, trained
on 0.5 x one-hot + 0.5 x the teacher's probabilities) are trained for each seed, and each arm's mean over its seeds
is scored as the pipeline's seed ensemble predicts. Rows (the teacher at each C, every network, each arm's mean) go
to ``OUT/distill.csv``.

    python benchmarks/tune_distill.py --images data/preprocessed/brain_mri/images.npz \\
        --features results/brain_mri/features/efficientnet_lite0.npz --out results/tuning
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

ALPHA = 0.5  # weight of the true label in the training target (the rule's)


def _load(path: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of ``path``'s training and validation records (test records dropped as the file is opened)."""
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in ("splits", *keys) if k not in npz.files]
        if missing:
            raise SystemExit(f"{path}: no array {', '.join(missing)} (holds {', '.join(npz.files)})")
        keep = npz["splits"] != "test"
        return {k: npz[k][keep] for k in ("splits", *keys)}


def load_train_val(images_npz: str, features_npz: str) -> dict[str, np.ndarray]:
    """Images and teacher features of the training and validation records, aligned by record id; test records are
    dropped as each file is opened."""
    d = _load(images_npz, ("images", "labels", "ids"))
    with np.load(images_npz, allow_pickle=False) as npz:
        d["classes"] = npz["classes"]
    f = _load(features_npz, ("ids", "features", "labels"))
    for name, ids in ((images_npz, d["ids"]), (features_npz, f["ids"])):
        if len(set(ids.tolist())) != len(ids):
            raise SystemExit(f"{name}: record ids repeat")
    where = {rid: i for i, rid in enumerate(f["ids"].tolist())}
    missing = [rid for rid in d["ids"].tolist() if rid not in where]
    if missing:
        raise SystemExit(f"{features_npz}: no features for {len(missing)} records of {images_npz} (first: {missing[0]})")
    idx = np.array([where[rid] for rid in d["ids"].tolist()])
    if not np.array_equal(f["labels"][idx], d["labels"]) or not np.array_equal(f["splits"][idx], d["splits"]):
        raise SystemExit(f"{features_npz}: labels or splits differ from {images_npz}'s for the same record ids")
    d["features"] = f["features"][idx]
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="a preprocessed images.npz (its folder names the dataset)")
    ap.add_argument("--features", required=True, help="the features rule's efficientnet_lite0.npz of the same data")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (smoke tests)")
    ap.add_argument("--limit", type=int, default=None, help="first N training records only (smoke tests)")
    ap.add_argument("--out", default="results/tuning")
    args = ap.parse_args()

    import pandas as pd
    import yaml

    from cryptomed.models import (as_model_input, configure_backend, distill_targets, predict_proba, train,
                                  train_config)
    from cryptomed.provenance import cpu
    from cryptomed.transfer import cross_fitted_probs, fit_logistic_head
    from tune_cnn import score

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    base = params["train"]
    c_grid = params["baselines"]["transfer"]["efficientnet_lite0"]["C"]
    backend = configure_backend(base.get("backend"), deterministic=bool(base.get("deterministic", False)))
    import keras

    dataset = Path(args.images).parent.name
    d = load_train_val(args.images, args.features)
    tr, va = np.flatnonzero(d["splits"] == "train"), np.flatnonzero(d["splits"] == "val")
    if args.limit:
        tr = tr[: args.limit]
    n_classes = len(d["classes"])
    y_tr, y_va = d["labels"][tr], d["labels"][va]
    info = cpu()
    device = f"{info['logical_cpus']}-core {info.get('model_name') or info['machine']} CPU, {backend}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def write(row: dict) -> None:
        rows.append({"dataset": dataset, **row, "device": device})
        print(json.dumps(rows[-1]), flush=True)
        pd.DataFrame(rows).to_csv(out / "distill.csv", index=False)

    # the teacher: C of lowest validation loss, then cross-fitted probabilities for the training images
    t0 = time.perf_counter()
    per_c: dict = {}  # C -> fitted head, validation loss and accuracy (the pipeline's fit, every C kept)
    fit_logistic_head(d["features"][tr], y_tr, d["features"][va], y_va, c_grid, details=per_c)
    for c, fit in per_c.items():
        write({"arm": "teacher", "setting": f"C = {c:g}", **score(y_va, fit["model"].predict_proba(d["features"][va])),
               "epochs_run": None, "train_seconds": None})
    c_best = min(per_c, key=lambda c: per_c[c]["loss"])
    teacher = cross_fitted_probs(d["features"][tr], y_tr, c_best)
    teacher_seconds = time.perf_counter() - t0
    targets = distill_targets(y_tr, teacher, ALPHA)
    print(f"teacher: C = {c_best:g}, cross-fitted accuracy on training images "
          f"{float(np.mean(teacher.argmax(1) == y_tr)):.4f}, {teacher_seconds:.0f} s", flush=True)

    x_tr, x_va = as_model_input(d["images"][tr]), as_model_input(d["images"][va])
    mean_probs = {"default": [], "distill": []}
    seconds = {"default": 0.0, "distill": 0.0}
    for seed in args.seeds:  # both arms of a seed before the next seed
        for arm in ("default", "distill"):
            cfg_params = {**base, "seed": seed, **({"epochs": args.epochs} if args.epochs else {})}
            model, _, tinfo = train(x_tr, y_tr, x_va, y_va, n_classes, train_config(cfg_params), verbose=0,
                                    soft_targets=targets if arm == "distill" else None)
            probs, _ = predict_proba(model, x_va)
            mean_probs[arm].append(probs)
            seconds[arm] += tinfo["train_seconds"]
            write({"arm": arm, "setting": f"seed {seed}" + (f"; teacher C = {c_best:g}" if arm == "distill" else ""),
                   **score(y_va, probs), "epochs_run": tinfo["epochs_run"],
                   "train_seconds": round(tinfo["train_seconds"], 1)})
            keras.backend.clear_session()
    for arm in ("default", "distill"):
        probs = np.mean(mean_probs[arm], axis=0)
        extra = teacher_seconds if arm == "distill" else 0.0
        write({"arm": arm, "setting": "mean of seeds " + ", ".join(map(str, args.seeds)), **score(y_va, probs),
               "epochs_run": None, "train_seconds": round(seconds[arm] + extra, 1)})


if __name__ == "__main__":
    main()
