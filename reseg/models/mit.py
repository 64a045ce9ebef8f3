"""Mix Transformer (MiT) encoders of SegFormer (Xie et al., 2021), loadable from keras-hub.

Four stages; stage i embeds overlapping patches (a strided convolution of kernel 7, 3, 3,
3 and stride 4, 2, 2, 2, then layer norm) and applies `depths[i]` transformer blocks,
then a layer norm: features `[c2, c3, c4, c5]` at strides 4, 8, 16, 32. A block is
efficient self-attention (keys and values from the map reduced by a strided convolution
of ratio 8, 4, 2, 1 and a layer norm; heads 1, 2, 5, 8) and a Mix-FFN (dense to 4x the
width, 3 x 3 depthwise convolution, GELU, dense back), each with a residual.

keras-hub's `MiTBackbone` computes a stage's height and width as the square root of its
sequence length, at build time: it takes square images of one size only. reseg predicts
scenes in tiles of other sizes, so the encoder here is written again on (B, H, W, C)
maps, with the same layers and weights (`MiTBlock` mirrors keras-hub's
`HierarchicalTransformerEncoder`); `load_keras_hub` copies a keras-hub MiT's weights into
it layer by layer. Differences: no stochastic depth and no attention dropout (keras-hub's
drop rates are training-time only; features at inference are equal, which the tests
check to 1e-4).

Weights (`encoder_weights`): a local keras-hub preset folder (`config.json` and
`model.weights.h5`, as `MiTBackbone.save_to_preset` writes them) works offline; any other
string is a keras-hub preset name or handle (e.g. "mit_b0_ade20k_512"), which keras-hub
itself downloads into its cache when online. Weights of 3 bands on an N-band scene adapt
the first convolution (`reseg.models.backbones.adapt_input_conv`), logged.
"""

from __future__ import annotations

import json
import logging
import os

import keras
from keras import layers, ops

from reseg.errors import ConfigError
from reseg.model_params.segformer import (
    MIT_HEADS,
    MIT_PATCH_SIZES,
    MIT_SHAPES,
    MIT_SR_RATIOS,
    MIT_STRIDES,
)
from reseg.models.backbones import adapt_input_conv

log = logging.getLogger(__name__)

__all__ = ["MiTBlock", "build_encoder", "load_keras_hub"]


@keras.saving.register_keras_serializable(package="reseg")
class MiTBlock(keras.layers.Layer):
    """A MiT transformer block on a `(B, H, W, dim)` map (module docstring).

    Args:
        dim: Channels of the map.
        heads: Attention heads (dim must be a multiple).
        sr_ratio: Sequence reduction ratio of keys and values (1: none).
    """

    def __init__(self, dim: int, heads: int, sr_ratio: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.sr_ratio = int(dim), int(heads), int(sr_ratio)
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.q = layers.Dense(dim, name="q")
        self.k = layers.Dense(dim, name="k")
        self.v = layers.Dense(dim, name="v")
        self.proj = layers.Dense(dim, name="proj")
        if self.sr_ratio > 1:
            self.sr = layers.Conv2D(dim, sr_ratio, strides=sr_ratio, name="sr")
            self.sr_norm = layers.LayerNormalization(epsilon=1e-5, name="sr_norm")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.fc1 = layers.Dense(4 * dim, name="fc1")
        self.dwconv = layers.DepthwiseConv2D(3, padding="same", name="dwconv")
        self.fc2 = layers.Dense(dim, name="fc2")

    def build(self, input_shape):
        b, h, w, c = input_shape
        for layer in (self.norm1, self.q, self.k, self.v, self.proj, self.norm2, self.fc1):
            layer.build(input_shape)
        if self.sr_ratio > 1:
            self.sr.build(input_shape)
            self.sr_norm.build((b, None, None, c))
        self.dwconv.build((b, h, w, 4 * c))
        self.fc2.build((b, h, w, 4 * c))

    def call(self, x):
        shape = ops.shape(x)
        b, h, w = shape[0], shape[1], shape[2]
        d = self.dim // self.heads

        def heads(t):
            return ops.transpose(ops.reshape(t, (b, -1, self.heads, d)), (0, 2, 1, 3))

        y = self.norm1(x)
        kv = self.sr_norm(self.sr(y)) if self.sr_ratio > 1 else y
        q, k, v = heads(self.q(y)), heads(self.k(kv)), heads(self.v(kv))
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * d**-0.5
        # softmax written out: ops.softmax warns when a small tile leaves one key
        e = ops.exp(logits - ops.max(logits, axis=-1, keepdims=True))
        attn = e / ops.sum(e, axis=-1, keepdims=True)
        o = ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), (b, h, w, self.dim))
        x = x + self.proj(o)
        y = self.dwconv(self.fc1(self.norm2(x)))
        return x + self.fc2(ops.nn.gelu(y, approximate=True))  # keras-hub's GELU

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "heads": self.heads,
            "sr_ratio": self.sr_ratio,
        }


