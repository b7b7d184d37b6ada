"""Where the train -> test shift lies, measured without test labels (a diagnostic: no choice depends on it).

The domain classifier of ``cryptomed.shift`` (official training vs test images, pixels only) on each feature family
alone — the thumbnail the test-like split uses, its centre and its border, the intensity histogram, the row and
column profiles, two sharpness numbers — and the mean test-likeness of each class's training images (training labels
only; the test labels are blanked before anything runs):

    python benchmarks/shift_features.py data/preprocessed/chest_xray/images.npz \
        --out results/tuning/testlike/shift_features_chest_xray.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images_npz")
    ap.add_argument("--out", required=True, help="CSV to write (kind, name, value, n)")
    args = ap.parse_args(argv)
    import pandas as pd

    from cryptomed import shift

    with np.load(args.images_npz, allow_pickle=False) as npz:
        images, splits, classes, ids = npz["images"], npz["splits"], [str(c) for c in npz["classes"]], npz["ids"]
        is_test = splits == "test"
        labels = np.where(is_test, -1, npz["labels"])  # the test labels are never read
    if not is_test.any() or is_test.all():
        raise SystemExit(f"{args.images_npz}: needs both test and non-test records")
    rows = [{"kind": "domain ROC-AUC", "name": family, "value": auc, "n": len(images)}
            for family, auc in shift.shift_by_feature(images, is_test, ids).items()]
    rows += [{"kind": "mean test-likeness", "name": group, "value": v["mean_test_likeness"], "n": v["n"]}
             for group, v in shift.test_likeness_by_class(images, is_test, labels, classes, ids).items()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)
    for r in rows:
        print(f"{r['kind']:20s} {r['name']:22s} {r['value']:.3f}  (n = {r['n']})")


if __name__ == "__main__":
    main()
