"""Diagnostic (no choice depends on it): does batch-norm adaptation (cryptomed.adapt) depend on the class mix of
the images it adapts to? Never reads the test split.

Brain MRI's validation split has the training class mix (few *notumor* images); its test split has another. Here a
saved network is adapted to validation subsets of one size drawn at several class mixes -- the validation mix itself
and mixes where one class makes up a given share -- and scored on the same subset, with and without adaptation
(repeats with fresh draws). One row per draw to ``OUT``.

    python benchmarks/adapt_class_mix.py data/preprocessed/brain_mri/images.npz \
        --model results/brain_mri/models/aes_cnn.keras --out results/tuning/adapt/class_mix_brain_mri.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def draw(labels: np.ndarray, n: int, shares: np.ndarray, rng) -> np.ndarray:
    """Indices of ``n`` validation images, ``shares[c]`` of them of class c, without replacement."""
    counts = np.floor(shares * n).astype(int)
    counts[np.argmax(shares)] += n - counts.sum()
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in enumerate(counts)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=90, help="images per subset")
    ap.add_argument("--share", type=float, default=0.3, help="share of the one heavy class in the shifted mixes")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/tuning/adapt/class_mix_brain_mri.csv")
    args = ap.parse_args()
    import pandas as pd

    from cryptomed.models import configure_backend

    configure_backend(None, 2)
    from cryptomed.adapt import predict_unadapted_and_adapted
    from cryptomed.models import as_model_input, load_model

    with np.load(args.npz, allow_pickle=False) as npz:
        va = npz["splits"] == "val"  # the test split is never touched
        x, y, classes = as_model_input(npz["images"][va]), npz["labels"][va], [str(c) for c in npz["classes"]]
    model = load_model(args.model)
    natural = np.bincount(y, minlength=len(classes)) / len(y)
    mixes = {"validation mix": natural}
    for c, name in enumerate(classes):  # one class at --share, the others in their validation proportions
        other = natural.copy()
        other[c] = 0
        mixes[f"{name} {args.share:.0%}"] = np.where(np.arange(len(classes)) == c, args.share,
                                                     (1 - args.share) * other / other.sum())
    rng = np.random.default_rng(args.seed)
    rows = []
    for mix, shares in mixes.items():
        if np.any(np.floor(shares * args.size) > np.bincount(y, minlength=len(classes))):
            raise SystemExit(f"{args.npz}: too few validation images of some class for mix {mix!r} at size {args.size}")
        for rep in range(args.repeats):
            idx = draw(y, args.size, shares, rng)
            unadapted, adapted, _ = predict_unadapted_and_adapted(model, x[idx])
            rows.append({"mix": mix, "repeat": rep, "images": len(idx),
                         "accuracy": float((unadapted.argmax(1) == y[idx]).mean()),
                         "accuracy_adapted": float((adapted.argmax(1) == y[idx]).mean())})
        part = pd.DataFrame(rows)
        part = part[part["mix"] == mix]
        print(f"{mix}: accuracy {part['accuracy'].mean():.3f} -> adapted {part['accuracy_adapted'].mean():.3f}",
              flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
