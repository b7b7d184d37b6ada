"""Training speed of the deep CNN with each augmentation implementation, side by side on one backend.

The default CNN (params.yaml's ``train.model``) is trained on synthetic images without augmentation, with Keras'
RandomTranslation + RandomZoom (``augment_impl: keras``) and with the same random shift and zoom as one resampling
in two matrix products (``augment_impl: matmul``, cryptomed.models.ShiftZoom). It prints training images/s (the
median of a few epochs, the three models timed in turn after compilation) and each one's ratio to no augmentation:

    python benchmarks/augment_speed.py --size 224 --batch 32 --steps 200     # KERAS_BACKEND=jax on a GPU machine

On an H200 with JAX, training with Keras' layers ran at 94 images/s against 6,409 without augmentation (224 px,
batch 32; results/gpu/h200_augment_check.txt).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def build(size: int, augment: str, impl: str):
    import dataclasses

    import yaml

    from cryptomed.models import build_cnn, train_config

    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    model = build_cnn((size, size, 1), 2, dataclasses.replace(train_config(params).model, augment=augment,
                                                              augment_impl=impl))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def speeds(size: int, batch: int, steps: int, rounds: int, variants) -> dict[str, float]:
    """Median training images/s per variant: every model compiled first, then timed one epoch at a time in turn,
    ``rounds`` times (so warm-up and machine noise fall on all of them alike)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, size, size, 1)).astype("float32")
    y = np.arange(len(x)) % 2
    models = {name: build(size, augment, impl) for name, augment, impl in variants}
    for model in models.values():
        model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # compilation
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - t0)
    return {name: len(x) / float(np.median(t)) for name, t in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=3, help="timed epochs per implementation, taken in turn")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from cryptomed.models import configure_backend
    from cryptomed.provenance import provenance

    backend = configure_backend(None, args.threads)
    variants = [("none", "none", "keras"), ("keras", "basic", "keras"), ("matmul", "basic", "matmul")]
    rows = list(speeds(args.size, args.batch, args.steps, args.rounds, variants).items())
    devices = provenance(backend=backend).get("devices")
    print(f"backend {backend}, devices {devices}, {args.size} px, batch {args.batch}, "
          f"median of {args.rounds} epochs of {args.steps} steps each, taken in turn")
    for name, ips in rows:
        print(f"{name:>7}: {ips:8.0f} images/s  ({ips / rows[0][1]:.2f} x no augmentation)")
    print(f"matmul / keras: {rows[2][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
