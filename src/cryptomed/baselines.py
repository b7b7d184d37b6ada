"""The paper's non-CNN baselines: AES + classical classification, and homomorphic-encryption (CKKS) inference.

Both read the AES-GCM container (decrypted and verified in memory, like the proposed method), so
every method sees the same images and the same train / val / test split.

* :func:`classical_features` + :func:`fit_classical`: HOG, uniform-LBP and intensity histograms
  (scikit-image) fed to scikit-learn classifiers; the classifier and its regularisation are chosen
  on the validation split.
* :class:`CKKSLinearClassifier`: a multinomial logistic regression on downsampled pixels, trained in
  plaintext, then evaluated by a server on CKKS ciphertexts (TenSEAL) with a public context that
  holds no secret key; the client decrypts the logits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- classical features


def classical_features(images: np.ndarray, hog_cfg: dict, lbp_cfg: dict, histogram_bins: int) -> np.ndarray:
    """One feature row per image: HOG || uniform-LBP histogram || intensity histogram."""
    from skimage.feature import hog, local_binary_pattern

    p, r = int(lbp_cfg["points"]), float(lbp_cfg["radius"])
    rows = []
    for img in images:
        h = hog(img, orientations=int(hog_cfg["orientations"]),
                pixels_per_cell=(int(hog_cfg["pixels_per_cell"]),) * 2,
                cells_per_block=(int(hog_cfg["cells_per_block"]),) * 2, feature_vector=True)
        lbp = local_binary_pattern(img, p, r, method="uniform")
        lbp_hist = np.bincount(lbp.astype(np.int64).reshape(-1), minlength=p + 2)[: p + 2] / lbp.size
        hist = np.histogram(img, bins=histogram_bins, range=(0, 256))[0] / img.size
        rows.append(np.concatenate([h, lbp_hist, hist]))
    return np.asarray(rows, dtype=np.float32)


def _candidates(names, seed):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    grid = {
        "logistic_regression": [(f"logistic_regression C={c}", lambda c=c: make_pipeline(
            StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))) for c in (0.01, 0.1, 1.0)],
        # probabilities from sigmoid calibration (cross-validated on train), as scikit-learn 1.9 recommends
        "svm_rbf": [(f"svm_rbf C={c}", lambda c=c: make_pipeline(
            StandardScaler(), CalibratedClassifierCV(SVC(C=c, kernel="rbf", class_weight="balanced", random_state=seed),
                                                     ensemble=False))) for c in (1.0, 10.0)],
        "random_forest": [(f"random_forest trees={n}", lambda n=n: RandomForestClassifier(
            n_estimators=n, class_weight="balanced", random_state=seed, n_jobs=1)) for n in (300,)],
    }
    unknown = set(names) - set(grid)
    if unknown:
        raise ValueError(f"unknown classifiers {sorted(unknown)}; choose from {sorted(grid)}")
    return [c for name in names for c in grid[name]]


def fit_classical(x_train, y_train, x_val, y_val, classifiers, seed: int = 0):
    """Fit every candidate on train, keep the best by validation balanced accuracy; return (model, choice, scores)."""
    from sklearn.metrics import balanced_accuracy_score

    best, scores = None, {}
    for name, make in _candidates(classifiers, seed):
        model = make().fit(x_train, y_train)
        scores[name] = float(balanced_accuracy_score(y_val, model.predict(x_val)))
        log.info("  %-28s validation balanced accuracy %.4f", name, scores[name])
        if best is None or scores[name] > scores[best[0]]:
            best = (name, model)
    return best[1], best[0], scores


# --------------------------------------------------------------------------- CKKS


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Area-average to ``size`` x ``size`` (Pillow BOX), scaled to [0, 1], flattened."""
    from PIL import Image

    out = [np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255.0
           for img in images]
    return np.stack(out).reshape(len(images), -1)


@dataclass
class LinearModel:
    """logits = x @ weights + bias (standardisation folded in, so the server sees raw downsampled pixels)."""

    weights: np.ndarray  # (features, classes)
    bias: np.ndarray  # (classes,)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias


