"""Training speed of the deep CNN with each augmentation implementation, side by side on one backend.

The default CNN (params.yaml's ``train.model``) is trained for a few steps on synthetic images without
augmentation, with Keras' RandomTranslation + RandomZoom (``augment_impl: keras``) and with the same shift and zoom
as two matrix products (``augment_impl: matmul``, cryptomed.models.ShiftZoom); it prints training images/s (the
first epoch, with compilation, left out) and each one's ratio to no augmentation:

    python benchmarks/augment_speed.py --size 224 --batch 32            # KERAS_BACKEND=jax on a GPU machine

On an H200 with JAX, Keras' layers ran at 94 images/s against 6,409 without augmentation (224 px, batch 32).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def speed(size: int, batch: int, steps: int, augment: str, impl: str) -> float:
    import dataclasses

    import yaml

    from cryptomed.models import build_cnn, train_config

    params = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    model_cfg = dataclasses.replace(train_config(params).model, augment=augment, augment_impl=impl)
    model = build_cnn((size, size, 1), 2, model_cfg)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, size, size, 1)).astype("float32")
    y = np.arange(len(x)) % 2
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # compilation
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return len(x) / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="training steps timed per implementation")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    from cryptomed.models import configure_backend
    from cryptomed.provenance import provenance

    backend = configure_backend(None, args.threads)
    rows = [(name, speed(args.size, args.batch, args.steps, augment, impl))
            for name, augment, impl in [("none", "none", "keras"), ("keras", "basic", "keras"),
                                        ("matmul", "basic", "matmul")]]
    devices = provenance(backend=backend).get("devices")
    print(f"backend {backend}, devices {devices}, {args.size} px, batch {args.batch}, {args.steps} steps each")
    for name, ips in rows:
        print(f"{name:>7}: {ips:8.0f} images/s  ({ips / rows[0][1]:.2f} x no augmentation)")
    print(f"matmul / keras: {rows[2][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