def _encoder(variant: str, bands: int) -> keras.Model:
    depths, dims = MIT_SHAPES[variant]
    inputs = keras.Input((None, None, bands), name="encoder_input")
    x, features = inputs, []
    for i in range(4):
        p, s = MIT_PATCH_SIZES[i], MIT_STRIDES[i]
        x = layers.ZeroPadding2D(p // 2, name=f"patch{i + 1}_pad")(x)
        x = layers.Conv2D(dims[i], p, strides=s, name=f"patch{i + 1}_proj")(x)
        x = layers.LayerNormalization(epsilon=1e-5, name=f"patch{i + 1}_norm")(x)
        for k in range(depths[i]):
            x = MiTBlock(
                dims[i], MIT_HEADS[i], MIT_SR_RATIOS[i], name=f"stage{i + 1}_block{k + 1}"
            )(x)
        x = layers.LayerNormalization(epsilon=1e-5, name=f"stage{i + 1}_norm")(x)
        features.append(x)
    return keras.Model(inputs, features, name="encoder")


def build_encoder(variant: str, bands: int, weights: str | None = None) -> keras.Model:
    """The MiT encoder `variant` ("mit_b0" ... "mit_b5") for `bands` bands with `weights`
    (module docstring). Returns the model "encoder": image -> `[c2, c3, c4, c5]`.

    Raises:
        ConfigError: a folder that is not a keras-hub MiT preset of this variant, a path
            that does not exist.
    """
    encoder = _encoder(variant, bands)
    if weights is not None:
        load_keras_hub(encoder, variant, weights)
    return encoder


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.startswith(".") or weights.endswith(".json")


def _hub_backbone(weights: str) -> keras.Model:
    """keras-hub's MiTBackbone of a preset folder or name (built at 64 x 64, its bands)."""
    import keras_hub

    bands = 3
    config_file = os.path.join(weights, "config.json")
    if os.path.isdir(weights):
        try:
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
            if not config["class_name"].endswith("MiTBackbone"):
                raise ValueError(f"a preset of {config['class_name']}, not of MiTBackbone")
            shape = config["config"].get("image_shape") or (None, None, 3)
            bands = int(shape[-1])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(
                f"model.params.encoder_weights: {weights} is not a keras-hub MiT preset "
                f"folder: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
    elif _looks_like_path(weights):
        raise ConfigError(f"model.params.encoder_weights: {weights}: no such folder")
    else:
        log.info("encoder weights %s: a keras-hub preset (keras-hub downloads it once)", weights)
    try:
        return keras_hub.models.MiTBackbone.from_preset(weights, image_shape=(64, 64, bands))
    except Exception as err:  # keras-hub raises many kinds for a bad or unreachable preset
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"model.params.encoder_weights: {weights}: keras-hub could not load it: {first}"
        ) from None


def load_keras_hub(encoder: keras.Model, variant: str, weights: str) -> None:
    """Copy the weights of keras-hub MiT preset `weights` into `encoder`, layer by layer."""
    hub = _hub_backbone(weights)
    depths, dims = MIT_SHAPES[variant]
    if list(hub.layerwise_depths) != list(depths) or list(hub.hidden_dims) != list(dims):
        raise ConfigError(
            f"model.params.encoder_weights: {weights} is a MiT of depths "
            f"{list(hub.layerwise_depths)} and widths {list(hub.hidden_dims)}, not {variant} "
            f"({list(depths)}, {list(dims)})"
        )
    stage_norms = [la for la in hub.layers if isinstance(la, layers.LayerNormalization)]
    pairs = []
    for i in range(4):
        embed = hub.get_layer(f"patch_and_embed_{i}")
        pairs += [
            (embed.proj, encoder.get_layer(f"patch{i + 1}_proj")),
            (embed.norm, encoder.get_layer(f"patch{i + 1}_norm")),
        ]
        for k in range(depths[i]):
            src = hub.get_layer(f"hierarchical_encoder_{i}_{k}")
            dst = encoder.get_layer(f"stage{i + 1}_block{k + 1}")
            a, m = src.attn, src.mlp
            pairs += [(src.norm1, dst.norm1), (a.q, dst.q), (a.k, dst.k), (a.v, dst.v)]
            pairs += [(a.proj, dst.proj), (src.norm2, dst.norm2), (m.fc1, dst.fc1)]
            pairs += [(m.dwconv, dst.dwconv), (m.fc2, dst.fc2)]
            if dst.sr_ratio > 1:
                pairs += [(a.sr, dst.sr), (a.norm, dst.sr_norm)]
        pairs.append((stage_norms[i], encoder.get_layer(f"stage{i + 1}_norm")))
    bands = int(encoder.inputs[0].shape[-1])
    for src, dst in pairs:
        values = src.get_weights()
        if dst.name == "patch1_proj" and values[0].shape[2] != bands:
            log.info(
                "encoder weights %s: first convolution adapted from %d to %d bands "
                "(channels repeated, scaled)",
                weights,
                values[0].shape[2],
                bands,
            )
            values = [adapt_input_conv(values[0], bands), *values[1:]]
        dst.set_weights(values)
    log.info("encoder %s: weights of keras-hub preset %s (%d bands)", variant, weights, bands)
