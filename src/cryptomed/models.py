"""The deep CNN, Keras backend selection and training.

Keras 3 only: the same code runs on TensorFlow (default), JAX and PyTorch.  Call
:func:`configure_backend` before anything imports ``keras``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("tensorflow", "jax", "torch")


def configure_backend(backend: str | None = None, threads: int | None = None, deterministic: bool = False) -> str:
    """Select the Keras backend and the number of CPU threads; return the backend name.

    ``$KERAS_BACKEND`` wins over ``backend`` so a user (or the GPU profile) can
    switch without touching config.  Must run before ``keras`` is imported.
    ``deterministic``: ask the backend for deterministic kernels (TensorFlow op determinism, torch's
    deterministic algorithms, XLA's deterministic GPU ops for JAX); with fixed seeds a training then repeats to
    the bit on the same machine and library versions (``benchmarks/determinism.py`` measures the cost).
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

            wanted = (threads, min(2, threads))
            current = (tf.config.threading.get_intra_op_parallelism_threads(),
                       tf.config.threading.get_inter_op_parallelism_threads())
            if current != wanted:
                try:
                    tf.config.threading.set_intra_op_parallelism_threads(wanted[0])
                    tf.config.threading.set_inter_op_parallelism_threads(wanted[1])
                except RuntimeError:  # TensorFlow's runtime already started in this process (e.g. one pytest
                    # process running several stages): its thread pools are fixed, so keep them and say so
                    import warnings

                    warnings.warn(f"TensorFlow is already initialised with {current[0]} intra-op threads; "
                                  f"{threads} requested: keeping {current[0]}", RuntimeWarning, stacklevel=2)
        elif chosen == "torch":
            import torch

            torch.set_num_threads(threads)
        elif chosen == "jax":
            os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}")
    if deterministic:
        _deterministic_ops(chosen)
    return chosen


def _deterministic_ops(backend: str) -> None:
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
        import torch

        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif backend == "jax":  # CPU XLA is deterministic; GPU reductions need the flag (read when JAX starts)
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_gpu_deterministic_ops")]
        os.environ["XLA_FLAGS"] = " ".join(flags + ["--xla_gpu_deterministic_ops=true"])


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of the deep CNN (paper: conv + ReLU + pooling blocks, batch norm, dropout, dense, softmax)."""

    filters: tuple[int, ...] = (16, 32, 64, 128)
    convs_per_block: int = 2
    dense_units: int = 128
    dropout: float = 0.4
    block_dropout: float = 0.1
    augment: bool | str = True  # False/"none"; True/"basic": +-5% shift and zoom; "strong": + rotation, zoom,
    # contrast and brightness (the acquisition shift between hospitals and machines); never flips (chest films
    # have a heart side)
    stem_stride: int = 1  # 2: the first convolution is strided (4x fewer full-resolution operations)
    # How "basic" augmentation resamples: "keras" = RandomTranslation + RandomZoom layers (fast on TensorFlow,
    # the CPU default); "matmul" = the same random shift and zoom applied as one bilinear resampling, two batched
    # matrix products (ShiftZoom; Keras resamples twice: slightly more blur, a slightly wider zero border). With
    # Keras' layers, training ran 68x slower than without augmentation on JAX on an H200.
    augment_impl: str = "keras"
    # With basic augmentation: the width is zoomed independently of the height, by a factor in 1 +- aspect_jitter
    # (0: one zoom for both axes). Aimed at the chest X-ray mirror's squashed films: every original, whatever its
    # aspect ratio, was resized to a square (docs/tuning.md).
    aspect_jitter: float = 0.0
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
    # "plateau": Adam(W), learning rate halved on a validation-loss plateau, early stopping with the best
    # weights restored. "cosine": linear warm-up then cosine decay to 0 over exactly ``epochs`` epochs, the final
    # (EMA) weights kept: no epoch is picked on a noisy validation score.
    schedule: str = "plateau"
    warmup_epochs: int = 0
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    label_smoothing: float = 0.0
    ema: float | None = None  # exponential moving average of the weights (e.g. 0.99), used after training


def train_config(params: dict) -> TrainConfig:
    """A :class:`TrainConfig` from the config's ``train`` section (unknown keys such as ``backend`` ignored)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "class_weight"}
    model = dict(params["model"])
    model["filters"] = tuple(model["filters"])
    return TrainConfig(**{k: params[k] for k in names if k in params},
                       class_weight=None if params.get("class_weight") == "none" else params.get("class_weight"),
                       model=CNNConfig(**model))


