"""Recipe search for the deep CNN on the validation split only (the test split is never loaded).

Each candidate is the ``train`` section of params.yaml, reset to the recipe before ``J_stride2_long``
(``BEFORE_J``), with a few keys overridden; it is trained on the
training split and scored on the (leak-free, patient-grouped) validation split. Results go, one row per run, to
``OUT/tuning.csv`` (config, validation accuracy / balanced accuracy / ROC-AUC / loss, seconds, device), so the
choice can be audited in ``docs/tuning.md``.

    python benchmarks/tune_cnn.py --data chest_xray=tv/chest_xray.npz brain_mri=tv/brain_mri.npz --out OUT

``--export`` writes the train/validation part of preprocessed ``images.npz`` files (no test records) for a
machine that should not hold the test split:

    python benchmarks/tune_cnn.py --export data/preprocessed/chest_xray/images.npz tv/chest_xray.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# Candidates are edits of this fixed recipe, the default before J_stride2_long became params.yaml's (so a rerun of a
# candidate trains what its rows in results/tuning/ recorded, whatever params.yaml holds now).
BEFORE_J = {"epochs": 15, "patience": 3, "model.stem_stride": 1}
STRONG = {"schedule": "cosine", "warmup_epochs": 2, "optimizer": "adamw", "weight_decay": 1e-4,
          "model.augment": "strong"}
CANDIDATES = {
    "A_current": {},
    "B_cosine_strong_30": {**STRONG, "epochs": 30},
    "C_B_ls_ema": {**STRONG, "epochs": 30, "label_smoothing": 0.1, "ema": 0.99},
    "D_C_stride2": {**STRONG, "epochs": 30, "label_smoothing": 0.1, "ema": 0.99, "model.stem_stride": 2},
    "E_C_45ep": {**STRONG, "epochs": 45, "label_smoothing": 0.1, "ema": 0.99},
    "F_C_basic_aug": {**STRONG, "epochs": 30, "label_smoothing": 0.1, "ema": 0.99, "model.augment": "basic"},
    "G_C_no_ema": {**STRONG, "epochs": 30, "label_smoothing": 0.1},
    # for 128-px inputs: the default recipe with a strided first convolution (about the 64-px default's compute)
    "H_A_stride2": {"model.stem_stride": 2},
    # the strided default trained longer: seeds 42 and 43 of H_A_stride2 hit the 15-epoch cap, seed 44 stopped early
    "J_stride2_long": {"model.stem_stride": 2, "epochs": 40, "patience": 6},
    # J with the strong augmentation (rotation, zoom, shift, contrast, brightness): aimed at an acquisition shift
    "K_J_strong": {"model.stem_stride": 2, "epochs": 40, "patience": 6, "model.augment": "strong"},
    # J with the width zoomed independently of the height (1 +- 0.2): the chest X-ray mirror's films were squashed
    # to squares from originals of every aspect ratio
    "L_J_aspect": {"model.stem_stride": 2, "epochs": 40, "patience": 6, "model.aspect_jitter": 0.2},
}


def train_val(path: str) -> dict[str, np.ndarray]:
    """images, labels, splits and classes of a preprocessed ``images.npz`` with its test split dropped on load."""
    with np.load(path, allow_pickle=False) as npz:
        keep = npz["splits"] != "test"
        return {"images": npz["images"][keep], "labels": npz["labels"][keep], "splits": npz["splits"][keep],
                "classes": npz["classes"]}


def export(src: str, dst: str) -> None:
    np.savez_compressed(dst, **train_val(src))


def apply(base: dict, override: dict) -> dict:
    cfg = json.loads(json.dumps(base))
    for key, value in override.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def score(y, probs) -> dict:
    from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score

    pred = probs.argmax(1)
    auc = roc_auc_score(y, probs[:, 1]) if probs.shape[1] == 2 else roc_auc_score(y, probs, multi_class="ovr")
    return {"val_accuracy": float((pred == y).mean()), "val_balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "val_roc_auc": float(auc), "val_loss": float(log_loss(y, np.clip(probs, 1e-7, 1), labels=range(probs.shape[1])))}


def start_keras_benchmark(npz_path: str, threads: int):
    """The start of a benchmark that trains or scores the default recipe: the ``train`` section of params.yaml, the
    backend configured before keras is imported, the arrays of ``npz_path`` (its folder names the dataset) and the
    machine for the record. Returns (params, backend, arrays, dataset, machine)."""
    import yaml

    from cryptomed.models import configure_backend
    from cryptomed.provenance import cpu

    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    backend = configure_backend(params.get("backend"), threads)
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    c = cpu()
    machine = f"{c['logical_cpus']}-core {c.get('model_name') or c['machine']} CPU"
    return params, backend, arrays, Path(npz_path).parent.name, machine


def log_row(row: dict) -> None:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)


def merge_rows(path: Path, rows: list[dict], key: list[str]):
    """Write ``rows`` to the CSV ``path``, replacing the rows already there with the same ``key`` values (a search
    rerun for one dataset keeps the others' record); returns the merged frame."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if path.exists():
        old = pd.read_csv(path)
        old = old[~old.set_index(key).index.isin(frame.set_index(key).index)]
        frame = pd.concat([old, frame], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", nargs=2, metavar=("IMAGES_NPZ", "OUT_NPZ"))
    ap.add_argument("--data", nargs="+", metavar="DATASET=NPZ")
    ap.add_argument("--out", default="results/tuning")
    ap.add_argument("--candidates", nargs="*", default=list(CANDIDATES))
    ap.add_argument("--seeds", nargs="*", type=int, default=[42])
    ap.add_argument("--limit", type=int, default=None, help="first N records only (smoke tests)")
    ap.add_argument("--epochs", type=int, default=None, help="override every candidate's epochs (smoke tests)")
    ap.add_argument("--budget-s", type=float, default=480, help="stop starting new runs after this many seconds")
    ap.add_argument("--save-models", default=None, metavar="DIR",
                    help="also save each trained model as DIR/DATASET_PX_CANDIDATE_SEED.keras (seed ensembles)")
    args = ap.parse_args()
    if args.export:
        export(*args.export)
        return
    import yaml

    from cryptomed.models import as_model_input, configure_backend, predict_proba, train, train_config

    base = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    backend = configure_backend(base.get("backend"), deterministic=bool(base.get("deterministic", False)))
    import keras

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from cryptomed.provenance import cpu

    info = cpu()
    device = os.environ.get("TUNE_DEVICE") or (f"{info['logical_cpus']}-core {info.get('model_name') or info['machine']} "
                                               f"CPU, {backend}")
    import pandas as pd

    # earlier rows stay in the record (a rerun of the same dataset, size, candidate and seed replaces its row)
    previous = pd.read_csv(out / "tuning.csv") if (out / "tuning.csv").is_file() else pd.DataFrame()
    if len(previous) and "image_size" not in previous:  # rows from before the column existed: all at 64 px
        previous.insert(1, "image_size", 64)
    rows, t_start = [], time.perf_counter()
    histories = json.loads((out / "histories.json").read_text()) if (out / "histories.json").is_file() else {}
    data = {}
    for item in args.data:
        dataset, path = item.split("=", 1)
        with np.load(path, allow_pickle=False) as npz:
            data[dataset] = {k: npz[k][: args.limit] if npz[k].ndim and k != "classes" else npz[k] for k in npz.files}
        assert "test" not in set(data[dataset]["splits"].tolist()), "the tuning data must not hold test records"
    for seed in args.seeds:  # every candidate once before any is repeated
        for dataset, d in data.items():
            tr, va = d["splits"] == "train", d["splits"] == "val"
            n_classes = len(d["classes"])
            for name in args.candidates:
                if time.perf_counter() - t_start > args.budget_s:
                    print(f"budget reached: skipping {dataset} {name} seed {seed}", flush=True)
                    continue
                params = apply(apply({**base, "seed": seed}, BEFORE_J), CANDIDATES[name])
                if args.epochs:
                    params["epochs"] = args.epochs
                cfg = train_config(params)
                model, history, info = train(as_model_input(d["images"][tr]), d["labels"][tr],
                                             as_model_input(d["images"][va]), d["labels"][va], n_classes, cfg,
                                             verbose=0)
                probs, _ = predict_proba(model, as_model_input(d["images"][va]))
                row = {"dataset": dataset, "image_size": int(d["images"].shape[1]), "candidate": name, "seed": seed,
                       **score(d["labels"][va], probs),
                       "epochs_run": info["epochs_run"], "train_seconds": round(info["train_seconds"], 1),
                       "images_per_second": round(info["train_images_per_second"] or 0),
                       "parameters": info["parameters"], "backend": backend, "keras": keras.__version__,
                       "device": device, "override": json.dumps(CANDIDATES[name], sort_keys=True)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                frame = pd.DataFrame(rows)
                if len(previous):
                    key = ["dataset", "image_size", "candidate", "seed"]
                    old = previous[~previous.set_index(key).index.isin(frame.set_index(key).index)]
                    frame = pd.concat([old, frame], ignore_index=True)
                frame.to_csv(out / "tuning.csv", index=False)
                histories[f"{dataset}/{name}/{seed}"] = history
                if args.save_models:
                    from cryptomed.models import save_model

                    Path(args.save_models).mkdir(parents=True, exist_ok=True)
                    save_model(model, Path(args.save_models) / f"{dataset}_{row['image_size']}_{name}_{seed}.keras")
                (out / "histories.json").write_text(json.dumps(histories))
                keras.backend.clear_session()


if __name__ == "__main__":
    main()
