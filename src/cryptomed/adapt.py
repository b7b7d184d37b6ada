"""Label-free test-time adaptation of the CNN's batch-norm statistics (AdaBN, Li et al. 2016).

Before a network predicts a set of images, each batch-norm layer's moving mean and variance become the mean and
(population) variance of that layer's inputs over those images, layer by layer in order, so each layer sees the
ones before it already adapted. Only images go in: no label can be read. The rule that adopted it, and its
validation record, are in docs/tuning.md.
"""

from __future__ import annotations

import time

import numpy as np


def _networks(model) -> tuple[list, bool]:
    """The chain networks inside ``model`` (the model itself, or the members of a seed ensemble) and whether the
    ensemble also predicts on mirrored images."""
    import keras

    from .models import _flip_layer

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not nested:
        return [model], False
    # an ensemble (models.average_model): the input, optional mirroring, the members and their mean, nothing else
    allowed = (keras.layers.InputLayer, keras.layers.Average, keras.Model, _flip_layer())
    other = [layer.name for layer in model.layers if not isinstance(layer, allowed)]
    if other:
        raise ValueError(f"batch-norm adaptation: {model.name} holds networks and also layers {other}; only an "
                         "ensemble of cryptomed.models.average_model can be adapted")
    return nested, any(isinstance(layer, _flip_layer()) for layer in model.layers)


def _check_chain(net) -> None:
    """AdaBN walks the layers in order: an input layer first, then every layer taking only the previous layer's
    output (build_cnn's networks), batch norm over the last axis."""
    import keras

    layers = net.layers
    if not layers or not isinstance(layers[0], keras.layers.InputLayer):
        raise ValueError(f"batch-norm adaptation needs a functional network that starts with its input layer; "
                         f"{net.name} does not")
    for prev, layer in zip(layers, layers[1:]):
        nodes = layer._inbound_nodes
        parents = {id(t._keras_history[0]) for node in nodes[:1] for t in node.input_tensors}
        if parents != {id(prev)}:
            raise ValueError(f"batch-norm adaptation needs a chain of layers; {net.name}: layer {layer.name!r} does "
                             f"not take only {prev.name!r}'s output")
        if isinstance(layer, keras.layers.BatchNormalization) and layer.axis not in (-1, len(layer.input.shape) - 1):
            raise ValueError(f"batch-norm adaptation: {net.name}/{layer.name} normalises axis {layer.axis}, not the "
                             "channels (last axis)")


def adapt_batchnorm(model, images: np.ndarray, batch_size: int = 256) -> dict:
    """Set every batch-norm layer's moving statistics of ``model`` to those of ``images`` (N, H, W, C), in place.

    ``model``: a network of :func:`cryptomed.models.build_cnn` or their ensemble (:func:`~cryptomed.models.average_model`,
    whose mirrored views are adapted to as well). Returns what was done (layers, images, seconds).
    """
    import keras

    images = np.asarray(images, dtype="float32")
    if images.ndim != 4 or not len(images):
        raise ValueError(f"batch-norm adaptation needs images of shape (N, H, W, C), N > 0; got {images.shape}")
    t0 = time.perf_counter()
    networks, flip = _networks(model)
    x0 = np.concatenate([images, images[:, :, ::-1]]) if flip else images
    adapted = 0
    for net in networks:
        _check_chain(net)
        layers = net.layers[1:]  # [0] is the InputLayer
        bn_at = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.BatchNormalization)]
        x = x0
        for layer in layers[:bn_at[-1] + 1] if bn_at else []:  # nothing after the last batch norm is needed
            if isinstance(layer, keras.layers.BatchNormalization):
                total, squares = 0.0, 0.0  # population statistics (as Keras' training step), float64, by chunk
                for i in range(0, len(x), batch_size):
                    chunk = x[i:i + batch_size].reshape(-1, x.shape[-1]).astype(np.float64)
                    total, squares = total + chunk.sum(axis=0), squares + (chunk * chunk).sum(axis=0)
                n = x.size // x.shape[-1]
                mean = total / n
                layer.moving_mean.assign(mean.astype("float32"))
                layer.moving_variance.assign(np.maximum(squares / n - mean * mean, 0.0).astype("float32"))
                adapted += 1
            x = np.concatenate([keras.ops.convert_to_numpy(layer(x[i:i + batch_size], training=False))
                                for i in range(0, len(x), batch_size)])
    return {"method": "AdaBN: batch-norm statistics re-estimated on the images classified (labels unused)",
            "batchnorm_layers": adapted, "images": int(len(images)), "mirrored_views": flip,
            "seconds": time.perf_counter() - t0}


def predict_unadapted_and_adapted(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Class probabilities of ``images`` from ``model`` as trained and after :func:`adapt_batchnorm` to them, and what
    the adaptation did; the model's trained statistics are restored afterwards (the benchmarks score both)."""
    from .models import predict_proba

    trained = model.get_weights()
    unadapted, _ = predict_proba(model, images)
    info = adapt_batchnorm(model, images)
    adapted, _ = predict_proba(model, images)
    model.set_weights(trained)
    return unadapted, adapted, info
