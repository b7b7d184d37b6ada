"""EfficientNet-Lite0 transfer baseline: the frozen-feature logistic head vs fine-tuning the backbone's top, on
validation only (the rule in docs/tuning.md, "Fine-tuning the top of the transfer backbone").

For each dataset, every train and validation record's source image (the configured size, as the pipeline's
``native_input``) goes once through the ImageNet backbone; one pass keeps both the pooled taps the pipeline's head
uses and the activations at the end of stage 6. The test split is dropped on load and never decoded. Then:

- ``frozen``: the pipeline's head (standardised pooled taps, class-balanced logistic regression), one row per C;
- ``finetune``: stage 7 and the head convolution, initialised from ImageNet, plus a new softmax layer, trained on
  the cached stage-6 activations (Adam, class-balanced, early stopping on validation loss with the best weights
  restored; batch-norm statistics frozen, as usual when fine-tuning on a small set).

One row per (dataset, arm, C) goes to ``OUT/finetune.csv``, and the rule's verdict is printed:

    python benchmarks/tune_finetune.py --dataset chest_xray brain_mri --out results/tuning

``--arm lpft`` (the LP-FT section of docs/tuning.md): the same top, its softmax layer started from the linear probe
(cryptomed.transfer.linear_probe), and the mean of its probabilities and the frozen head's at that head's C of lowest loss;
rows to ``OUT/lpft.csv``, verdict by :func:`lpft_decisions`.

``--arm images`` (a diagnostic of the GPU configurations' recipe, ``baselines.transfer.efficientnet_lite0.finetune``):
instead of the top on cached activations, the pipeline's own fine-tuning (cryptomed.transfer.build_finetune_model
and finetune: stages from_stage..7 and the head convolution on the images, with shift and zoom) against the same
frozen head; rows to ``OUT/finetune_images.csv``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_cnn import log_row, merge_rows, score  # noqa: E402
from tune_native_input import load_config  # noqa: E402

AFTER_STAGE = 6
RECIPE = {"learning_rate": 3e-4, "epochs": 20, "patience": 4, "batch_size": 64, "dropout": 0.3, "seed": 0}


def activations(weights, images: np.ndarray, size: int, taps: tuple[str, ...]):
    """(stage-6 activations as float16, pooled taps as float32, seconds, the full model) of (N, size, size) uint8
    images, in one pass (cryptomed.transfer.efficientnet_features_and_maps)."""
    from cryptomed.efficientnet_lite import load_model
    from cryptomed.transfer import efficientnet_features_and_maps

    feats, maps, seconds = efficientnet_features_and_maps(weights, images, size, AFTER_STAGE, 64, 256, taps)
    return maps, feats, seconds, load_model(weights, image_size=size)


def finetune(full, maps_tr, y_tr, maps_va, y_va, n_classes: int, recipe: dict, probe_c: list | None = None):
    """Stage 7 + head convolution (ImageNet initialised, batch norm frozen) + a new softmax layer on stage-6
    activations (cryptomed.transfer.train_top; ``probe_c``: LP-FT, the softmax started from the linear probe);
    returns (validation probabilities, epochs run, best epoch, training seconds, (probe C, its validation loss) or
    None)."""
    from cryptomed.transfer import predict_softmax, train_top

    model, info = train_top(full, AFTER_STAGE, maps_tr, y_tr, maps_va, y_va, n_classes, recipe, probe_c)
    probs, _ = predict_softmax(model, maps_va.astype("float32"))
    probe = (info["probe_C"], info["probe_val_loss"]) if probe_c is not None else None
    return probs, info["epochs_run"], info["best_epoch"], info["train_seconds"], probe


def verdict(frame, datasets, budget: bool = True) -> list[str]:
    """The pre-registered rule's verdict per dataset (cryptomed.docs.finetune_decisions, which the docs print too);
    without ``budget`` its time condition is left out (the pipeline's choice in the GPU configurations)."""
    from cryptomed.docs import FINETUNE_BUDGET_S, finetune_decisions

    decisions = finetune_decisions(frame, FINETUNE_BUDGET_S if budget else None)
    return [f"{dataset}: validation loss {fr['val_loss']:.3f} (frozen, C={fr['C']:g}) -> {ft['val_loss']:.3f} "
            f"(fine-tuned, {int(ft['epochs_run'])} epochs, best {int(ft['best_epoch'])}, {ft['train_seconds']:.0f} s), "
            f"accuracy {fr['val_accuracy']:.3f} -> {ft['val_accuracy']:.3f}: "
            + (("adopted" if adopted else "not adopted") if budget else ("kept" if adopted else "not kept"))
            + (f" (training {over:.0f} s together, over the budget)" if over is not None else "")
            for dataset, (fr, ft, adopted, over) in decisions.items() if dataset in datasets]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", nargs="+", required=True)
    ap.add_argument("--config", nargs="+", default=[str(REPO / "params.yaml")],
                    help="config files merged in order (e.g. config.yaml config/test.yaml)")
    ap.add_argument("--preprocessed", default="data/preprocessed")
    ap.add_argument("--raw", default="data/raw")
    ap.add_argument("--weights", default="results/pretrained/efficientnet_lite0_imagenet.weights.h5")
    ap.add_argument("--limit", type=int, default=None, help="first N train/validation records only (smoke tests)")
    ap.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default: the recipe's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/tuning")
    ap.add_argument("--device", default="2-core AMD EPYC CPU, TensorFlow", help="machine description for the record")
    ap.add_argument("--arm", choices=["top", "lpft", "images"], default="top",
                    help="top: stage 7 + head on cached stage-6 activations; lpft: the same, its softmax started from "
                         "the linear probe, and its mean with the frozen head; images: the pipeline's fine-tuning")
    args = ap.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from cryptomed.models import configure_backend

    configure_backend(None, args.threads)
    from cryptomed.data import source_images
    from cryptomed.transfer import logistic_head

    config = load_config(args.config)
    pre, eff = config["preprocess"], config["baselines"]["transfer"]["efficientnet_lite0"]
    recipe = {**RECIPE, "epochs": args.epochs or RECIPE["epochs"]}
    rows = []
    for dataset in args.dataset:
        size = int((eff.get("image_size_by_dataset") or {}).get(dataset, eff["image_size"]))
        taps = tuple(eff.get("taps", ["head"]))
        with np.load(Path(args.preprocessed) / dataset / "images.npz", allow_pickle=False) as npz:
            keep = np.flatnonzero(npz["splits"] != "test")[: args.limit]
            labels, splits, ids = (npz[k][keep] for k in ("labels", "splits", "ids"))
        n_classes = int(labels.max()) + 1
        tr, va = splits == "train", splits == "val"
        images = source_images(Path(args.raw) / dataset / "images.tar", Path(args.preprocessed) / dataset /
                               "split_manifest.csv", ids, size, pre["aspect"], pre["resample"], args.threads)
        if args.arm == "images":
            from cryptomed.transfer import efficientnet_features

            feats, seconds = efficientnet_features(args.weights, images, size, taps=taps)
        else:
            maps, feats, seconds, full = activations(args.weights, images, size, taps)
        common = {"dataset": dataset, "image_size": size, "train_images": int(tr.sum()), "val_images": int(va.sum()),
                  "extract_seconds": seconds, "device": args.device}
        frozen_probs = {}
        for c in eff["C"]:
            head = logistic_head(float(c))
            t0 = time.perf_counter()
            head.fit(feats[tr], labels[tr])
            frozen_probs[float(c)] = head.predict_proba(feats[va])
            row = {**common, "arm": "frozen", "C": float(c), **score(labels[va], frozen_probs[float(c)]),
                   "epochs_run": 0, "best_epoch": 0, "train_seconds": time.perf_counter() - t0}
            rows.append(row)
            log_row(row)
        if args.arm == "images":
            row = finetune_images(args.weights, images, labels, tr, va, size, n_classes,
                                  {**eff["finetune"], "epochs": args.epochs or eff["finetune"]["epochs"]})
        else:
            probs, epochs_run, best, train_s, probe = finetune(
                full, maps[tr], labels[tr], maps[va], labels[va], n_classes, recipe,
                probe_c=eff["C"] if args.arm == "lpft" else None)
            how = " ".join(f"{k}={v}" for k, v in recipe.items())
            row = {"arm": args.arm if args.arm == "lpft" else "finetune", **score(labels[va], probs),
                   "epochs_run": epochs_run, "best_epoch": best, "train_seconds": train_s,
                   "recipe": how + (f" probe_C={probe[0]:g} probe_val_loss={probe[1]:.6f}" if probe else "")}
        row = {**common, "C": float("nan"), **row}
        rows.append(row)
        log_row(row)
        if args.arm == "lpft":  # the mean with the frozen head at its C of lowest validation loss
            frozen = [r for r in rows if r["dataset"] == dataset and r["arm"] == "frozen"]
            c_best = min(frozen, key=lambda r: r["val_loss"])["C"]
            row = {**row, "arm": "lpft_average", "C": c_best,
                   **score(labels[va], (probs + frozen_probs[c_best]) / 2)}
            rows.append(row)
            log_row(row)
    name = {"images": "finetune_images.csv", "lpft": "lpft.csv"}.get(args.arm, "finetune.csv")
    frame = merge_rows(Path(args.out) / name, rows, ["dataset"])
    if args.arm == "images":
        frame = frame.assign(arm=frame["arm"].replace({"finetune_images": "finetune"}))
    if args.arm == "lpft":
        for line in lpft_verdict(frame, args.dataset):
            print(line, flush=True)
        return
    for line in verdict(frame, args.dataset, budget=args.arm == "top"):
        print(line, flush=True)


def lpft_verdict(frame, datasets) -> list[str]:
    """The LP-FT rule's verdict per dataset (cryptomed.docs.lpft_decisions, which the docs print too)."""
    from cryptomed.docs import lpft_decisions

    lines = []
    for dataset, (frozen, candidates, adopted, over) in lpft_decisions(frame).items():
        if dataset not in datasets:
            continue
        lines.append(f"{dataset}: frozen C={frozen['C']:g} validation loss {frozen['val_loss']:.4f}, accuracy "
                     f"{frozen['val_accuracy']:.4f}; " + "; ".join(
                         f"{r['arm']} {r['val_loss']:.4f} / {r['val_accuracy']:.4f} ({'passes' if ok else 'fails'})"
                         for r, ok in candidates) + f" -> adopted: {adopted or 'nothing'}"
                     + (f" (training {over:.0f} s together, over the budget)" if over is not None else ""))
    return lines


def finetune_images(weights, images, labels, tr, va, size: int, n_classes: int, recipe: dict) -> dict:
    """The pipeline's fine-tuning (cryptomed.transfer) on the train images, early stopping on validation: its row."""
    import keras

    from cryptomed.transfer import build_finetune_model, finetune as finetune_model, predict_softmax

    x = images[..., None].astype("float32")
    model = build_finetune_model(str(weights), size, n_classes, int(recipe["from_stage"]), float(recipe["dropout"]),
                                 int(recipe["seed"]))
    _, info = finetune_model(model, x[tr], labels[tr], x[va], labels[va], n_classes, recipe)
    probs, _ = predict_softmax(model, x[va], int(recipe["batch_size"]))
    keras.backend.clear_session()
    return {"arm": "finetune_images", **score(labels[va], probs), "epochs_run": info["epochs_run"],
            "best_epoch": info["best_epoch"], "train_seconds": info["train_seconds"],
            "recipe": " ".join(f"{k}={v}" for k, v in recipe.items() if k != "datasets")}


if __name__ == "__main__":
    main()
