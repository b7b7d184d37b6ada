import numpy as np
import pytest

from cryptomed.models import CNNConfig, TrainConfig, configure_backend, balanced_class_weight

configure_backend(None, 2)


def _square_task(n: int):
    """(n, 16, 16, 1) noisy images, class 1 with a bright square: a task a small CNN learns in a few epochs."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    x = rng.normal(60, 20, (n, 16, 16, 1)).astype("float32")
    x[y == 1, 4:12, 4:12] += 120  # bright square = class 1
    return x, y


def test_cnn_has_the_papers_building_blocks():
    from cryptomed.models import build_cnn

    m = build_cnn((32, 32, 1), 4, CNNConfig(filters=(8, 16)))
    kinds = {type(layer).__name__ for layer in m.layers}
    assert {"Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D", "Dropout", "Dense"} <= kinds
    assert m.output_shape == (None, 4)
    out = m.predict(np.zeros((3, 32, 32, 1), "float32"), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_training_learns_a_separable_task_and_saves(tmp_path):
    from cryptomed.models import load_model, predict_proba, save_model, train

    x, y = _square_task(200)
    cfg = TrainConfig(epochs=6, batch_size=32, patience=6, seed=1,
                      model=CNNConfig(filters=(8, 16), convs_per_block=1, dense_units=16, augment=False))
    model, history, info = train(x[:160], y[:160], x[160:], y[160:], 2, cfg, verbose=0)
    probs, seconds = predict_proba(model, x[160:])
    assert (probs.argmax(1) == y[160:]).mean() > 0.8
    assert info["epochs_run"] == len(history["loss"]) and seconds > 0
    save_model(model, tmp_path / "m.keras")
    again, _ = predict_proba(load_model(tmp_path / "m.keras"), x[160:])
    np.testing.assert_allclose(again, probs, atol=1e-5)


def test_balanced_class_weight():
    w = balanced_class_weight(np.array([0, 0, 0, 1]), 2)
    assert w[1] == pytest.approx(3 * w[0])


def test_unknown_backend_is_rejected(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    with pytest.raises(ValueError, match="backend"):
        configure_backend("theano")


def test_cosine_recipe_with_label_smoothing_ema_strong_augmentation_and_strided_stem_learns(tmp_path):
    from cryptomed.models import build_cnn, predict_proba, train, train_config

    x, y = _square_task(240)
    params = {"epochs": 8, "batch_size": 32, "learning_rate": 3e-3, "patience": 2, "class_weight": "balanced",
              "seed": 1, "backend": "tensorflow", "schedule": "cosine", "warmup_epochs": 1, "optimizer": "adamw",
              "weight_decay": 1e-4, "label_smoothing": 0.1, "ema": 0.9,
              "model": {"filters": [8, 16], "convs_per_block": 1, "dense_units": 16, "dropout": 0.1,
                        "block_dropout": 0.0, "augment": "strong", "bn_momentum": 0.9, "stem_stride": 2}}
    cfg = train_config(params)
    assert cfg.schedule == "cosine" and cfg.model.stem_stride == 2 and cfg.model.filters == (8, 16)
    model, history, info = train(x[:200], y[:200], x[200:], y[200:], 2, cfg, verbose=0)
    assert info["epochs_run"] == 8 == info["best_epoch"]  # a fixed schedule: no early stop, final weights
    probs, _ = predict_proba(model, x[200:])
    assert (probs.argmax(1) == y[200:]).mean() > 0.8
    kinds = {type(layer).__name__ for layer in build_cnn((16, 16, 1), 2, cfg.model).layers}
    assert {"RandomRotation", "RandomContrast", "RandomBrightness"} <= kinds
    strided = build_cnn((16, 16, 1), 2, cfg.model).get_layer("block1_conv1")
    assert strided.strides == (2, 2)


@pytest.mark.parametrize("bad,match", [({"schedule": "step"}, "schedule"), ({"optimizer": "sgd"}, "optimizer")])
def test_unknown_schedule_or_optimizer_is_rejected(bad, match):
    from cryptomed.models import train

    cfg = TrainConfig(epochs=1, model=CNNConfig(filters=(4,), convs_per_block=1, dense_units=4, augment=False))
    cfg = TrainConfig(**{**cfg.__dict__, **bad})
    x = np.zeros((8, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=match):
        train(x, np.array([0, 1] * 4), x, np.array([0, 1] * 4), 2, cfg, verbose=0)


def test_average_model_is_the_mean_of_members_and_mirrors_and_survives_saving(tmp_path):
    from cryptomed.models import average_model, build_cnn, load_model, predict_proba, save_model

    cfg = CNNConfig(filters=(4, 8), convs_per_block=1, dense_units=8, augment=False)
    members = [build_cnn((16, 16, 1), 3, cfg, name=f"cryptomed_cnn_seed{s}") for s in (1, 2)]
    x = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 1)).astype("float32")
    assert not np.allclose(x, x[:, :, ::-1])
    alone = [m.predict(v, verbose=0) for m in members for v in (x, x[:, :, ::-1])]
    assert not np.allclose(alone[0], alone[1], atol=1e-4)  # the mirror changes the prediction: the check can fail
    probs, _ = predict_proba(average_model(members), x)
    np.testing.assert_allclose(probs, (alone[0] + alone[2]) / 2, atol=1e-6)
    flipped = average_model(members, flip=True)
    probs, _ = predict_proba(flipped, x)
    np.testing.assert_allclose(probs, np.mean(alone, axis=0), atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    save_model(flipped, tmp_path / "mean.keras")
    again, _ = predict_proba(load_model(tmp_path / "mean.keras"), x)
    np.testing.assert_allclose(again, probs, atol=1e-6)


def test_train_members_one_network_is_train_and_several_are_averaged(tmp_path):
    from cryptomed.models import predict_proba, train, train_members

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = rng.normal(60, 20, (120, 16, 16, 1)).astype("float32")
    x[y == 1, 4:12, 4:12] += 120
    cfg = TrainConfig(epochs=2, batch_size=32, patience=2, seed=5,
                      model=CNNConfig(filters=(4,), convs_per_block=1, dense_units=8, augment=False))
    args = (x[:100], y[:100], x[100:], y[100:], 2, cfg)
    alone, _, _ = train(*args, verbose=0)
    one, histories, info = train_members(*args, verbose=0)
    np.testing.assert_array_equal(predict_proba(one, x[100:])[0], predict_proba(alone, x[100:])[0])
    assert [s for s, _ in histories] == [5] and "members" not in info
    mean, histories, info = train_members(*args, members=2, flip=True, verbose=0)
    assert [s for s, _ in histories] == [5, 6] and [m["seed"] for m in info["members"]] == [5, 6]
    assert info["flip_tta"] and info["best_epoch"] is None and info["epochs_run"] == 4
    assert mean.count_params() == 2 * alone.count_params()


def _blob_images(n=3, size=24):
    """Random images, bright up to their borders (so a wrong fill mode shows)."""
    return np.random.default_rng(3).uniform(50, 255, (n, size, size, 1)).astype("float32")


def _keras_affine(x, zoom_rows, zoom_cols, dy, dx):
    """Keras' own bilinear resampling (constant 0 fill) of per-image zooms about the centre, then shifts (fractions
    of the side): output (col, row) samples input (a0 col + a2, b1 row + b2)."""
    import keras

    h, w = x.shape[1:3]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    zero = 0 * zoom_rows
    transform = np.stack([zoom_cols, zero, cx * (1 - zoom_cols) - dx * w, zero, zoom_rows, cy * (1 - zoom_rows) - dy * h,
                          zero, zero], axis=1).astype("float32")
    return np.asarray(keras.ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="constant",
                                                       fill_value=0))


def test_shift_zoom_equals_keras_affine_transform_for_the_same_zoom_and_shift():
    """The matmul augmentation is Keras' affine resampling (bilinear, constant 0 fill) of the combined zoom and
    shift, written as two matrix products: same output for the same per-image zoom and shift."""
    from cryptomed.models import _shift_zoom_layer

    x = _blob_images()
    zoom, dy, dx = np.array([1.05, 0.95, 1.0]), np.array([0.05, -0.03, 0.0]), np.array([-0.04, 0.02, 0.1])
    ours = np.asarray(_shift_zoom_layer().resample(x, zoom, dy, dx))
    np.testing.assert_allclose(ours, _keras_affine(x, zoom, zoom, dy, dx), atol=1e-3)
    assert np.abs(ours - x).max() > 10  # it did move the images


def test_shift_zoom_is_identity_at_inference_and_with_zero_ranges_and_moves_images_in_training():
    from cryptomed.models import _shift_zoom_layer

    x = _blob_images()
    layer = _shift_zoom_layer()(0.05, 0.05, seed=0)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_allclose(np.asarray(_shift_zoom_layer()(0.0, 0.0)(x, training=True)), x, atol=1e-4)
    a, b = (np.asarray(layer(x, training=True)) for _ in range(2))
    assert a.shape == x.shape and np.abs(a - x).max() > 1 and np.abs(a - b).max() > 1  # fresh draws per call
    whole = np.asarray(_shift_zoom_layer().resample(x, np.ones(3), np.full(3, 2 / 24), np.zeros(3)))
    np.testing.assert_allclose(whole[:, 2:], x[:, :-2], atol=1e-4)  # 2 pixels down ...
    assert (x[:, :2] > 0).all()
    np.testing.assert_array_equal(whole[:, :2], 0)  # ... and zeros shifted in, not the edge repeated
    zoomed_out = np.asarray(_shift_zoom_layer().resample(x, np.full(3, 1.2), np.zeros(3), np.zeros(3)))
    assert (zoomed_out[:, 0] == 0).all() and (zoomed_out[:, :, -1] == 0).all()  # zero border around the image


def test_matmul_augmentation_trains_saves_and_is_configured(tmp_path):
    from cryptomed.models import build_cnn, load_model, predict_proba, save_model, train, train_config

    x, y = _square_task(160)
    params = {"epochs": 5, "batch_size": 32, "learning_rate": 3e-3, "patience": 5, "class_weight": "balanced",
              "seed": 1, "model": {"filters": [8, 16], "convs_per_block": 1, "dense_units": 16, "dropout": 0.1,
                                   "block_dropout": 0.0, "augment": True, "bn_momentum": 0.9,
                                   "augment_impl": "matmul"}}
    cfg = train_config(params)
    assert cfg.model.augment_impl == "matmul"
    model, _, _ = train(x[:128], y[:128], x[128:], y[128:], 2, cfg, verbose=0)
    assert "ShiftZoom" in {type(layer).__name__ for layer in model.layers}
    probs, _ = predict_proba(model, x[128:])
    assert (probs.argmax(1) == y[128:]).mean() > 0.8
    save_model(model, tmp_path / "m.keras")
    np.testing.assert_allclose(predict_proba(load_model(tmp_path / "m.keras"), x[128:])[0], probs, atol=1e-5)
    with pytest.raises(ValueError, match="rotates"):
        build_cnn((16, 16, 1), 2, CNNConfig(augment="strong", augment_impl="matmul"))
    with pytest.raises(ValueError, match="augment_impl"):
        build_cnn((16, 16, 1), 2, CNNConfig(augment_impl="gather"))


def _box_extents(images):
    """Width and height of a centred bright box in each image (pixels above half brightness on the middle row and
    column)."""
    images = np.asarray(images)[..., 0]
    mid = images.shape[1] // 2
    return (images[:, mid, :] > 0.5).sum(1), (images[:, :, mid] > 0.5).sum(1)


@pytest.mark.parametrize("impl", ["keras", "matmul"])
def test_aspect_jitter_zooms_the_width_independently_of_the_height(impl):
    """model.aspect_jitter: the width is zoomed by up to +-20%, the height by the basic +-5% only, independently;
    without it both axes take one zoom. Only in training."""
    import keras

    from cryptomed.models import build_cnn

    x = np.zeros((256, 64, 64, 1), "float32")
    x[:, 16:48, 16:48] = 255.0
    keras.utils.set_random_seed(0)
    for jitter in (0.2, 0.0):
        model = build_cnn((64, 64, 1), 2, CNNConfig(filters=(4,), convs_per_block=1, dense_units=4,
                                                    augment_impl=impl, aspect_jitter=jitter))
        first_conv = model.layers.index(model.get_layer("block1_conv1"))
        augment = keras.Sequential(model.layers[1:first_conv])  # rescaling and the augmentation layers
        width, height = _box_extents(augment(x, training=True))
        if jitter:
            assert width.max() - width.min() >= 10  # 32 px wide, zoomed by up to 20%: about 27 to 40
            assert height.max() - height.min() <= 6  # the basic +-5% zoom: about 30 to 34
            assert abs(np.corrcoef(width, height)[0, 1]) < 0.3
        else:
            assert width.max() - width.min() <= 6 and np.corrcoef(width, height)[0, 1] > 0.5
        np.testing.assert_array_equal(np.asarray(augment(x, training=False)), x / 255.0)


def test_shift_zoom_width_zoom_equals_keras_affine_transform_and_aspect_jitter_is_checked():
    from cryptomed.models import _shift_zoom_layer, build_cnn

    x = _blob_images()
    zoom, zoom_cols, dy, dx = (np.array([1.05, 0.95, 1.0]), np.array([0.8, 1.2, 1.1]), np.array([0.05, -0.03, 0.0]),
                               np.array([-0.04, 0.02, 0.1]))
    ours = np.asarray(_shift_zoom_layer().resample(x, zoom, dy, dx, zoom_cols))
    np.testing.assert_allclose(ours, _keras_affine(x, zoom, zoom_cols, dy, dx), atol=1e-3)
    assert _shift_zoom_layer()(0.05, 0.05, width_zoom=0.2).get_config()["width_zoom"] == 0.2
    with pytest.raises(ValueError, match="aspect_jitter must be in"):
        build_cnn((16, 16, 1), 2, CNNConfig(aspect_jitter=1.5))
    with pytest.raises(ValueError, match="aspect_jitter needs augment: basic"):
        build_cnn((16, 16, 1), 2, CNNConfig(augment="strong", aspect_jitter=0.2))


def test_augment_speed_benchmark_runs_and_prints_the_three_implementations():
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "augment_speed.py"), "--size", "32",
                           "--batch", "8", "--steps", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("none", "keras", "matmul", "matmul / keras"):
        assert f"{name}:" in proc.stdout


def test_threads_requested_after_tensorflow_started_warn_instead_of_failing():
    """One process running several stages (pytest without xdist): TensorFlow's thread pools are fixed once its
    runtime has started, so a second configure_backend with another thread count warns and keeps them."""
    import subprocess
    import sys

    code = """
