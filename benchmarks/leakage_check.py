"""Independent leakage check on the preprocessed splits, with another metric than preprocess uses.

For every test image: the smallest root-mean-square difference of raw pixel intensities (0-255, no normalisation,
at the preprocessed size) to any training or validation image under any of the eight flips and rotations. Prints
the smallest values and how many test images fall under 2, 5 and 10 grey levels, also after fitting each pair's
gain and offset (so a brightness/contrast change does not hide a copy); exits 1 if a raw value is under --fail.

    python benchmarks/leakage_check.py data/preprocessed/brain_mri/images.npz data/preprocessed/chest_xray/images.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cryptomed.dedup import dihedral  # noqa: E402  (the eight transforms only; the metric here is different)


def min_rms(test: np.ndarray, ref: np.ndarray, block: int = 256, affine: bool = False):
    """Smallest RMS difference (grey levels) of each test image to any reference under any flip or rotation, and
    the index of that reference. ``affine``: after the best gain and offset (least squares) of the reference, so a
    brightness or contrast change does not hide a copy."""
    r = ref.reshape(len(ref), -1).astype(np.float32)
    if affine:  # residual of the best a*ref + b for each pair = sd(test) * sqrt(1 - corr^2)
        return _min_affine(test, r, block)
    rn = (r**2).sum(1)
    best = np.full(len(test), np.inf)
    for start in range(0, len(test), block):
        q = dihedral(test[start:start + block].astype(np.float32))
        q = q.reshape(8, q.shape[1], -1)
        for t in range(8):
            d2 = (q[t] ** 2).sum(1)[:, None] + rn[None] - 2 * q[t] @ r.T
            best[start:start + len(q[t])] = np.minimum(best[start:start + len(q[t])],
                                                       np.sqrt(np.maximum(d2, 0).min(1) / r.shape[1]))
    return best, None


def _min_affine(test, r, block):
    dim = r.shape[1]
    rc = r - r.mean(1, keepdims=True)
    rz = rc / np.maximum(rc.std(1, keepdims=True), 1e-6)
    best = np.full(len(test), np.inf)
    arg = np.full(len(test), -1)
    for start in range(0, len(test), block):
        q = dihedral(test[start:start + block].astype(np.float32))
        q = q.reshape(8, q.shape[1], -1)
        qc = q - q.mean(2, keepdims=True)
        sd = qc.std(2)
        corr = np.einsum("tnd,md->tnm", qc / np.maximum(sd, 1e-6)[..., None], rz) / dim
        c = corr.max(0)  # (b, M)
        j = c.argmax(1)
        cm = c[np.arange(len(j)), j]
        res = sd[0] * np.sqrt(np.maximum(0.0, 1.0 - cm**2))
        best[start:start + len(j)], arg[start:start + len(j)] = res, j
    return best, arg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz", nargs="+")
    ap.add_argument("--fail", type=float, default=5.0, help="grey levels (RMS) under which a pair counts as a copy")
    args = ap.parse_args()
    bad = 0
    for path in args.npz:
        with np.load(path, allow_pickle=False) as npz:
            images, splits = npz["images"], npz["splits"]
        test, ref = images[splits == "test"], images[splits != "test"]
        d, _ = min_rms(test, ref)
        a, _ = min_rms(test, ref, affine=True)
        for name, x in (("raw", d), ("after gain/offset fit", a)):
            counts = {lvl: int((x < lvl).sum()) for lvl in (2, 5, 10)}
            print(f"{path}: {len(x)} test images; smallest RMS difference to train+val ({name}; grey levels, any "
                  f"flip/rotation): {', '.join(f'{v:.1f}' for v in np.sort(x)[:5])}; under 2/5/10 grey levels: "
                  f"{counts[2]}/{counts[5]}/{counts[10]}")
        bad += int((d < args.fail).sum())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
