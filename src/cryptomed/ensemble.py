"""An ensemble of methods from their prediction files: the mean of their class probabilities, equal weights.

Nothing is fitted, so nothing can be tuned on the test split: the members and the rule were fixed before the
ensemble was scored (docs/tuning.md). The members' prediction files must list the same test images, in the same
order, with the same labels and classes; anything else is an error naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CryptomedError


class EnsembleInputError(CryptomedError):
    """Members' prediction files that cannot be averaged (different images, labels or classes)."""


def mean_of_predictions(paths: list[str | Path], classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels, mean probabilities) of the members' prediction CSVs (columns id, label, predicted, p_<class>)."""
    import pandas as pd

    if not paths:
        raise EnsembleInputError("an ensemble needs at least one member's predictions")
    columns = [f"p_{c}" for c in classes]
    ref, total = None, None
    for path in paths:
        frame = pd.read_csv(path, dtype={"id": str})
        missing = [c for c in ["id", "label", *columns] if c not in frame.columns]
        if missing:
            raise EnsembleInputError(f"{path}: no column {', '.join(missing)} (classes {classes})")
        probs = frame[columns].to_numpy(dtype=np.float64)
        if not np.isfinite(probs).all() or (probs < 0).any():
            raise EnsembleInputError(f"{path}: probabilities must be finite and non-negative")
        if ref is None:
            ref, total = frame, probs
            continue
        if len(frame) != len(ref) or not (frame["id"].to_numpy() == ref["id"].to_numpy()).all():
            raise EnsembleInputError(f"{path}: its test images (ids, order) differ from those of {paths[0]}")
        if not (frame["label"].to_numpy() == ref["label"].to_numpy()).all():
            raise EnsembleInputError(f"{path}: its labels differ from those of {paths[0]}")
        total = total + probs
    return ref["id"].to_numpy(), ref["label"].to_numpy(dtype=np.int64), total / len(paths)
