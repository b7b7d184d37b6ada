"""Label-free test-time batch-norm adaptation (AdaBN, cryptomed.adapt)."""

import numpy as np
import pytest

from cryptomed.models import CNNConfig, configure_backend

configure_backend(None, 2)

CFG = CNNConfig(filters=(4, 8), convs_per_block=1, dense_units=8, block_dropout=0.2, augment=True, stem_stride=2)


def _images(seed=0, n=40, offset=0.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(100 + offset, 30, (n, 16, 16, 1)) + np.linspace(0, 40, 16)[None, None, :, None]).astype("float32")


def _bn_outputs(net, x):
    """Each batch-norm layer's inference-mode output over ``x``, from Keras' own forward pass (not the walk)."""
    import keras

    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    outs = keras.Model(net.inputs, [bn.output for bn in bns]).predict(x, verbose=0)
    return {bn.name: (np.asarray(out), bn) for bn, out in zip(bns, outs)}


def test_adapted_layers_normalise_the_images_they_were_adapted_to():
    from cryptomed.adapt import adapt_batchnorm
    from cryptomed.models import build_cnn

    model = build_cnn((16, 16, 1), 3, CFG)
    x = _images(offset=50.0)  # far from the untrained moving statistics (mean 0, variance 1)
    before = _bn_outputs(model, x)
    assert any(np.abs(out.mean(axis=(0, 1, 2))).max() > 0.05 or np.abs(out.std(axis=(0, 1, 2)) - 1).max() > 0.1
               for out, _ in before.values())  # not normalised yet
    info = adapt_batchnorm(model, x)
    assert info["batchnorm_layers"] == 2 and info["images"] == 40 and not info["mirrored_views"]
    for name, (out, bn) in _bn_outputs(model, x).items():
        # gamma = 1, beta = 0 untrained: every channel now has mean 0 over x, and the standard deviation
        # sqrt(var / (var + epsilon)) of x's own variance
        var = np.asarray(bn.moving_variance)
        np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(out.std(axis=(0, 1, 2)), np.sqrt(var / (var + bn.epsilon)), rtol=1e-3, err_msg=name)


def test_adaptation_does_not_depend_on_image_order_and_changes_predictions():
    from cryptomed.adapt import adapt_batchnorm
    from cryptomed.models import build_cnn, predict_proba

    x = _images(offset=50.0)
    a, b = build_cnn((16, 16, 1), 3, CFG), build_cnn((16, 16, 1), 3, CFG)
    b.set_weights(a.get_weights())
    p0, _ = predict_proba(a, x)
    adapt_batchnorm(a, x)
    adapt_batchnorm(b, x[::-1])
    pa, _ = predict_proba(a, x)
    np.testing.assert_allclose(pa, predict_proba(b, x)[0], atol=1e-5)
    assert np.abs(pa - p0).max() > 1e-3


def test_ensemble_members_are_adapted_and_mirrored_views_counted(tmp_path):
    from cryptomed.adapt import adapt_batchnorm
    from cryptomed.models import average_model, build_cnn, load_model, save_model

    members = [build_cnn((16, 16, 1), 2, CFG, name=f"m{i}") for i in range(2)]
    save_model(average_model(members, flip=True), tmp_path / "e.keras")
    model = load_model(tmp_path / "e.keras")
    x = _images(offset=50.0)
    info = adapt_batchnorm(model, x)
    assert info["batchnorm_layers"] == 4 and info["mirrored_views"]
    both = np.concatenate([x, x[:, :, ::-1]])
    for net in [layer for layer in model.layers if hasattr(layer, "layers")]:
        for name, (out, _) in _bn_outputs(net, both).items():
            np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-3, err_msg=f"{net.name}/{name}")


