import numpy as np
import pytest

from cryptomed.baselines import (CKKSLinearClassifier, classical_features, downsample, fit_classical, fit_linear,
                                 softmax)

HOG = {"orientations": 9, "pixels_per_cell": 8, "cells_per_block": 2}
LBP = {"points": 8, "radius": 1}


def toy_images(n=60, size=32, seed=0):
    """Two classes a classical pipeline can tell apart: bright stripes horizontal vs vertical, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    imgs = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    for i in range(n):
        if y[i]:
            imgs[i, ::4, :] = 200
        else:
            imgs[i, :, ::4] = 200
    return imgs, y


def test_classical_features_shape_and_selection_on_validation():
    imgs, y = toy_images()
    x = classical_features(imgs, HOG, LBP, 16)
    assert x.shape == (60, 9 * 2 * 2 * 3 * 3 + 10 + 16) and np.isfinite(x).all()
    model, choice, scores = fit_classical(x[:40], y[:40], x[40:], y[40:], ["logistic_regression", "random_forest"])
    assert choice in scores and scores[choice] == max(scores.values()) and scores[choice] > 0.9
    assert model.predict_proba(x[40:]).shape == (20, 2)
    with pytest.raises(ValueError, match="unknown classifiers"):
        fit_classical(x, y, x, y, ["deep_magic"])


@pytest.mark.parametrize("n_classes", [2, 4])
def test_linear_model_equals_sklearn_probabilities(n_classes):
    rng = np.random.default_rng(1)
    x = rng.random((200, 16))
    y = (x[:, 0] * n_classes).astype(int).clip(0, n_classes - 1)
    model, info = fit_linear(x[:150], y[:150], x[150:], y[150:], n_classes)
    assert model.weights.shape == (16, n_classes) and info["choice"].startswith("C=")
    probs = softmax(model.logits(x))
    assert probs.shape == (200, n_classes) and np.allclose(probs.sum(1), 1)
    assert (probs.argmax(1) == y).mean() > 0.7


def _ckks_check():
    """Run in a fresh process (see the test below)."""
    import tenseal as ts

    from cryptomed.baselines import LinearModel

    rng = np.random.default_rng(2)
    x = downsample(rng.integers(0, 256, (6, 32, 32)).astype(np.uint8), 8)
    assert x.shape == (6, 64) and 0 <= x.min() and x.max() <= 1
    model = LinearModel(rng.normal(size=(64, 3)), rng.normal(size=3))
    he = CKKSLinearClassifier(model)
    logits, stats = he.classify(x)
    np.testing.assert_allclose(logits, model.logits(x), atol=1e-3)
    assert stats["input_bytes"] > 10_000 and stats["encrypt"] > 0 and stats["evaluate"] > 0
    assert not he.server.is_private()
    ct = he.encrypt(x[0])
    try:  # the server cannot decrypt what it computes on
        ts.ckks_vector_from(he.server, ct).decrypt()
    except Exception:  # noqa: BLE001 - TenSEAL raises ValueError
        pass
    else:
        raise AssertionError("the server context decrypted a ciphertext")
    print("CKKS OK")


def test_ckks_inference_matches_plaintext_and_the_server_holds_no_secret_key():
    """In a subprocess: TensorFlow, imported by other tests in this process, breaks TenSEAL's serialisation."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("tenseal")
    here = Path(__file__).parent
    proc = subprocess.run([sys.executable, "-c", "import test_baselines as t; t._ckks_check()"], cwd=here,
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": f"{here.parent / 'src'}:{here}"})
    assert proc.returncode == 0 and "CKKS OK" in proc.stdout, proc.stderr[-2000:]


def test_ckks_refuses_to_start_after_tensorflow():
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("tenseal")
    code = ("import tensorflow, numpy as np\n"
            "from cryptomed.baselines import CKKSLinearClassifier, LinearModel\n"
            "from cryptomed import CryptomedError\n"
            "try:\n    CKKSLinearClassifier(LinearModel(np.ones((4, 2)), np.zeros(2)))\n"
            "except CryptomedError as e:\n    print('refused:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert "refused: TenSEAL must be imported before TensorFlow" in proc.stdout, proc.stderr[-2000:]