def build_cnn(input_shape: tuple[int, int, int], n_classes: int, cfg: CNNConfig = CNNConfig(),
              name: str = "cryptomed_cnn"):
    """Return an uncompiled Keras model: uint8-range pixels in, class probabilities out."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    augment = {True: "basic", False: "none"}.get(cfg.augment, cfg.augment)
    if augment not in ("none", "basic", "strong"):
        raise ValueError(f"model.augment must be none, basic or strong (or a boolean), got {cfg.augment!r}")
    if cfg.augment_impl not in ("keras", "matmul"):
        raise ValueError(f"model.augment_impl must be keras or matmul, got {cfg.augment_impl!r}")
    if cfg.augment_impl == "matmul" and augment == "strong":
        raise ValueError("model.augment_impl: matmul implements the basic augmentation (shift and zoom) only; "
                         "augment: strong rotates, which needs augment_impl: keras")
    if not 0.0 <= cfg.aspect_jitter < 1.0:
        raise ValueError(f"model.aspect_jitter must be in [0, 1), got {cfg.aspect_jitter!r}")
    if cfg.aspect_jitter and augment != "basic":
        raise ValueError(f"model.aspect_jitter needs augment: basic, got augment: {augment}")
    width_zoom = cfg.aspect_jitter or None  # None: the width takes the height's zoom
    if augment == "basic" and cfg.augment_impl == "matmul":
        x = _shift_zoom_layer()(0.05, 0.05, width_zoom=width_zoom, name="shift_zoom")(x)
    elif augment == "basic":  # active only during training
        x = layers.RandomTranslation(0.05, 0.05, fill_mode="constant")(x)
        x = layers.RandomZoom(0.05, width_zoom, fill_mode="constant")(x)
    elif augment == "strong":
        x = layers.RandomRotation(0.03, fill_mode="constant")(x)  # +-11 degrees
        x = layers.RandomTranslation(0.08, 0.08, fill_mode="constant")(x)
        x = layers.RandomZoom(0.12, fill_mode="constant")(x)
        x = layers.RandomContrast(0.3)(x)
        x = layers.RandomBrightness(0.15, value_range=(0.0, 1.0))(x)
    for i, filters in enumerate(cfg.filters):
        for j in range(cfg.convs_per_block):
            strides = cfg.stem_stride if (i, j) == (0, 0) else 1
            x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                              name=f"block{i + 1}_conv{j + 1}")(x)
            x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"block{i + 1}_bn{j + 1}")(x)
            x = layers.ReLU(name=f"block{i + 1}_relu{j + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
        if cfg.block_dropout:
            x = layers.Dropout(cfg.block_dropout, name=f"block{i + 1}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(cfg.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


_FLIP = None
_SHIFT_ZOOM = None


def _interpolation_matrices(positions, size: int):
    """Bilinear weights (batch, out, size): row i holds the weights of the input pixels at the (fractional)
    position ``positions[:, i]``; positions outside the image get zero weight (constant fill with 0)."""
    from keras import ops

    grid = ops.arange(size, dtype="float32")[None, None, :]
    return ops.maximum(0.0, 1.0 - ops.abs(positions[:, :, None] - grid))


def _shift_zoom_layer():
    """The ``ShiftZoom`` layer class (made once, after the backend is chosen; registered for loading)."""
    global _SHIFT_ZOOM
    if _SHIFT_ZOOM is None:
        import keras
        from keras import ops

        @keras.saving.register_keras_serializable(package="cryptomed")
        class ShiftZoom(keras.layers.Layer):
            """Random shift (a fraction of each side, uniform in +-``shift``) and zoom (factor uniform in
            1 +- ``zoom``, the same on both axes) per image, in training only: the draws of Keras' RandomTranslation
            and RandomZoom with ``fill_mode="constant"`` and bilinear interpolation, applied as one resampling (Keras
            applies two, each blurring once and each zeroing what falls outside). Shift and zoom scale each axis
            separately, so the resampling is ``Ry @ image @ Rx.T`` with per-image bilinear matrices: batched
            matrix products, fast on every backend and device (with Keras' layers, whose affine transform on JAX is
            a gather, training ran at 94 images/s on an H200)."""

            def __init__(self, shift: float = 0.05, zoom: float = 0.05, seed: int | None = None,
                         width_zoom: float | None = None, **kwargs):
                super().__init__(**kwargs)
                self.shift, self.zoom, self.seed = float(shift), float(zoom), seed
                self.width_zoom = None if width_zoom is None else float(width_zoom)  # None: the height's zoom
                self.seed_generator = keras.random.SeedGenerator(seed)

            def call(self, x, training=None):
                if not training:
                    return x
                n = 3 if self.width_zoom is None else 4
                draws = keras.random.uniform((ops.shape(x)[0], n), -1.0, 1.0, seed=self.seed_generator)
                zoom = 1.0 + self.zoom * draws[:, 0]
                zoom_cols = zoom if self.width_zoom is None else 1.0 + self.width_zoom * draws[:, 3]
                return self.resample(x, zoom, self.shift * draws[:, 1], self.shift * draws[:, 2], zoom_cols)

            @staticmethod
            def resample(x, zoom, shift_rows, shift_cols, zoom_cols=None):
                """Zoom each image by ``zoom`` (> 1: out, < 1: in) about its centre (its width by ``zoom_cols``
                where given), then shift it down by ``shift_rows`` and right by ``shift_cols`` (fractions of the
                side): per-image (batch,) values."""
                height, width = x.shape[1], x.shape[2]
                zoom_cols = zoom if zoom_cols is None else zoom_cols
                ry = _interpolation_matrices(ShiftZoom._positions(height, zoom, shift_rows), height)
                rx = _interpolation_matrices(ShiftZoom._positions(width, zoom_cols, shift_cols), width)
                x = ops.einsum("bij,bjwc->biwc", ry, x)
                return ops.einsum("bkw,biwc->bikc", rx, x)

            @staticmethod
            def _positions(size, zoom, shift):
                """Input position sampled by each output pixel: zoom about the centre, then shift."""
                centre = (size - 1) / 2.0
                out = ops.arange(size, dtype="float32")[None, :]
                zoom = ops.reshape(ops.cast(zoom, "float32"), (-1, 1))
                shift = ops.reshape(ops.cast(shift, "float32"), (-1, 1))
                return (out - centre) * zoom + centre - shift * size

            def compute_output_shape(self, input_shape):
                return input_shape

            def get_config(self):
                return {**super().get_config(), "shift": self.shift, "zoom": self.zoom, "seed": self.seed,
                        "width_zoom": self.width_zoom}

        _SHIFT_ZOOM = ShiftZoom
    return _SHIFT_ZOOM


def _flip_layer():
    """The ``HorizontalFlip`` layer class (made once, after the backend is chosen; registered for loading)."""
    global _FLIP
    if _FLIP is None:
        import keras

        @keras.saving.register_keras_serializable(package="cryptomed")
        class HorizontalFlip(keras.layers.Layer):
            """Mirror images left-right, in training and inference alike (test-time augmentation)."""

            def call(self, x):
                return keras.ops.flip(x, axis=2)

        _FLIP = HorizontalFlip
    return _FLIP


def __getattr__(name: str):
    """``cryptomed.models.HorizontalFlip``: where Keras looks for the layer when a model is loaded without
    :func:`load_model`."""
    if name == "HorizontalFlip":
        return _flip_layer()
    if name == "ShiftZoom":
        return _shift_zoom_layer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def average_model(members: list, flip: bool = False):
    """One Keras model whose output is the mean of the members' class probabilities (a seed ensemble), each also
    applied to the horizontally mirrored image when ``flip`` (test-time augmentation). Saved and loaded as one file."""
    import keras

    inputs = keras.Input(shape=members[0].input_shape[1:], name="image")
    views = [inputs, _flip_layer()(name="mirror")(inputs)] if flip else [inputs]
    outputs = [member(view) for member in members for view in views]
    mean = keras.layers.Average(name="mean_probabilities")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, mean, name="cryptomed_cnn_mean")


def as_model_input(images: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 -> (N, H, W, 1) float32 in [0, 255]; the model rescales itself."""
    return images[..., None].astype("float32")


