"""Classification metrics with 95% bootstrap confidence intervals.

Averaging: for a binary task with a designated positive class (chest X-ray:
PNEUMONIA), precision, recall (sensitivity), specificity and F1 are those of the
positive class, as in the clinical literature; for multi-class tasks they are
macro averages over classes.  Per-class values are always reported too.
ROC-AUC is the positive-class AUC (binary) or the one-vs-rest macro AUC.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

HEADLINE = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")


def mean_log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-probability of the true class (probabilities clipped at 1e-7)."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-7, 1.0))))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix: rows are true classes, columns predicted classes."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _div(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def per_class_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(float)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "specificity": _div(tn, tn + fp),
        "f1": _div(2 * precision * recall, precision + recall),
        "support": cm.sum(axis=1),
    }


def headline_from_confusion(cm: np.ndarray, positive: int | None) -> dict[str, float]:
    pc = per_class_from_confusion(cm)
    out = {"accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else 0.0}
    for name in ("precision", "recall", "specificity", "f1"):
        out[name] = float(pc[name][positive]) if positive is not None else float(pc[name].mean())
    return out


def roc_auc(y_true: np.ndarray, probs: np.ndarray, positive: int | None) -> float:
    n_classes = probs.shape[1]
    if len(np.unique(y_true)) < 2:
        return float("nan")
    if n_classes == 2:
        pos = 1 if positive is None else positive
        return float(roc_auc_score(y_true == pos, probs[:, pos]))
    if len(np.unique(y_true)) < n_classes:
        return float("nan")
    return float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=list(range(n_classes))))


def evaluate(y_true: np.ndarray, probs: np.ndarray, classes: list[str], positive_class: str | None = None,
             n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """All test-set metrics, each headline metric with a percentile bootstrap CI."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(classes)
    if probs.shape != (len(y_true), n_classes):
        raise ValueError(f"probabilities have shape {probs.shape}, expected {(len(y_true), n_classes)}")
    positive = classes.index(positive_class) if (positive_class and n_classes == 2) else None
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, n_classes)
    point = headline_from_confusion(cm, positive)
    point["roc_auc"] = roc_auc(y_true, probs, positive)

    rng = np.random.default_rng(seed)
    boot = {k: [] for k in HEADLINE}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        h = headline_from_confusion(confusion(y_true[idx], y_pred[idx], n_classes), positive)
        h["roc_auc"] = roc_auc(y_true[idx], probs[idx], positive)
        for k in HEADLINE:
            boot[k].append(h[k])
    alpha = (1 - confidence) / 2
    result = {
        "n_test": int(len(y_true)),
        "classes": list(classes),
        "averaging": f"positive class {positive_class}" if positive is not None else "macro over classes",
        "bootstrap": {"resamples": n_boot, "confidence": confidence, "seed": seed, "method": "percentile"},
        "confusion_matrix": cm.tolist(),
    }
    for k in HEADLINE:
        vals = np.asarray(boot[k], dtype=float)
        vals = vals[~np.isnan(vals)]
        ci = [float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha))] if len(vals) else [None, None]
        result[k] = {"value": point[k], "ci95": ci}
    pc = per_class_from_confusion(cm)
    result["per_class"] = {
        c: {m: (int(pc[m][i]) if m == "support" else float(pc[m][i])) for m in ("precision", "recall", "specificity", "f1", "support")}
        for i, c in enumerate(classes)
    }
    result["f1_macro"] = float(pc["f1"].mean())
    return result


def metrics_table(result: dict) -> list[dict]:
    """Flatten :func:`evaluate`'s result into rows for a CSV: metric, class, value, ci95_low, ci95_high."""
    rows = []
    for k in HEADLINE:
        lo, hi = result[k]["ci95"]
        rows.append({"metric": k, "class": "all", "value": result[k]["value"], "ci95_low": lo, "ci95_high": hi})
    rows.append({"metric": "f1_macro", "class": "all", "value": result["f1_macro"], "ci95_low": None, "ci95_high": None})
    for c, vals in result["per_class"].items():
        for m, v in vals.items():
            rows.append({"metric": m, "class": c, "value": v, "ci95_low": None, "ci95_high": None})
    for k, v in result.get("timing_per_image_s", {}).items():
        rows.append({"metric": f"time_per_image_s_{k}", "class": "all", "value": v, "ci95_low": None, "ci95_high": None})
    return rows
