"""Independent leakage check on the preprocessed splits, with another metric than preprocess uses.

For every test image: the smallest root-mean-square difference of raw pixel intensities (0-255, no normalisation,
at the preprocessed size) to any training or validation image under any of the eight flips and rotations. Prints
the smallest values and how many test images fall under 2, 5 and 10 grey levels; exits 1 if any is under --fail.

    python benchmarks/leakage_check.py data/preprocessed/brain_mri/images.npz data/preprocessed/chest_xray/images.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cryptomed.dedup import dihedral  # noqa: E402  (the eight transforms only; the metric here is different)


def min_rms(test: np.ndarray, ref: np.ndarray, block: int = 256) -> np.ndarray:
    r = ref.reshape(len(ref), -1).astype(np.float32)
    rn = (r**2).sum(1)
    best = np.full(len(test), np.inf)
    for start in range(0, len(test), block):
        q = dihedral(test[start:start + block].astype(np.float32))
        q = q.reshape(8, q.shape[1], -1)
        for t in range(8):
            d2 = (q[t] ** 2).sum(1)[:, None] + rn[None] - 2 * q[t] @ r.T
            best[start:start + len(q[t])] = np.minimum(best[start:start + len(q[t])],
                                                       np.sqrt(np.maximum(d2, 0).min(1) / r.shape[1]))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz", nargs="+")
    ap.add_argument("--fail", type=float, default=5.0, help="grey levels (RMS) under which a pair counts as a copy")
    args = ap.parse_args()
    bad = 0
    for path in args.npz:
        with np.load(path, allow_pickle=False) as npz:
            images, splits = npz["images"], npz["splits"]
        d = min_rms(images[splits == "test"], images[splits != "test"])
        counts = {lvl: int((d < lvl).sum()) for lvl in (2, 5, 10)}
        print(f"{path}: {len(d)} test images; smallest RMS distance to train+val (grey levels, any flip/rotation): "
              f"{', '.join(f'{x:.1f}' for x in np.sort(d)[:5])}; under 2/5/10: {counts[2]}/{counts[5]}/{counts[10]}")
        bad += int((d < args.fail).sum())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
