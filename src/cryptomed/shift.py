"""Train -> test shift, measured without test labels, and a validation split that resembles the test images.

A domain classifier learns to tell official-training images from test images from their pixels alone (16x16
thumbnails; it never sees a class label). Its cross-validated ROC-AUC measures the shift (0.5: none), and its
out-of-fold score ranks training images by how much they look like the test images. ``split_like_test`` then takes,
per class, the most test-like groups (patients, near-copy groups) as the validation split ("adversarial
validation"), so early stopping, checkpoints and choices made on validation see the shift (docs/tuning.md).

Records are put in content order (their pixel SHA-256) before the folds are drawn: the split depends on the images,
not on the order they arrive in.
"""

from __future__ import annotations

import numpy as np

from . import CryptomedError, dedup

THUMBNAIL = 16
SEED = 0  # the domain classifier's and its folds' seed: fixed, so the split is the one docs/tuning.md scored


def thumbnails(images: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """Block means of each image on a ``size`` x ``size`` grid, scaled to [0, 1] (edge rows that do not fill a
    block are left out)."""
    n, h, w = images.shape
    fh, fw = h // size, w // size
    if fh < 1 or fw < 1:
        raise ValueError(f"images of {h}x{w} px are smaller than the {size}-px thumbnail")
    blocks = dedup.thumbnails(images[:, : fh * size, : fw * size], size, normalise=False)  # exact block means
    return blocks.reshape(n, -1) / 255.0


def domain_scores(features: np.ndarray, is_test: np.ndarray, keys=None, seed: int = SEED, folds: int = 5):
    """Out-of-fold P(test | image) for every record and the cross-validated ROC-AUC of train vs test.

    ``keys`` (e.g. pixel SHA-256 digests) fix the order the folds are drawn in, so the result does not depend on the
    order of the records."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    is_test = np.asarray(is_test, bool)
    n_test, n_train = int(is_test.sum()), int((~is_test).sum())
    folds = min(folds, n_test, n_train)
    if folds < 2:
        raise CryptomedError(f"test-like validation needs at least 2 training and 2 test images "
                             f"(got {n_train} and {n_test})")
    order = np.argsort(np.asarray(keys), kind="stable") if keys is not None else np.arange(len(is_test))
    clf = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    p = np.empty(len(is_test))
    p[order] = cross_val_predict(clf, features[order], is_test[order].astype(int), cv=cv,
                                 method="predict_proba")[:, 1]
    return p, float(roc_auc_score(is_test, p))


def split_like_test(scores, labels, groups, val_fraction: float, keys=None) -> np.ndarray:
    """Boolean mask of the validation records: class by class, whole groups in order of their mean test-likeness
    over that class's images, until ``max(1, round(val_fraction * class size))`` of the class are taken.

    A group is never cut: when one with images in several classes is taken, all its images go to validation and
    count for their classes. Ties go to the group whose smallest key (e.g. pixel SHA-256) is smallest."""
    scores, labels, groups = np.asarray(scores, float), np.asarray(labels), np.asarray(groups)
    keys = np.asarray(keys if keys is not None else [f"{i:012d}" for i in range(len(labels))]).astype(str)
    members: dict = {}
    for i, g in enumerate(groups.tolist()):
        members.setdefault(g, []).append(i)
    first_key = {g: min(keys[m]) for g, m in members.items()}
    val = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        in_class = labels == c
        target = max(1, round(val_fraction * int(in_class.sum())))
        mean = {g: float(scores[[i for i in m if in_class[i]]].mean())
                for g, m in members.items() if in_class[m].any()}
        for g in sorted(mean, key=lambda g: (-mean[g], first_key[g])):
            if int((val & in_class).sum()) >= target:
                break
            val[members[g]] = True
    return val


def validation_like_test(images, is_test, labels, groups, keys, val_fraction: float, seed: int = SEED,
                         name: str = "dataset"):
    """The test-like validation mask over the non-test records and a report of the shift (counts and scores only)."""
    is_test = np.asarray(is_test, bool)
    feats = thumbnails(images)
    try:
        scores, auc = domain_scores(feats, is_test, keys, seed=seed)
    except CryptomedError as exc:
        raise CryptomedError(f"{name}: {exc}") from None
    tv = ~is_test
    val = split_like_test(scores[tv], np.asarray(labels)[tv], np.asarray(groups)[tv], val_fraction,
                          np.asarray(keys)[tv])
    report = {
        "method": "test_like: per class, the training patients/groups most like the test images by a domain "
                  f"classifier (gradient boosting on {THUMBNAIL}x{THUMBNAIL} thumbnails, pixels only, "
                  "out-of-fold scores)",
        "domain_auc_train_vs_test": round(auc, 4),
        "mean_test_likeness": {"val": round(float(scores[tv][val].mean()), 4) if val.any() else None,
                               "train": round(float(scores[tv][~val].mean()), 4) if (~val).any() else None,
                               "test": round(float(scores[is_test].mean()), 4)},
    }
    return val, report


# Diagnostics (docs/tuning.md, benchmarks/shift_features.py): which image properties carry the shift, and which
# training images look least like the test images. Reported; no choice depends on them.
FEATURE_FAMILIES = ("thumbnail", "centre", "border", "histogram", "profiles", "sharpness")


def feature_family(images: np.ndarray, family: str) -> np.ndarray:
    """One feature family of (N, H, W) images: the 16x16 thumbnail (``thumbnail``), its inner 8x8 blocks
    (``centre``) or its outer ring of 2 blocks (``border``), a 32-bin intensity histogram, the row and column mean
    profiles, or the mean absolute horizontal and vertical gradient (``sharpness``)."""
    images = np.asarray(images)
    n = len(images)
    if family in ("thumbnail", "centre", "border"):
        thumb = thumbnails(images).reshape(n, THUMBNAIL, THUMBNAIL)
        q = THUMBNAIL // 4
        inner = np.zeros((THUMBNAIL, THUMBNAIL), bool)
        inner[q:-q, q:-q] = True
        ring = np.ones((THUMBNAIL, THUMBNAIL), bool)
        ring[2:-2, 2:-2] = False
        mask = {"thumbnail": np.ones_like(inner), "centre": inner, "border": ring}[family]
        return thumb[:, mask]
    pixels = images.astype(np.float64) / 255.0
    if family == "histogram":
        return np.stack([np.histogram(img, 32, (0.0, 1.0))[0] for img in pixels]) / pixels[0].size
    if family == "profiles":
        return np.concatenate([pixels.mean(2), pixels.mean(1)], axis=1)
    if family == "sharpness":
        return np.stack([np.abs(np.diff(pixels, axis=2)).mean((1, 2)), np.abs(np.diff(pixels, axis=1)).mean((1, 2))], 1)
    raise ValueError(f"unknown feature family {family!r}; choose from {', '.join(FEATURE_FAMILIES)}")


def shift_by_feature(images, is_test, keys=None, families=FEATURE_FAMILIES, seed: int = SEED) -> dict[str, float]:
    """The domain classifier's cross-validated ROC-AUC (official training vs test, no class label) on each feature
    family alone: which image properties carry the shift."""
    return {family: domain_scores(feature_family(images, family), is_test, keys, seed=seed)[1] for family in families}


def test_likeness_by_class(images, is_test, labels, classes, keys=None, seed: int = SEED) -> dict[str, dict]:
    """Mean out-of-fold test-likeness (the split's thumbnail classifier) of the training images of each class — the
    training labels only; the test images are summarised as one group, their labels unread."""
    is_test = np.asarray(is_test, bool)
    scores, _ = domain_scores(thumbnails(images), is_test, keys, seed=seed)
    labels = np.asarray(labels)
    out = {f"training {name}": {"n": int(((labels == i) & ~is_test).sum()),
                                "mean_test_likeness": float(scores[(labels == i) & ~is_test].mean())}
           for i, name in enumerate(classes) if ((labels == i) & ~is_test).any()}
    out["test (all classes)"] = {"n": int(is_test.sum()), "mean_test_likeness": float(scores[is_test].mean())}
    return out