def test_a_network_that_is_not_a_chain_or_no_images_is_refused():
    import keras

    from cryptomed.adapt import adapt_batchnorm

    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(2, 3, padding="same")(inp)
    b = keras.layers.BatchNormalization()(a)
    out = keras.layers.Add()([a, b])  # a skip connection
    model = keras.Model(inp, out, name="skip")
    with pytest.raises(ValueError, match="chain"):
        adapt_batchnorm(model, np.zeros((4, 8, 8, 1), "float32"))
    from cryptomed.models import build_cnn

    with pytest.raises(ValueError, match="images of shape"):
        adapt_batchnorm(build_cnn((16, 16, 1), 2, CFG), np.zeros((0, 16, 16, 1), "float32"))
    seq = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="starts with its input layer"):  # Sequential.layers omits the input
        adapt_batchnorm(seq, np.zeros((4, 8, 8, 1), "float32"))
    inp = keras.Input((8, 8, 1))
    channels_first = keras.Model(inp, keras.layers.BatchNormalization(axis=1)(keras.layers.Conv2D(2, 3)(inp)))
    with pytest.raises(ValueError, match="axis"):
        adapt_batchnorm(channels_first, np.zeros((4, 8, 8, 1), "float32"))
    member = build_cnn((16, 16, 1), 2, CFG)
    inp = keras.Input((16, 16, 1))
    wrapped = keras.Model(inp, member(keras.layers.Rescaling(2.0)(inp)))  # a layer before the network
    with pytest.raises(ValueError, match="only an ensemble"):
        adapt_batchnorm(wrapped, np.zeros((4, 16, 16, 1), "float32"))


def test_benchmarks_score_validation_only_and_write_their_rows(tmp_path):
    """benchmarks/adapt_validation.py and adapt_class_mix.py on a tiny saved network: their validation rows."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from cryptomed.models import build_cnn, save_model

    repo = Path(__file__).resolve().parents[1]
    rng = np.random.default_rng(0)
    n = 160
    labels = np.tile(np.arange(3), n // 3 + 1)[:n]
    images = np.clip(rng.normal(100, 30, (n, 16, 16)) + 40 * labels[:, None, None], 0, 255).astype("uint8")
    splits = np.array(["train"] * 40 + ["val"] * 90 + ["test"] * 30)
    npz = tmp_path / "brain_mri" / "images.npz"
    npz.parent.mkdir()
    np.savez(npz, images=images, labels=labels, splits=splits, ids=np.array([f"{i:04d}" for i in range(n)]),
             classes=np.array(["a", "b", "c"]))
    save_model(build_cnn((16, 16, 1), 3, CFG), tmp_path / "m.keras")
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(repo / "benchmarks/adapt_validation.py"), str(npz), "--model",
                    str(tmp_path / "m.keras"), "--seeds", "--out", str(out)], check=True, capture_output=True, timeout=300)
    rows = pd.read_csv(out / "brain_mri.csv")
    assert rows["adapted"].tolist() == [False, True] and (rows["n_val"] == 90).all()
    subprocess.run([sys.executable, str(repo / "benchmarks/adapt_class_mix.py"), str(npz), "--model",
                    str(tmp_path / "m.keras"), "--size", "30", "--repeats", "2", "--out", str(out / "mix.csv")],
                   check=True, capture_output=True, timeout=300)
    mix = pd.read_csv(out / "mix.csv")
    assert sorted(set(mix["mix"])) == ["a 30%", "b 30%", "c 30%", "validation mix"] and (mix["images"] == 30).all()
    scores = mix[["accuracy", "accuracy_adapted"]].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()


def test_predict_unadapted_and_adapted_restores_the_trained_statistics():
    from cryptomed.adapt import adapt_batchnorm, predict_unadapted_and_adapted
    from cryptomed.models import build_cnn, predict_proba

    model, twin = build_cnn((16, 16, 1), 3, CFG), build_cnn((16, 16, 1), 3, CFG)
    twin.set_weights(model.get_weights())
    x = _images(offset=50.0)
    unadapted, adapted, info = predict_unadapted_and_adapted(model, x)
    np.testing.assert_allclose(unadapted, predict_proba(twin, x)[0], atol=1e-6)
    np.testing.assert_allclose(predict_proba(model, x)[0], unadapted, atol=1e-6)  # statistics restored
    adapt_batchnorm(twin, x)
    np.testing.assert_allclose(adapted, predict_proba(twin, x)[0], atol=1e-6)
    assert info["batchnorm_layers"] == 2 and np.abs(adapted - unadapted).max() > 1e-3
