"""Encoders (feature pyramids) for PSPNet and DeepLabV3+.

An encoder maps the checked input `(B, H, W, bands)` to four features
`[c2, c3, c4, c5]` at nominal strides 4, 8, 16, 32. With `output_stride` 8 or 16
the stages past it keep their resolution and dilate their convolutions instead
(atrous ResNet of DeepLab and PSPNet): stage rates double for each stride-2
step removed (OS 16: c5 rate 2; OS 8: c4 rate 2, c5 rate 4).

HDC (Wang et al., 2018, "Understanding Convolution for Semantic Segmentation"):
`hdc=[1, 2, 5]` replaces the constant rate of a dilated stage by a cycle of
rates, the k-th spatial convolution of the stage getting `hdc[k % len(hdc)]`,
so consecutive dilated layers cover every pixel (no "gridding"). A list of
lists gives one pattern per dilated stage (c4 then c5 at OS 8).

The encoder parameters (`EncoderParams`, shared by PSPNet's and DeepLabV3+'s
`Params`) and the stage arithmetic (`stage_rates`, `hdc_patterns`) are in the
Keras-free `reseg.model_params.encoders`.

Every encoder ends each stage with an `Identity` layer named `encoder_c2` ...
`encoder_c5` on the main path, so heads (PSPNet's auxiliary head) find a stage
output by name in a built or reloaded model.

Encoders:
    "small": built-in, ResNet-18 style (deep 3-conv stem, basic blocks),
        widths and blocks per stage configurable; the default.
    "resnet50", "mobilenetv2", "efficientnetb0": `keras.applications`
        networks without top, `weights=None`, optionally loaded from a local
        weights file of the 3-band network (nothing is downloaded). For
        `bands != 3` the first convolution's kernel is adapted by
        `reseg.models.backbones.adapt_input_conv` (timm's: RGB channels
        repeated and scaled by `3 / bands`; summed for one band). Their layers are cloned
        into the model (prefixed `encoder_`), with strides removed and rates
        set in the dilated stages; their input rescaling/normalisation layers
        become identities (reseg feeds normalised images).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import layers

from reseg.model_params.encoders import ENCODERS, EncoderParams, hdc_patterns, stage_rates
from reseg.models.backbones import adapt_input_conv
from reseg.models.blocks import conv_bn_relu

logger = logging.getLogger(__name__)

__all__ = ["ENCODERS", "EncoderParams", "build_encoder", "stage_rates"]


def _resnet50_stage(name: str) -> int:
    return {"conv2": 2, "conv3": 3, "conv4": 4, "conv5": 5}.get(name.split("_")[0], 1)


def _mobilenetv2_stage(name: str) -> int:
    if name.startswith("block_"):
        block = int(name.split("_")[1])
        return 2 if block <= 2 else 3 if block <= 5 else 4 if block <= 12 else 5
    return 5 if name in ("Conv_1", "Conv_1_bn", "out_relu") else 1


def _efficientnetb0_stage(name: str) -> int:
    if name.startswith("block") and name[5].isdigit():
        return {2: 2, 3: 3, 4: 4, 5: 4, 6: 5, 7: 5}.get(int(name[5]), 1)
    return 5 if name.startswith("top_") else 1


# name: (constructor name in keras.applications, stage of a layer name, tap layers c2..c5)
_APPLICATIONS: dict[str, tuple[str, Callable[[str], int], tuple[str, str, str, str]]] = {
    "resnet50": (
        "ResNet50",
        _resnet50_stage,
        ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    ),
    "mobilenetv2": (
        "MobileNetV2",
        _mobilenetv2_stage,
        ("block_2_add", "block_5_add", "block_12_add", "out_relu"),
    ),
    "efficientnetb0": (
        "EfficientNetB0",
        _efficientnetb0_stage,
        ("block2b_add", "block3b_add", "block5c_add", "top_activation"),
    ),
}


def build_encoder(x, bands: int, params: EncoderParams) -> list:
    """Features `[c2, c3, c4, c5]` of `x` (strides 4, 8, min(16, OS), OS).

    Args:
        x: The checked input tensor `(B, H, W, bands)`.
        bands: Number of input bands B.
        params: The encoder fields of the architecture's parameters.
    """
    p = params
    if p.encoder == "small":
        return _small_encoder(x, p.encoder_widths, p.encoder_blocks, p.output_stride, p.hdc)
    return _application_encoder(x, p.encoder, bands, p.output_stride, p.hdc, p.encoder_weights)


def _rate_cycle(stage: int, output_stride: int, hdc: Any) -> Callable[[], int]:
    """A callable giving the rate of the next spatial convolution of `stage`."""
    rate = stage_rates(output_stride)[stage]
    pattern = hdc_patterns(hdc, output_stride).get(stage) if rate > 1 else None
    count = [0]

    def next_rate() -> int:
        if pattern is None:
            return rate
        count[0] += 1
        return pattern[(count[0] - 1) % len(pattern)]

    return next_rate


def _small_encoder(x, widths, blocks, output_stride, hdc) -> list:
    """ResNet-18 style encoder: deep stem to stride 4, then four stages of basic blocks."""
    stem = max(widths[0] // 2, 8)
    x = conv_bn_relu(x, stem, 3, "encoder_stem1", strides=2)
    x = conv_bn_relu(x, stem, 3, "encoder_stem2")
    x = conv_bn_relu(x, widths[0], 3, "encoder_stem3")
    x = layers.MaxPooling2D(3, 2, padding="same", name="encoder_stem_pool")(x)
    features, channels = [], widths[0]
    rates = stage_rates(output_stride)
    for stage, width, count in zip((2, 3, 4, 5), widths, blocks, strict=True):
        next_rate = _rate_cycle(stage, output_stride, hdc)
        stride = 2 if stage > 2 and rates[stage] == rates[stage - 1] else 1
        for b in range(count):
            name = f"encoder_c{stage}_block{b + 1}"
            s = stride if b == 0 else 1
            y = conv_bn_relu(x, width, 3, f"{name}_1", strides=s, dilation=next_rate())
            y = conv_bn_relu(y, width, 3, f"{name}_2", dilation=next_rate(), activation=False)
            shortcut = x
            if s != 1 or channels != width:
                shortcut = conv_bn_relu(x, width, 1, f"{name}_proj", strides=s, activation=False)
            x = layers.Add(name=f"{name}_add")([y, shortcut])
            x = layers.ReLU(name=f"{name}_out")(x)
            channels = width
        x = layers.Identity(name=f"encoder_c{stage}")(x)
        features.append(x)
    return features


def _load_local_weights(app: keras.Model, ctor: Callable, bands: int, path: str) -> None:
    """Load a local weights file of the 3-band network into `app`, adapting the first conv."""
    if bands == 3:
        app.load_weights(path)
        return
    source = ctor(include_top=False, weights=None, input_shape=(None, None, 3))
    source.load_weights(path)
    for src, dst in zip(source.layers, app.layers, strict=True):
        weights = src.get_weights()
        if not weights or isinstance(dst, layers.Normalization):
            continue
        target = dst.get_weights()
        if [w.shape for w in weights] != [w.shape for w in target]:
            weights = [adapt_input_conv(weights[0], bands), *weights[1:]]
            logger.info("adapted %s kernel from 3 to %d bands", dst.name, bands)
        dst.set_weights(weights)


def _application_encoder(x, encoder, bands, output_stride, hdc, weights_path) -> list:
    ctor_name, stage_of, taps = _APPLICATIONS[encoder]
    ctor = getattr(keras.applications, ctor_name)
    if weights_path is not None and not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"Argument `encoder_weights` names no file. Received: encoder_weights={weights_path!r}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "usually expects 1 or 3 input channels"
        app = ctor(include_top=False, weights=None, input_shape=(None, None, bands))
        if weights_path is not None:
            _load_local_weights(app, ctor, bands, weights_path)
    tap_model = keras.Model(app.input, [app.get_layer(n).output for n in taps])

    rates = stage_rates(output_stride)
    cycles = {s: _rate_cycle(s, output_stride, hdc) for s in (2, 3, 4, 5)}
    new_rate: dict[str, int] = {}
    for layer in tap_model.layers:  # topological order: fixes the HDC cycle position
        stage = stage_of(layer.name)
        kernel = getattr(layer, "kernel_size", (1,))
        if rates.get(stage, 1) > 1 and max(kernel) > 1:
            new_rate[layer.name] = cycles[stage]()

    clones: dict[str, keras.layers.Layer] = {}
    features: dict[str, Any] = {}

    def clone(layer):
        config = layer.get_config()
        config["name"] = f"encoder_{layer.name}"
        dilated = rates.get(stage_of(layer.name), 1) > 1
        if isinstance(layer, layers.Rescaling | layers.Normalization) or (
            dilated and isinstance(layer, layers.ZeroPadding2D)
        ):
            new = layers.Identity(name=config["name"])
        else:
            if dilated and "strides" in config:
                config["strides"] = (1, 1)
                config["padding"] = "same"
            if layer.name in new_rate:
                config["dilation_rate"] = (new_rate[layer.name],) * 2
            new = layer.__class__.from_config(config)
        clones[layer.name] = new
        return new

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name.removeprefix("encoder_") in taps:
            stage = 2 + taps.index(layer.name.removeprefix("encoder_"))
            out = layers.Identity(name=f"encoder_c{stage}")(out)
            features[stage] = out
        return out

    keras.models.clone_model(tap_model, input_tensors=x, clone_function=clone, call_function=call)
    for layer in tap_model.layers:
        new = clones.get(layer.name)
        if new is not None and new.weights and layer.weights:
            new.set_weights([np.asarray(w) for w in layer.get_weights()])
    return [features[s] for s in (2, 3, 4, 5)]