def fit_linear(x_train, y_train, x_val, y_val, n_classes: int, seed: int = 0) -> tuple[LinearModel, dict]:
    """Multinomial logistic regression (C chosen on validation), returned as one affine map."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    mu, sigma = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    best = None
    scores = {}
    for c in (0.01, 0.1, 1.0):
        lr = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
        lr.fit((x_train - mu) / sigma, y_train)
        scores[f"C={c}"] = float(balanced_accuracy_score(y_val, lr.predict((x_val - mu) / sigma)))
        if best is None or scores[f"C={c}"] > scores[best[0]]:
            best = (f"C={c}", lr)
    lr = best[1]
    coef, intercept = lr.coef_, lr.intercept_
    if n_classes == 2 and coef.shape[0] == 1:  # binary: logits (0, z) give the same softmax as sklearn's sigmoid
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    weights = (coef / sigma).T
    bias = intercept - (coef * mu / sigma).sum(axis=1)
    return LinearModel(weights, bias), {"choice": best[0], "validation_balanced_accuracy": scores}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class CKKSLinearClassifier:
    """Client/server CKKS inference of a linear model with TenSEAL.

    The client holds the secret key; the server gets a serialised *public* context (relinearisation
    and Galois keys, no secret key) and the serialised ciphertext of one image, computes one encrypted
    dot product per class, and returns serialised ciphertexts.  Everything crosses as bytes, as it
    would over a network.
    """

    def __init__(self, model: LinearModel, poly_modulus_degree: int = 8192,
                 coeff_mod_bit_sizes=(60, 40, 40, 60), global_scale_bits: int = 40):
        import sys

        if "tensorflow" in sys.modules and "tenseal" not in sys.modules:
            # TensorFlow's protobuf breaks TenSEAL's serialisation ("failed to save proto", or a crash)
            # when TensorFlow is imported first; the HE rule never imports it.
            from . import CryptomedError

            raise CryptomedError("TenSEAL must be imported before TensorFlow in one process; run CKKS in its own process")
        import tenseal as ts

        self.ts, self.model = ts, model
        self.client = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=poly_modulus_degree,
                                 coeff_mod_bit_sizes=list(coeff_mod_bit_sizes))
        self.client.global_scale = 2.0**global_scale_bits
        self.client.generate_galois_keys()
        public = self.client.copy()
        public.make_context_public()
        self.server_context_bytes = public.serialize()
        self.server = ts.context_from(self.server_context_bytes)
        assert not self.server.is_private(), "the server context must not hold the secret key"
        self.params = {"scheme": "CKKS", "poly_modulus_degree": poly_modulus_degree,
                       "coeff_mod_bit_sizes": list(coeff_mod_bit_sizes), "global_scale_bits": global_scale_bits,
                       "slots": poly_modulus_degree // 2}

    # client side
    def encrypt(self, x: np.ndarray) -> bytes:
        return self.ts.ckks_vector(self.client, x.tolist()).serialize()

    def decrypt(self, results: list[bytes]) -> np.ndarray:
        return np.array([self.ts.ckks_vector_from(self.client, r).decrypt()[0] for r in results])

    # server side: no secret key here
    def evaluate(self, ciphertext: bytes) -> list[bytes]:
        enc = self.ts.ckks_vector_from(self.server, ciphertext)
        w, b = self.model.weights, self.model.bias
        return [(enc.dot(w[:, c].tolist()) + float(b[c])).serialize() for c in range(w.shape[1])]

    def classify(self, xs: np.ndarray, progress=None) -> tuple[np.ndarray, dict]:
        """Encrypted logits for each row of ``xs``, with per-image timings and sizes."""
        logits = np.empty((len(xs), self.model.weights.shape[1]))
        t = {"encrypt": [], "evaluate": [], "decrypt": []}
        sizes = {"input": [], "result": []}
        for i, x in enumerate(xs):
            t0 = time.perf_counter()
            ct = self.encrypt(x)
            t1 = time.perf_counter()
            res = self.evaluate(ct)
            t2 = time.perf_counter()
            logits[i] = self.decrypt(res)
            t3 = time.perf_counter()
            t["encrypt"].append(t1 - t0)
            t["evaluate"].append(t2 - t1)
            t["decrypt"].append(t3 - t2)
            sizes["input"].append(len(ct))
            sizes["result"].append(sum(len(r) for r in res))
            if progress:
                progress(i + 1, len(xs))
        stats = {k: float(np.mean(v)) for k, v in t.items()}
        stats.update({f"{k}_bytes": int(np.mean(v)) for k, v in sizes.items()})
        return logits, stats
