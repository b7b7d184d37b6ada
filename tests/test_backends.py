"""The same Keras 3 model code on each installed backend (JAX and PyTorch are optional here; the GPU
machine has them, CI has TensorFlow only, so those cases are skipped there)."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from cryptomed.models import configure_backend, CNNConfig, TrainConfig, train, predict_proba, save_model, load_model
backend = configure_backend(None, 2)
rng = np.random.default_rng(0)
y = rng.integers(0, 2, 96); x = rng.normal(60, 20, (96, 16, 16, 1)).astype("float32"); x[y == 1, 4:12, 4:12] += 120
cfg = TrainConfig(epochs=4, batch_size=16, patience=4, model=CNNConfig(filters=(8, 16), convs_per_block=1, dense_units=8))
model, history, info = train(x[:64], y[:64], x[64:], y[64:], 2, cfg, verbose=0)
p, _ = predict_proba(model, x[64:])
save_model(model, sys.argv[2]); q, _ = predict_proba(load_model(sys.argv[2]), x[64:])
assert np.allclose(p, q, atol=1e-5), "save/load changed predictions"
from cryptomed.adapt import adapt_batchnorm
adapted = adapt_batchnorm(model, x[64:] + 40.0)  # label-free batch-norm adaptation runs on this backend
r, _ = predict_proba(model, x[64:] + 40.0)
assert adapted["batchnorm_layers"] == 2 and np.isfinite(r).all() and np.allclose(r.sum(1), 1, atol=1e-4)
matmul = TrainConfig(epochs=1, batch_size=16, patience=1,
                     model=CNNConfig(filters=(8,), convs_per_block=1, dense_units=8, augment_impl="matmul"))
m2, _, _ = train(x[:32], y[:32], x[64:], y[64:], 2, matmul, verbose=0)  # the GPU configurations' augmentation
save_model(m2, sys.argv[2] + ".matmul.keras")
assert np.allclose(predict_proba(m2, x[64:])[0], predict_proba(load_model(sys.argv[2] + ".matmul.keras"), x[64:])[0],
                   atol=1e-5), "save/load changed the matmul model's predictions"
from cryptomed import efficientnet_lite
from cryptomed.transfer import build_finetune_model, finetune
efficientnet_lite.convert(sys.argv[2] + ".efficientnet.weights.h5")  # the GPU configurations fine-tune it
tuned = build_finetune_model(sys.argv[2] + ".efficientnet.weights.h5", 32, 2, from_stage=6)
backbone = tuned.get_layer("efficientnet_lite0")
watch = {name: [np.array(w) for w in backbone.get_layer(name).weights]  # frozen: a conv below stage 6 and the batch
         for name in ("block10_project_conv", "block12_dw_bn", "block12_expand_conv")}  # norms; trained: stage 6
xs = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
_, tuned_info = finetune(tuned, xs[:32], y[:32], xs[64:80], y[64:80], 2,
                         {"seed": 0, "learning_rate": 1e-3, "patience": 1, "epochs": 1, "batch_size": 16})
after = {name: [np.array(w) for w in backbone.get_layer(name).weights] for name in watch}
same = {name: all(np.array_equal(a, b) for a, b in zip(watch[name], after[name])) for name in watch}
assert same == {"block10_project_conv": True, "block12_dw_bn": True, "block12_expand_conv": False}, same
assert tuned_info["epochs_run"] == 1 and np.allclose(tuned.predict(xs[64:80], verbose=0).sum(1), 1, atol=1e-4)
print("OK", info["backend"], float((p.argmax(1) == y[64:]).mean()))
"""


@pytest.mark.parametrize("backend,module", [("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch")])
def test_train_save_load_on_backend(backend, module, tmp_path):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / "src"), str(tmp_path / "m.keras")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"OK {backend}" in proc.stdout