import warnings
from cryptomed.models import configure_backend
configure_backend("tensorflow", threads=1)
import tensorflow as tf
tf.constant(1.0) + 1.0  # the runtime starts
with warnings.catch_warnings(record=True) as same:
    warnings.simplefilter("always")
    configure_backend("tensorflow", threads=1)
with warnings.catch_warnings(record=True) as other:
    warnings.simplefilter("always")
    configure_backend("tensorflow", threads=2)
assert not [w for w in same if issubclass(w.category, RuntimeWarning)], same
assert any("keeping 1" in str(w.message) for w in other), [str(w.message) for w in other]
assert tf.config.threading.get_intra_op_parallelism_threads() == 1
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_distill_targets_mix_the_true_label_with_the_teacher_and_refuse_bad_input():
    from cryptomed.models import distill_targets

    teacher = np.array([[0.2, 0.8], [0.6, 0.4]])
    t = distill_targets(np.array([0, 0]), teacher, 0.5)
    np.testing.assert_allclose(t, [[0.6, 0.4], [0.8, 0.2]], atol=1e-7)
    assert t.dtype == np.float32 and np.allclose(t.sum(1), 1)
    np.testing.assert_allclose(distill_targets(np.array([1, 0]), teacher, 1.0), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="shape"):
        distill_targets(np.array([0, 1, 1]), teacher)
    with pytest.raises(ValueError, match="alpha"):
        distill_targets(np.array([0, 1]), teacher, 1.5)
    with pytest.raises(ValueError, match="sum to 1"):
        distill_targets(np.array([0, 1]), teacher * 2)


