"""The deep CNN, Keras backend selection and training.

Keras 3 only: the same code runs on TensorFlow (default), JAX and PyTorch.  Call
:func:`configure_backend` before anything imports ``keras``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax", "torch")


def configure_backend(backend: str | None = None, threads: int | None = None) -> str:
    """Select the Keras backend and the number of CPU threads; return the backend name.

    ``$KERAS_BACKEND`` wins over ``backend`` so a user (or the GPU profile) can
    switch without touching config.  Must run before ``keras`` is imported.
    """
    import sys

    chosen = os.environ.get("KERAS_BACKEND") or backend or "tensorflow"
    if chosen not in BACKENDS:
        raise ValueError(f"Keras backend must be one of {BACKENDS}, got {chosen!r}")
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != chosen:
        raise RuntimeError(f"keras was imported with backend {sys.modules['keras'].backend.backend()!r} before configure_backend({chosen!r})")
    os.environ["KERAS_BACKEND"] = chosen
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        if chosen == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        elif chosen == "torch":
            import torch

            torch.set_num_threads(threads)
        elif chosen == "jax":
            os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}")
    return chosen


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of the deep CNN (paper: conv + ReLU + pooling blocks, batch norm, dropout, dense, softmax)."""

    filters: tuple[int, ...] = (16, 32, 64, 128)
    convs_per_block: int = 2
    dense_units: int = 128
    dropout: float = 0.4
    block_dropout: float = 0.1
    augment: bool = True
    # Keras' default 0.99 left the moving statistics far from the batch statistics after the few
    # hundred steps a small medical data set gives: validation predictions collapsed to one class.
    bn_momentum: float = 0.9


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 3
    class_weight: str | None = "balanced"  # or None
    seed: int = 42
    model: CNNConfig = field(default_factory=CNNConfig)


def build_cnn(input_shape: tuple[int, int, int], n_classes: int, cfg: CNNConfig = CNNConfig()):
    """Return an uncompiled Keras model: uint8-range pixels in, class probabilities out."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    if cfg.augment:  # active only during training
        x = layers.RandomTranslation(0.05, 0.05, fill_mode="constant")(x)
        x = layers.RandomZoom(0.05, fill_mode="constant")(x)
    for i, filters in enumerate(cfg.filters):
        for j in range(cfg.convs_per_block):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv{j + 1}")(x)
            x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"block{i + 1}_bn{j + 1}")(x)
            x = layers.ReLU(name=f"block{i + 1}_relu{j + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
        if cfg.block_dropout:
            x = layers.Dropout(cfg.block_dropout, name=f"block{i + 1}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cryptomed_cnn")


def as_model_input(images: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 -> (N, H, W, 1) float32 in [0, 255]; the model rescales itself."""
    return images[..., None].astype("float32")


def balanced_class_weight(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    weights = len(labels) / (n_classes * counts)
    return {i: float(w) for i, w in enumerate(weights)}


def train(x_train, y_train, x_val, y_val, n_classes: int, cfg: TrainConfig, verbose: int = 2):
    """Train the CNN with fixed seeds and early stopping on validation loss.

    Returns ``(model, history: dict[str, list], info: dict)``.
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = build_cnn(x_train.shape[1:], n_classes, cfg.model)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # XLA on TensorFlow-CPU ran this CNN 4x slower here; JAX/torch keep Keras' default ("auto").
        jit_compile=False if keras.backend.backend() == "tensorflow" else "auto",
    )
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, cfg.patience - 1)),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
            "epoch %d/%d: %s", epoch + 1, cfg.epochs, ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items()))),
    ]
    class_weight = balanced_class_weight(y_train, n_classes) if cfg.class_weight == "balanced" else None
    t0 = time.perf_counter()
    hist = model.fit(
        x_train, y_train,
        validation_data=(x_val, y_val),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    epochs_run = len(history.get("loss", []))
    best_epoch = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else epochs_run
    info = {
        "backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "parameters": int(model.count_params()),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "train_seconds": seconds,
        "train_images_per_second": (len(x_train) * epochs_run / seconds) if seconds > 0 else None,
        "class_weight": class_weight,
        "n_train": int(len(x_train)),
        "n_val": int(len(x_val)),
    }
    return model, history, info


def predict_proba(model, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Return (probabilities, seconds) for ``x``; one warm-up batch first, so tracing is not timed."""
    model.predict(x[:batch_size], batch_size=batch_size, verbose=0)
    t0 = time.perf_counter()
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(probs, dtype=np.float64), time.perf_counter() - t0


def save_model(model, path) -> None:
    from .files import atomic_path

    with atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path):
    import keras

    return keras.models.load_model(path)