def balanced_class_weight(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    weights = len(labels) / (n_classes * counts)
    return {i: float(w) for i, w in enumerate(weights)}


def distill_targets(labels: np.ndarray, teacher_probs: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Training targets for distillation: ``alpha`` x the one-hot true label + (1 - alpha) x the teacher's
    probabilities (rows summing to 1), as float32 (N, classes)."""
    labels, teacher_probs = np.asarray(labels), np.asarray(teacher_probs, dtype=np.float64)
    if teacher_probs.ndim != 2 or len(teacher_probs) != len(labels):
        raise ValueError(f"teacher probabilities must be (N, classes) for {len(labels)} labels, "
                         f"got shape {teacher_probs.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation alpha must be in [0, 1], got {alpha!r}")
    if not np.allclose(teacher_probs.sum(axis=1), 1.0, atol=1e-4) or (teacher_probs < 0).any():
        raise ValueError("teacher probabilities must be non-negative and sum to 1 per image")
    onehot = np.eye(teacher_probs.shape[1])[labels]
    return (alpha * onehot + (1.0 - alpha) * teacher_probs).astype("float32")


def train(x_train, y_train, x_val, y_val, n_classes: int, cfg: TrainConfig, verbose: int = 2,
          name: str = "cryptomed_cnn", soft_targets: np.ndarray | None = None):
    """Train the CNN with fixed seeds and early stopping on validation loss.

    ``soft_targets`` (N, classes), if given, replace the one-hot training targets (distillation,
    :func:`distill_targets`); class weights and the validation loss still use the true labels.
    Returns ``(model, history: dict[str, list], info: dict)``.
    """
    import keras

    keras.utils.set_random_seed(cfg.seed)
    model = build_cnn(x_train.shape[1:], n_classes, cfg.model, name=name)
    steps_per_epoch = max(1, -(-len(x_train) // cfg.batch_size))
    progress = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(
        "epoch %d/%d: %s", epoch + 1, cfg.epochs, ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())))
    if cfg.schedule == "cosine":
        warmup = cfg.warmup_epochs * steps_per_epoch
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else cfg.learning_rate, decay_steps=max(1, cfg.epochs * steps_per_epoch - warmup),
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
        callbacks = [progress]
    elif cfg.schedule == "plateau":
        learning_rate = cfg.learning_rate
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, cfg.patience - 1)),
            progress,
        ]
    else:
        raise ValueError(f"train.schedule must be plateau or cosine, got {cfg.schedule!r}")
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema else {}
    if cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=cfg.weight_decay, **ema)
    elif cfg.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, **ema)
    else:
        raise ValueError(f"train.optimizer must be adam or adamw, got {cfg.optimizer!r}")
    sample_weight = None
    if soft_targets is not None:
        soft_targets = np.asarray(soft_targets, dtype="float32")
        if soft_targets.shape != (len(y_train), n_classes):
            raise ValueError(f"soft targets must have shape {(len(y_train), n_classes)}, got {soft_targets.shape}")
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        labels_train = np.asarray(y_train)
        y_train, y_val = soft_targets, keras.utils.to_categorical(y_val, n_classes)
    elif cfg.label_smoothing:  # one-hot targets: the sparse loss has no label smoothing
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        y_train, y_val = (keras.utils.to_categorical(y, n_classes) for y in (y_train, y_val))
        labels_train = np.argmax(y_train, axis=1)
    else:
        loss, labels_train = "sparse_categorical_crossentropy", y_train
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=["accuracy"],
        # XLA on TensorFlow-CPU ran this CNN 4x slower here; JAX/torch keep Keras' default ("auto").
        jit_compile=False if keras.backend.backend() == "tensorflow" else "auto",
    )
    class_weight = balanced_class_weight(labels_train, n_classes) if cfg.class_weight == "balanced" else None
    if soft_targets is not None and class_weight is not None:
        # Keras derives class weights from the target's argmax; a soft target's need not be the true label.
        sample_weight = np.array([class_weight[c] for c in range(n_classes)], dtype="float32")[labels_train]
    t0 = time.perf_counter()
    hist = model.fit(
        x_train, y_train,
        validation_data=(x_val, y_val),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        class_weight=None if sample_weight is not None else class_weight,
        sample_weight=sample_weight,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    epochs_run = len(history.get("loss", []))
    if cfg.schedule == "plateau" and history.get("val_loss"):
        best_epoch = int(np.argmin(history["val_loss"])) + 1  # restored by early stopping
    else:
        best_epoch = epochs_run  # the final weights (their moving average with ema)
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


def train_members(x_train, y_train, x_val, y_val, n_classes: int, cfg: TrainConfig, members: int = 1,
                  flip: bool = False, verbose: int = 2):
    """The proposed CNN as ``members`` networks of seeds ``cfg.seed``, ``cfg.seed + 1``, ... (one network: exactly
    :func:`train`), as one model averaging their probabilities (and the mirrored image's, with ``flip``).

    Returns ``(model, [(seed, history), ...], info)``; an ensemble's info lists each member's under ``members``.
    """
    models, histories, infos = [], [], []
    for i in range(members):
        member_cfg = dataclasses.replace(cfg, seed=cfg.seed + i)
        name = "cryptomed_cnn" if members == 1 else f"cryptomed_cnn_seed{member_cfg.seed}"
        model, history, info = train(x_train, y_train, x_val, y_val, n_classes, member_cfg, verbose, name=name)
        models.append(model), histories.append((member_cfg.seed, history)), infos.append({"seed": member_cfg.seed, **info})
        log.info("network %d/%d (seed %d): %d epochs (best %d) in %.0f s, %.0f images/s", i + 1, members,
                 member_cfg.seed, info["epochs_run"], info["best_epoch"], info["train_seconds"],
                 info["train_images_per_second"] or 0)
    if members == 1 and not flip:
        return models[0], histories, infos[0]
    model = average_model(models, flip)
    seconds, epochs = sum(m["train_seconds"] for m in infos), sum(m["epochs_run"] for m in infos)
    info = {**{k: infos[0][k] for k in ("backend", "keras_version", "class_weight", "n_train", "n_val")},
            "parameters": int(model.count_params()), "members": infos, "flip_tta": flip, "epochs_run": epochs,
            "best_epoch": None, "train_seconds": seconds,
            "train_images_per_second": len(x_train) * epochs / seconds if seconds else None}
    return model, histories, info


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

    _flip_layer()  # registered, for models with test-time flips
    _shift_zoom_layer()  # and for models with matmul augmentation
    return keras.models.load_model(path)
