"""Validation scores of seed ensembles of the deep CNN, with and without flip test-time augmentation.

Reads the models that ``tune_cnn.py --save-models DIR`` saved (``DATASET_PX_CANDIDATE_SEED.keras``) plus, for the
default recipe's seed, the committed full run's model (``--default``), and scores on the validation split only (the
test split is dropped on load): every member alone, and the mean of each candidate's members' class probabilities,
each with and without the horizontal mirror averaged in (``--flip`` datasets only). The rule that decides is in
docs/tuning.md; rows go to ``OUT/seed_ensemble.csv``.

    python benchmarks/tune_seed_ensemble.py --data brain_mri=tv_brain.npz --models /tmp/tune_models \\
        --default brain_mri=results/brain_mri/models/aes_cnn.keras --flip brain_mri --out results/tuning
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from tune_cnn import score, train_val  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="DATASET=images.npz (its test split is never used)")
    ap.add_argument("--models", required=True, help="folder of tune_cnn.py --save-models")
    ap.add_argument("--default", nargs="*", default=[], help="DATASET=aes_cnn.keras: the default recipe, seed 42")
    ap.add_argument("--flip", nargs="*", default=[], help="datasets whose anatomy allows horizontal flips")
    ap.add_argument("--out", default="results/tuning")
    ap.add_argument("--device", default="2-core AMD EPYC CPU, TensorFlow")
    args = ap.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import pandas as pd

    from cryptomed.models import as_model_input, configure_backend, load_model, predict_proba

    configure_backend("tensorflow", os.cpu_count())
    runs = pd.read_csv(Path(args.out) / "tuning.csv")
    defaults = dict(item.split("=", 1) for item in args.default)
    rows = []
    for item in args.data:
        dataset, path = item.split("=", 1)
        d = train_val(path)
        va = d["splits"] == "val"
        x, y, px = as_model_input(d["images"][va]), d["labels"][va], int(d["images"].shape[1])
        members: dict[str, dict[int, tuple[Path, float]]] = {}
        for f in sorted(Path(args.models).glob(f"{dataset}_{px}_*.keras")):
            candidate, seed = f.stem[len(f"{dataset}_{px}_"):].rsplit("_", 1)
            run = runs[(runs.dataset == dataset) & (runs.image_size == px) & (runs.candidate == candidate)
                       & (runs.seed == int(seed))]
            members.setdefault(candidate, {})[int(seed)] = (f, float(run.train_seconds.iloc[-1]))
        if dataset in defaults:
            info = json.loads((Path(defaults[dataset]).parents[1] / "training" / "aes_cnn_training.json").read_text())
            members.setdefault("A_current", {})[42] = (Path(defaults[dataset]), float(info["train_seconds"]))
        for candidate, seeds in sorted(members.items()):
            probs, flipped = {}, {}
            for seed, (f, _) in sorted(seeds.items()):
                model = load_model(f)
                probs[seed] = predict_proba(model, x)[0]
                if dataset in args.flip:
                    flipped[seed] = predict_proba(model, x[:, :, ::-1])[0]
            groups = [[s] for s in sorted(probs)] + ([sorted(probs)] if len(probs) > 1 else [])
            for group in groups:
                for flip in [False, True] if dataset in args.flip else [False]:
                    p = np.mean([(probs[s] + flipped[s]) / 2 if flip else probs[s] for s in group], axis=0)
                    row = {"dataset": dataset, "image_size": px, "candidate": candidate,
                           "seeds": " ".join(map(str, group)), "members": len(group), "flip_tta": flip,
                           **score(y, p), "train_seconds": round(sum(seeds[s][1] for s in group), 1),
                           "val_images": int(va.sum()), "device": args.device}
                    rows.append(row)
                    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    out = Path(args.out) / "seed_ensemble.csv"
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main()
