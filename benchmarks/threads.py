"""Two Keras trainings on 2 cores: one after the other with 2 threads each, or side by side with 1 thread each?

Trains the proposed CNN and the shallow CNN baseline (params.yaml's ``train`` and ``baselines.shallow_cnn``
sections, a fixed number of epochs, no early stopping) on a preprocessed dataset's train/validation records, each in
a fresh process: first one after the other with ``--threads`` intra-op threads each (how the pipeline ran them with
``threads_per_job: 8`` on 2 cores), then both at once with 1 thread each (``threads_per_job: 1``). Prints the
machine, each training's images/s and the wall time of both arrangements (process start-ups included), measured
side by side in one run:

    python benchmarks/threads.py --data data/preprocessed/brain_mri/images.npz --epochs 3

The test split plays no part. ``--worker`` is one training (used by the two arrangements).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
NETWORKS = ("proposed", "shallow")


def worker(args) -> dict:
    import yaml

    from cryptomed.models import configure_backend

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    train_params = dict(params["train"], epochs=args.epochs, patience=args.epochs + 1)
    if args.network == "shallow":
        train_params["model"] = params["baselines"]["shallow_cnn"]["model"]
    configure_backend(train_params["backend"], args.threads)
    from cryptomed.models import as_model_input, train, train_config

    with np.load(args.data, allow_pickle=False) as npz:
        x, y, s = npz["images"], npz["labels"], npz["splits"]
    tr, va = s == "train", s == "val"
    _, _, info = train(as_model_input(x[tr]), y[tr], as_model_input(x[va]), y[va], int(y.max()) + 1,
                       train_config(train_params), verbose=0)
    return {"network": args.network, "threads": args.threads, "images_per_second": info["train_images_per_second"]}


def _start(args, network: str, threads: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", "--data", args.data, "--epochs", str(args.epochs),
                             "--network", network, "--threads", str(threads)], stdout=subprocess.PIPE, text=True)


def _results(procs: dict[str, subprocess.Popen]) -> list[dict]:
    """Each process's result; if one fails, the others are stopped and the error names the network."""
    results = []
    for network, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode:
            for other in procs.values():
                other.kill()
            raise SystemExit(f"a training process failed: the {network} CNN (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a preprocessed images.npz (train and val records are used)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="threads per training when run one after the other")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--network", choices=NETWORKS, default="proposed", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    from cryptomed.provenance import cpu

    c = cpu()
    print(f"machine: {c['logical_cpus']}-core {c.get('model_name') or c['machine']} CPU, flags {' '.join(c['flags'])}")
    t0 = time.perf_counter()
    serial = [r for n in NETWORKS for r in _results({n: _start(args, n, args.threads)})]
    t1 = time.perf_counter()
    parallel = _results({n: _start(args, n, 1) for n in NETWORKS})
    t2 = time.perf_counter()
    for r in serial + parallel:
        print(f"{r['network']:9s} {r['threads']} thread(s): {r['images_per_second']:6.0f} images/s")
    print(f"one after the other, {args.threads} threads each: {t1 - t0:6.1f} s wall")
    print(f"side by side, 1 thread each:        {t2 - t1:6.1f} s wall")
    print(f"ratio (side by side / one after the other): {(t2 - t1) / (t1 - t0):.2f}")


if __name__ == "__main__":
    main()
