"""Result figures for the Snakemake report: training curves, confusion matrices, ROC curves, time per image.

Each function takes what the pipeline wrote (metrics JSON dicts, prediction and history frames) and writes one
PNG atomically.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PARTS = ("encrypt", "decrypt", "inference")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    from .files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _pyplot().close(fig)


def _grid(n: int, width: float = 3.6, height: float = 3.2):
    plt = _pyplot()
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def training_curves(histories: dict[str, pd.DataFrame], titles: dict[str, str], suptitle: str, path) -> None:
    """Loss (top row) and accuracy (bottom row) per epoch, training and validation, one column per CNN method."""
    plt = _pyplot()
    n = len(histories)
    fig, axes = plt.subplots(2, n, figsize=(4 * n, 5.4), squeeze=False, sharex="col")
    for col, (method, h) in enumerate(histories.items()):
        for row, metric in enumerate(("loss", "accuracy")):
            ax = axes[row][col]
            # a seed ensemble's history has one run per member (column "seed"): one pair of curves each
            runs = [g for _, g in h.groupby("seed", sort=True)] if "seed" in h else [h]
            for i, run in enumerate(runs):
                ax.plot(run["epoch"], run[metric], color="tab:blue", alpha=1 if i == 0 else 0.5,
                        label="train" if i == 0 else None)
                ax.plot(run["epoch"], run[f"val_{metric}"], color="tab:orange", ls="--", alpha=1 if i == 0 else 0.5,
                        label="validation" if i == 0 else None)
            ax.set_ylabel(metric, fontsize=8)
            if metric == "accuracy":
                ax.set_ylim(0, 1)
                ax.set_xlabel("epoch", fontsize=8)
            else:
                ax.set_title(titles.get(method, method), fontsize=8)
        axes[0][col].legend(fontsize=7)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def confusion_matrices(metrics: list[dict], suptitle: str, path) -> None:
    """Counts (and row-normalised share) of true vs predicted class, one panel per method."""
    fig, axes = _grid(len(metrics))
    for ax, m in zip(axes, metrics):
        cm = np.asarray(m["confusion_matrix"], dtype=float)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, f"{int(count)}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black")
        classes = m["classes"]
        ax.set_xticks(range(len(classes)), classes, fontsize=7, rotation=30)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(f"{m['method_title']}\naccuracy {m['accuracy']['value']:.3f}", fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def roc_points(pred: pd.DataFrame, classes: list[str], positive: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """ROC of the positive class (binary) or the micro-average over one-vs-rest curves (multiclass)."""
    from sklearn.metrics import roc_curve

    y = pred["label"].to_numpy()
    probs = pred[[f"p_{c}" for c in classes]].to_numpy(float)
    if len(classes) == 2:
        k = classes.index(positive) if positive in classes else 1
        fpr, tpr, _ = roc_curve(y == k, probs[:, k])
        return fpr, tpr, f"{classes[k]} vs rest"
    onehot = np.eye(len(classes), dtype=bool)[y]
    fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    return fpr, tpr, "micro-average, one vs rest"


def roc_curves(metrics: list[dict], predictions: dict[str, pd.DataFrame], positive: str | None, suptitle: str,
               path) -> None:
    """All methods' ROC curves on one axis, AUC (from the metrics) in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    kind = ""
    for m in metrics:
        fpr, tpr, kind = roc_points(predictions[m["method"]], list(m["classes"]), positive)
        ax.plot(fpr, tpr, lw=1.3, label=f"{m['method_title']} (AUC {m['roc_auc']['value']:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", ls=":", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title(f"{suptitle}\nROC: {kind}", fontsize=9)
    ax.legend(fontsize=6.5, loc="lower right")
    _save(fig, path)


def timing_breakdown(metrics: list[dict], suptitle: str, path) -> None:
    """Time per test image by part (encrypt, decrypt, inference), stacked, with the encryption share (AES-GCM;
    CKKS for the homomorphic baseline, whose parts are its client-side encrypt/decrypt)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(metrics) + 1.6))
    colors = {"encrypt": "tab:blue", "decrypt": "tab:orange", "inference": "0.55"}
    y = np.arange(len(metrics))[::-1]
    for row, m in zip(y, metrics):
        t = m["timing_per_image_s"]
        left = 0.0
        for part in PARTS:
            ms = 1e3 * float(t.get(part) or 0)
            ax.barh(row, ms, left=left, color=colors[part], label=part if row == y[0] else None)
            left += ms
        crypto = 1e3 * (float(t.get("encrypt") or 0) + float(t.get("decrypt") or 0))
        scheme = "CKKS" if m["method"].startswith("he_") else "AES"
        note = f" {left:.3g} ms" + (f" ({scheme} {100 * crypto / left:.1f}%)" if crypto and left else "")
        ax.text(left, row, note, va="center", fontsize=7)
    ax.set_yticks(y, [m["method_title"] for m in metrics], fontsize=7)
    ax.set_xlabel("milliseconds per test image")
    ax.set_xlim(0, ax.get_xlim()[1] * 1.35)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(suptitle, fontsize=9)
    _save(fig, path)


def near_copy_pairs(samples: list[dict], suptitle: str, path) -> None:
    """Test image beside the training image dropped as its copy, a few per kind (exact, near, flipped/rotated)."""
    plt = _pyplot()
    n = max(len(samples), 1)
    fig, axes = plt.subplots(n, 2, figsize=(3.4, 1.8 * n), squeeze=False)
    if not samples:
        axes[0][0].text(0.5, 0.5, "no training image is a copy of a test image", ha="center", va="center", fontsize=8)
    for row, s in zip(axes, samples):
        row[0].imshow(s["test"], cmap="gray", vmin=0, vmax=255)
        row[1].imshow(s["copy"], cmap="gray", vmin=0, vmax=255)
        row[0].set_title(f"test ({s['class_name']})", fontsize=7)
        row[1].set_title(f"dropped: {s['kind']}, {s['transform']}\ndistance {s['distance']:.3f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{suptitle}\ntest image | dropped training copy", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def near_copy_distances(near: dict, suptitle: str, path) -> None:
    """Histograms of the distance (any flip or rotation) from each test image to its nearest training image, and
    from each training image to its nearest test image, log counts, with the threshold."""
    plt = _pyplot()
    hist = near["distance_histogram"]
    edges = np.asarray(hist["edges"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharex=True)
    for ax, key, who in zip(axes, ("test_to_nearest_train", "train_to_nearest_test"), ("test", "training")):
        counts = np.asarray(hist.get(key, []))
        if len(counts):
            ax.bar(edges[:-1], np.maximum(counts, 0.8), width=np.diff(edges), align="edge", color="tab:blue", log=True)
        if near.get("threshold") is not None:
            ax.axvline(near["threshold"], color="tab:red", ls="--", label=f"threshold {near['threshold']}")
            ax.legend(fontsize=7)
        ax.set_xlabel(f"distance from a {who} image to its nearest {'training' if who == 'test' else 'test'} image",
                      fontsize=7)
        ax.set_ylabel(f"{who} images (log)", fontsize=8)
    fig.suptitle(f"{suptitle}: RMS difference of normalised thumbnails, any flip/rotation (1.0 = anything beyond)",
                 fontsize=8)
    fig.tight_layout()
    _save(fig, path)
