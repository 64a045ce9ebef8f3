"""Inference-only rewrites of a built or reloaded model.

`fold_batch_norm` folds every batch normalisation that directly follows a
convolution into that convolution. In inference mode batch norm is the affine
map `y = gamma * (x - mean) / sqrt(var + eps) + beta` per channel, so with
`s = gamma / sqrt(var + eps)` the pair conv -> BN equals one convolution with
kernel `W * s` (scaled per output channel) and bias `(b - mean) * s + beta`.
That removes one pass over every activation map (about a third of a U-Net's
layers); outputs agree to float32 rounding. The folded model is for
prediction and export only: it has no batch norm left to train.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from keras import layers

logger = logging.getLogger(__name__)


def _foldable_pairs(model: keras.Model) -> dict[str, layers.BatchNormalization]:
    """Conv2D name -> the BatchNormalization that alone consumes its output."""
    pairs = {}
    for bn in model.layers:
        if not isinstance(bn, layers.BatchNormalization) or bn.axis not in (-1, 3):
            continue
        if len(bn._inbound_nodes) != 1:
            continue
        producer = bn._inbound_nodes[0].parent_nodes
        if len(producer) != 1:
            continue
        conv = producer[0].operation
        if (
            type(conv) is layers.Conv2D
            and len(conv._inbound_nodes) == 1
            and len(conv._outbound_nodes) == 1
            and conv.activation is keras.activations.linear
        ):
            pairs[conv.name] = bn
    return pairs


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of `model` with each Conv2D -> BatchNormalization pair merged into the Conv2D.

    Args:
        model: A functional model (built by the registry or reloaded).

    Returns:
        A new model with the same name, inputs and outputs in inference mode
        (`model(x, training=False)`), without the folded batch-norm layers;
        weights are copied, `model` is unchanged.
    """
    pairs = _foldable_pairs(model)
    folded_bn = {bn.name for bn in pairs.values()}
    originals = {layer.name: layer for layer in model.layers}

    def clone(layer):
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        return args[0] if layer.name in folded_bn else layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for new in folded.layers:
        old = originals.get(new.name)
        if old is None or not old.weights:
            continue
        if new.name not in pairs:
            new.set_weights(old.get_weights())
            continue
        bn = pairs[new.name]
        kernel = np.asarray(old.kernel)
        bias = np.asarray(old.bias) if old.use_bias else np.zeros(kernel.shape[-1], "float32")
        var = np.asarray(bn.moving_variance)
        scale = 1.0 / np.sqrt(var + bn.epsilon)
        if bn.scale:
            scale = scale * np.asarray(bn.gamma)
        shift = (bias - np.asarray(bn.moving_mean)) * scale
        if bn.center:
            shift = shift + np.asarray(bn.beta)
        new.set_weights([(kernel * scale).astype(kernel.dtype), shift.astype(kernel.dtype)])
    logger.info("folded %d batch norm layers of %s", len(pairs), model.name)
    return folded
