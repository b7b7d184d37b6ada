"""EfficientNet-Lite0 transfer baseline: upsampled 64-px arrays vs source images at the backbone's size, on
validation only (the rule in docs/tuning.md, "The transfer baseline's input at its own resolution").

For each dataset, the frozen ImageNet features (the configured size and taps) of the train and validation records
are computed twice: from the preprocessed arrays upsampled (what the pipeline did) and from each record's source
image decoded again from the downloaded tar and resized directly (``cryptomed.data.source_images``). The test split
is dropped on load and never decoded. For each C of the grid the pipeline's head (standardised features,
class-balanced logistic regression) is fitted on train and scored on validation; one row per (dataset, input, C)
goes to ``OUT/native_input.csv``, and the rule's verdict is printed.

    python benchmarks/tune_native_input.py --dataset chest_xray --out results/tuning \\
        [--upsampled-features results/chest_xray/features/efficientnet_lite0.npz]   # reuse the full run's cache

``--upsampled-features`` reuses a feature file the pipeline wrote from these arrays (its ids, splits, size and taps
are checked) instead of computing the upsampled arm again.
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
from tune_cnn import log_row, merge_rows, score  # noqa: E402  (the same validation scores as the CNN search)


def load_config(paths) -> dict:
    """The config files merged in order, later keys over earlier ones (as Snakemake merges --configfile)."""
    import yaml

    def merge(base, over):
        for key, value in over.items():
            base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) and isinstance(
                base.get(key), dict) else value
        return base

    config: dict = {}
    for path in paths:
        config = merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return config


def verdict(frame, dataset: str) -> str:
    """The pre-registered rule: native if its validation loss at its best C (lowest loss) is lower and its
    validation accuracy at that C is not lower than the upsampled features' at theirs."""
    best = {}
    for source in ("upsampled", "native"):
        rows = frame[(frame["dataset"] == dataset) & (frame["input"] == source)]
        if rows.empty:
            raise SystemExit(f"{dataset}: no {source} rows")
        best[source] = rows.loc[rows["val_loss"].idxmin()]
    up, nat = best["upsampled"], best["native"]
    adopt = bool(nat["val_loss"] < up["val_loss"] and nat["val_accuracy"] >= up["val_accuracy"])
    return (f"{dataset}: validation loss {up['val_loss']:.3f} (C={up['C']:g}) -> {nat['val_loss']:.3f} "
            f"(C={nat['C']:g}), accuracy {up['val_accuracy']:.3f} -> {nat['val_accuracy']:.3f}: "
            f"{'adopted' if adopt else 'not adopted'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", nargs="+", required=True)
    ap.add_argument("--config", nargs="+", default=[str(REPO / "params.yaml")],
                    help="config files merged in order (e.g. config.yaml config/test.yaml)")
    ap.add_argument("--preprocessed", default="data/preprocessed", help="folder with DATASET/images.npz and "
                                                                        "DATASET/split_manifest.csv")
    ap.add_argument("--raw", default="data/raw", help="folder with DATASET/images.tar")
    ap.add_argument("--weights", default="results/pretrained/efficientnet_lite0_imagenet.weights.h5")
    ap.add_argument("--upsampled-features", nargs="*", default=[], metavar="NPZ",
                    help="the pipeline's feature file of a dataset (results/DATASET/features/efficientnet_lite0.npz)")
    ap.add_argument("--limit", type=int, default=None, help="first N train/validation records only (smoke tests)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/tuning")
    ap.add_argument("--device", default="2-core AMD EPYC CPU, TensorFlow", help="machine description for the record")
    args = ap.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from cryptomed.data import source_images
    from cryptomed.transfer import efficientnet_features

    config = load_config(args.config)
    pre, eff = config["preprocess"], config["baselines"]["transfer"]["efficientnet_lite0"]
    cached = {}
    for path in args.upsampled_features:
        with np.load(path, allow_pickle=False) as npz:
            cached[path] = {k: npz[k] for k in npz.files}
    out = Path(args.out) / "native_input.csv"
    rows = []
    for dataset in args.dataset:
        size = int((eff.get("image_size_by_dataset") or {}).get(dataset, eff["image_size"]))
        taps = tuple(eff.get("taps", ["head"]))
        npz_path = Path(args.preprocessed) / dataset / "images.npz"
        with np.load(npz_path, allow_pickle=False) as npz:
            keep = np.flatnonzero(npz["splits"] != "test")[: args.limit]
            images, labels, splits, ids = (npz[k][keep] for k in ("images", "labels", "splits", "ids"))
        tr, va = splits == "train", splits == "val"

        feats = {}
        for path, data in cached.items():
            if dataset in Path(path).parts:
                index = {i: n for n, i in enumerate(data["ids"])}
                if str(data["source"] if "source" in data else "").startswith("source images"):
                    raise SystemExit(f"{path}: computed from the source images, not the arrays upsampled")
                if int(data["image_size"]) != size or tuple(str(t) for t in data["taps"]) != taps:
                    raise SystemExit(f"{path}: computed at {int(data['image_size'])} px with taps "
                                     f"{list(data['taps'])}, the config asks {size} px with {list(taps)}")
                rows_in = [index.get(i) for i in ids]
                if None in rows_in or not ((data["splits"][rows_in] == splits).all()
                                           and (data["labels"][rows_in] == labels).all()):
                    raise SystemExit(f"{path}: its records, splits or labels differ from {npz_path}")
                feats["upsampled"] = data["features"][rows_in]
                print(f"{dataset}: upsampled features from {path}", flush=True)
        if "upsampled" not in feats:
            feats["upsampled"], _ = efficientnet_features(args.weights, images, size, taps=taps)
        t0 = time.perf_counter()
        native = source_images(Path(args.raw) / dataset / "images.tar", Path(args.preprocessed) / dataset /
                               "split_manifest.csv", ids, size, pre["aspect"], pre["resample"], args.threads)
        decode_s = time.perf_counter() - t0
        print(f"{dataset}: {len(native)} source images decoded at {size} px in {decode_s:.1f} s", flush=True)
        feats["native"], seconds = efficientnet_features(args.weights, native, size, taps=taps)
        for source, f in feats.items():
            for c in eff["C"]:
                t0 = time.perf_counter()
                head = make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=3000,
                                                                          class_weight="balanced", random_state=0))
                head.fit(f[tr], labels[tr])
                row = {"dataset": dataset, "image_size": size, "input": source, "taps": "+".join(taps),
                       "C": float(c), **score(labels[va], head.predict_proba(f[va])),
                       "train_images": int(tr.sum()), "val_images": int(va.sum()),
                       "native_feature_images_per_second": len(native) / seconds,
                       "native_decode_seconds": decode_s,
                       "head_seconds": time.perf_counter() - t0, "device": args.device}
                rows.append(row)
                log_row(row)
    frame = merge_rows(out, rows, ["dataset"])
    for dataset in args.dataset:
        print(verdict(frame, dataset), flush=True)


if __name__ == "__main__":
    main()