def test_soft_targets_are_what_the_network_learns_with_the_true_labels_class_weights(monkeypatch):
    import keras

    from cryptomed.models import distill_targets, predict_proba, train

    x, y = _square_task(300)
    keep = (y == 1) | (np.cumsum(y == 0) <= 50)  # about three images of class 1 to one of class 0
    x, y = x[keep][:200], y[keep][:200]
    cfg = TrainConfig(epochs=1, batch_size=32, patience=1, seed=3,
                      model=CNNConfig(filters=(8,), convs_per_block=1, dense_units=8, augment=False))
    args = (x[:160], y[:160], x[160:], y[160:], 2, cfg)
    seen, fit = [], keras.Model.fit

    def spy(self, *a, **kw):
        seen.append((a, kw))
        return fit(self, *a, **kw)

    monkeypatch.setattr(keras.Model, "fit", spy)
    train(*args, verbose=0)
    # a teacher that disagrees with the label on every image: its argmax would give other class weights
    teacher = np.eye(2)[1 - y[:160]] * 0.8 + 0.1
    train(*args, verbose=0, soft_targets=distill_targets(y[:160], teacher, 0.4))
    (hard_args, hard), (soft_args, soft) = seen
    weights = {0: 160 / (2 * (y[:160] == 0).sum()), 1: 160 / (2 * (y[:160] == 1).sum())}
    assert hard["class_weight"] == pytest.approx(weights) and hard["sample_weight"] is None
    assert soft["class_weight"] is None
    np.testing.assert_allclose(soft["sample_weight"], [weights[int(c)] for c in y[:160]], rtol=1e-6)
    np.testing.assert_allclose(soft_args[1], 0.4 * np.eye(2)[y[:160]] + 0.6 * teacher, atol=1e-6)  # the targets
    np.testing.assert_array_equal(soft["validation_data"][1], np.eye(2)[y[160:]])  # validated on the true labels
    monkeypatch.undo()
    # a teacher that says the opposite of every label, followed alone, teaches the opposite task (validated against
    # the opposite too: early stopping would otherwise keep the untrained network)
    flipped = np.eye(2)[1 - y[:160]]
    cfg = TrainConfig(epochs=8, batch_size=32, patience=8, seed=3,
                      model=CNNConfig(filters=(8, 16), convs_per_block=1, dense_units=16, augment=False))
    model, _, _ = train(x[:160], y[:160], x[160:], 1 - y[160:], 2, cfg, verbose=0,
                        soft_targets=distill_targets(y[:160], flipped, 0.0))
    assert (predict_proba(model, x[160:])[0].argmax(1) != y[160:]).mean() > 0.8
    with pytest.raises(ValueError, match="soft targets"):
        train(*args, verbose=0, soft_targets=np.full((160, 3), 1 / 3))
