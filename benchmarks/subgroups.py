"""Where the test errors are: accuracy per class and image source, for every method of a run (a diagnostic of the
test split, reported, never used for a choice).

The brain MRI set merges several sources (figshare's 512x512 slices, SARTAJ, Br35H: shared/data/README.md); the
mirror's manifest keeps each original file's size, which tells the 512x512 figshare-style slices from the rest.
Per (class, source) the script counts the test images, the training images kept and those dropped as copies of test
images (data/preprocessed/DATASET/dropped.csv), and each method's test accuracy on that group
(results/DATASET/predictions/*.csv). One CSV, rendered by `python -m cryptomed docs` (block `subgroups:DATASET`).

    python benchmarks/subgroups.py --dataset brain_mri \\
        --mirror-manifest ../shared/data/brain_tumor_mri/manifest.csv --out results/brain_mri/subgroups.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

METHODS = ("aes_cnn", "shallow_cnn", "aes_classical", "he_linear", "efficientnet_lite0_transfer", "ensemble")


def source_of(width, height) -> str:
    return "512×512 original" if (width, height) == (512, 512) else "other size"


def subgroups(split_manifest, dropped, mirror_manifest, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows per (class, source): test / kept training / dropped counts and each method's test accuracy."""
    mirror = pd.read_csv(mirror_manifest)
    missing = {"path", "source_width", "source_height"} - set(mirror.columns)
    if missing:
        raise SystemExit(f"{mirror_manifest}: no column(s) {sorted(missing)}; the original sizes are needed")
    size = {p: source_of(w, h) for p, w, h in zip(mirror["path"], mirror["source_width"], mirror["source_height"])}
    records = pd.read_csv(split_manifest, dtype={"id": str})
    unknown = sorted(set(records["source_path"]) - set(size))
    if unknown:
        raise SystemExit(f"{split_manifest}: {len(unknown)} files are not in {mirror_manifest}, first: {unknown[0]}")
    records["source"] = records["source_path"].map(size)
    gone = pd.read_csv(dropped)
    gone = gone[gone["reason"] == "copy_of_test"]
    gone = gone.assign(source=gone["source_path"].map(size))
    test = records[records["split"] == "test"]
    for method, frame in predictions.items():
        pred = frame.set_index(frame["id"].astype(str))["predicted"]
        if set(pred.index) != set(test["id"]):
            raise SystemExit(f"{method}: its predictions are not for this run's test records")
        test = test.assign(**{method: test["id"].map(pred) == test["label"]})
    rows = []
    for (cls, src), group in test.groupby(["class_name", "source"]):
        kept = records[(records["split"] != "test") & (records["class_name"] == cls) & (records["source"] == src)]
        rows.append({"class_name": cls, "source": src, "test_images": len(group), "train_val_kept": len(kept),
                     "dropped_as_copy_of_test": int(((gone["class_name"] == cls) & (gone["source"] == src)).sum()),
                     **{f"accuracy_{m}": float(group[m].mean()) for m in predictions}})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="brain_mri")
    ap.add_argument("--mirror-manifest", required=True)
    ap.add_argument("--preprocessed", default="data/preprocessed")
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    folder = Path(args.preprocessed) / args.dataset
    predictions = {m: pd.read_csv(p, dtype={"id": str}) for m in METHODS
                   if (p := Path(args.results) / args.dataset / "predictions" / f"{m}.csv").is_file()}
    frame = subgroups(folder / "split_manifest.csv", folder / "dropped.csv", args.mirror_manifest, predictions)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(frame.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
