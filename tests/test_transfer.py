import numpy as np

from cryptomed.transfer import ARCHITECTURES, imagenet_weights_file, resolve_weights


def test_weights_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # an empty Keras cache
    assert imagenet_weights_file("vgg16", None) is None
    assert resolve_weights("vgg16", "auto", None, ["brain_mri"]) == ("cross_dataset", "brain_mri")
    assert resolve_weights("vgg16", "auto", None, [])[0] == "unavailable"
    assert resolve_weights("vgg16", "imagenet", None, []) == ("imagenet", None)  # Keras downloads them
    local = tmp_path / "weights"
    local.mkdir()
    (local / ARCHITECTURES["resnet50"][2]).write_bytes(b"h5")
    assert resolve_weights("resnet50", "auto", str(local), ["x"]) == ("imagenet", str(local / ARCHITECTURES["resnet50"][2]))
    assert resolve_weights("resnet50", "cross_dataset", str(local), ["x"]) == ("cross_dataset", "x")


def test_backbone_input_and_features():
    from cryptomed.models import configure_backend

    configure_backend("tensorflow", 2)
    from cryptomed.transfer import build_backbone, features, to_backbone_input, train_head

    imgs = np.random.default_rng(0).integers(0, 256, (12, 48, 48), dtype=np.uint8)
    x = to_backbone_input(imgs, 32, "vgg16")
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.float32
    assert np.allclose(x[..., 0] - x[..., 2], 123.68 - 103.939, atol=1e-3)  # caffe BGR mean subtraction, gray input
    backbone = build_backbone("vgg16", 32)
    f, seconds = features(backbone, x, batch_size=4)
    assert f.shape == (12, 512) and seconds > 0
    y = np.arange(12) % 2
    head, history = train_head(f, y, f, y, 2, {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "patience": 1,
                                               "dropout": 0.1}, seed=0)
    probs = head.predict(f, verbose=0)
    assert probs.shape == (12, 2) and np.allclose(probs.sum(1), 1, atol=1e-5) and len(history["loss"]) >= 1
