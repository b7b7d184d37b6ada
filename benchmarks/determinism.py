"""What deterministic kernels cost, and whether a training repeats to the bit in a new process.

Trains the default deep CNN (params.yaml's ``train`` section, a fixed number of epochs, no early stopping) in
fresh processes, alternately with and without ``train.deterministic``, and prints training images/s, the ratio
(deterministic / default, measured side by side) and whether the runs of each kind predicted identically:

    python benchmarks/determinism.py --data data/preprocessed/chest_xray/images.npz --images 1024 --epochs 2

Without ``--data`` a synthetic task is used. ``--worker`` is the single training run (used by the test suite).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def arrays(data: str | None, n: int, size: int):
    if data:
        with np.load(data, allow_pickle=False) as npz:
            keep = npz["splits"] != "test"  # the test split plays no part here
            x, y, s = npz["images"][keep], npz["labels"][keep], npz["splits"][keep]
        tr, va = np.flatnonzero(s == "train")[:n], np.flatnonzero(s == "val")[:max(64, n // 8)]
        return x[tr], y[tr], x[va], y[va], int(y.max()) + 1
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n + 64)
    x = rng.normal(80, 25, (n + 64, size, size)).clip(0, 255)
    x[y == 1, size // 4:size // 2, size // 4:size // 2] += 60
    x = x.clip(0, 255).astype(np.uint8)
    return x[:n], y[:n], x[n:], y[n:], 2


def worker(args) -> dict:
    import yaml

    from cryptomed.models import configure_backend

    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    backend = configure_backend(params["backend"], args.threads, bool(args.deterministic))
    from cryptomed.models import as_model_input, predict_proba, train, train_config

    params.update(epochs=args.epochs, patience=args.epochs + 1)
    if args.tiny:
        params["model"].update(filters=[8, 16], dense_units=16)
    xt, yt, xv, yv, n_classes = arrays(args.data, args.images, args.size)
    model, _, info = train(as_model_input(xt), yt, as_model_input(xv), yv, n_classes, train_config(params), verbose=0)
    probs, _ = predict_proba(model, as_model_input(xv))
    return {"backend": backend, "deterministic": bool(args.deterministic),
            "images_per_second": info["train_images_per_second"], "train_seconds": info["train_seconds"],
            "predictions_sha256": hashlib.sha256(np.ascontiguousarray(probs, dtype="<f4").tobytes()).hexdigest()}


def run(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="preprocessed images.npz (train and validation splits used)")
    ap.add_argument("--images", type=int, default=512, help="training images")
    ap.add_argument("--size", type=int, default=64, help="synthetic image size")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=2, help="runs of each kind, alternating")
    ap.add_argument("--tiny", action="store_true", help="a smaller network (tests)")
    ap.add_argument("--deterministic", type=int, default=1, help="--worker: deterministic kernels or not")
    ap.add_argument("--only-deterministic", action="store_true", help="skip the default runs (no cost ratio)")
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    common = [f"--images={args.images}", f"--size={args.size}", f"--epochs={args.epochs}", f"--threads={args.threads}"]
    common += [f"--data={args.data}"] if args.data else []
    common += ["--tiny"] if args.tiny else []
    runs = {0: [], 1: []}
    for _ in range(args.pairs):
        for det in (1,) if args.only_deterministic else (0, 1):
            runs[det].append(run(common + [f"--deterministic={det}"]))
            print(json.dumps(runs[det][-1]), flush=True)
    rate = {det: float(np.median([r["images_per_second"] for r in rs])) for det, rs in runs.items() if rs}
    if len(rate) == 2:
        print(f"training images/s (median of {args.pairs}): default {rate[0]:.1f}, deterministic {rate[1]:.1f}, "
              f"ratio deterministic/default {rate[1] / rate[0]:.2f}")
    for det, rs in runs.items():
        if not rs:
            continue
        same = len({r["predictions_sha256"] for r in rs}) == 1
        print(f"{'deterministic' if det else 'default'}: {len(rs)} processes, identical predictions: {same}")


if __name__ == "__main__":
    main()
