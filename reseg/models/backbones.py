"""Pretrained backbones for U-Net: feature pyramids at strides 2 to 32, with their weights.

A backbone is a Keras model named "encoder" mapping `(B, H, W, bands)` to five
features at strides 2, 4, 8, 16, 32 (the pyramid segmentation_models' U-Net
decodes). The U-Net nests it as one layer, so the trainer freezes it by name.

Backbones (`reseg.model_params.unet.UNET_ENCODERS`):
    "resnet18", "resnet34", "resnet50_torchvision": torchvision's layout
        (`reseg.models.resnet`), the target of `reseg weights convert`.
    "resnet50": `keras.applications.ResNet50` (Keras' layout: stride on the
        first 1 x 1 convolution of a block, caffe-style ImageNet weights);
        taps `conv1_relu`, `conv2_block3_out` ... `conv5_block3_out`.

Weights (`encoder_weights`):
    None: random initialisation.
    "imagenet": `resnet50` only, fetched by Keras itself
        (`keras.applications.ResNet50(weights="imagenet")` downloads into
        `~/.keras/models` on first use, online); reseg never downloads.
    a path: a local `.weights.h5` of the same backbone, saved with 3 bands (e.g.
        ImageNet weights) or with the scene's band count (converted
        multispectral weights). A sidecar `<file>.json` (written by `reseg
        weights convert`) records the weights' band order, which is logged.

A 3-band file on an N-band scene adapts the first convolution with
`adapt_input_conv`; the adaptation is logged. With `band_names` (the scene's bands, in input
order) and a sidecar band order, the first convolution is mapped by name instead
(`map_input_conv`): multispectral weights meet the scene's bands whatever their order. A missing file, or a file that is
not of this backbone, is a `ConfigError` naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np

from reseg.errors import ConfigError
from reseg.models import resnet

log = logging.getLogger(__name__)

RESNET50_TAPS = (
    "conv1_relu",
    "conv2_block3_out",
    "conv3_block4_out",
    "conv4_block6_out",
    "conv5_block3_out",
)

__all__ = ["adapt_input_conv", "build_backbone", "map_input_conv", "sidecar", "transfer_weights"]


def sidecar(path: str) -> str:
    """The metadata file beside a weights file: `<path>.json`."""
    return f"{path}.json"


def adapt_input_conv(kernel: np.ndarray, bands: int) -> np.ndarray:
    """A first-convolution kernel for `bands` input bands, as timm's `adapt_input_conv`.

    `kernel` is `(kh, kw, c, filters)` for `c` input channels (3 for RGB weights).
    One band: the sum over the `c` channels (a grey image then gives the
    activations of the colour image with that grey in every channel). Otherwise the
    channels are repeated cyclically (band i takes channel i mod c) and scaled by
    `c / bands`, so that an image equal to the same value in every band gives
    the activations of the `c`-channel image of that value:

        out[:, :, i, :] = kernel[:, :, i mod c, :] * c / bands

    Returns:
        `(kh, kw, bands, filters)` in `kernel`'s dtype.
    """
    c = kernel.shape[2]
    if bands == c:
        return kernel
    if bands == 1:
        return kernel.sum(axis=2, keepdims=True).astype(kernel.dtype)
    return (kernel[:, :, [i % c for i in range(bands)], :] * (c / bands)).astype(kernel.dtype)


def map_input_conv(
    kernel: np.ndarray, weight_bands: Sequence[str], scene_bands: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """A first-convolution kernel for `scene_bands`, its channels taken by band name.

    `kernel` is `(kh, kw, len(weight_bands), filters)`. Scene band i takes the channel of
    the weights' band of the same name (case-insensitive); a band the weights do not have
    takes the mean of their channels. Nothing is rescaled: a matched band keeps the response
    it was trained with (timm's rescaling keeps the sum over channels of a kernel made for
    other inputs; here the channels are the inputs the weights were made for).

    Returns:
        (`(kh, kw, len(scene_bands), filters)` kernel in `kernel`'s dtype, one
        "scene <- weights" note per band for the log).
    """
    index = {b.casefold(): i for i, b in enumerate(weight_bands)}
    mean = kernel.mean(axis=2)
    channels, notes = [], []
    for band in scene_bands:
        k = index.get(band.casefold())
        channels.append(mean if k is None else kernel[:, :, k, :])
        notes.append(f"{band}<-{'mean' if k is None else weight_bands[k]}")
    return np.stack(channels, axis=2).astype(kernel.dtype), notes


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy every layer's weights from `source` to `target` (same layers, same names).

    A layer whose kernel differs in its input channels only (the first
    convolution of a network built for another band count) gets
    `adapt_input_conv` of the source kernel. Returns the names of adapted layers.
    """
    adapted = []
    for src in source.layers:
        weights = src.get_weights()
        if not weights:
            continue
        dst = target.get_layer(src.name)
        shapes = [w.shape for w in dst.get_weights()]
        if [w.shape for w in weights] != shapes:
            weights = [adapt_input_conv(weights[0], shapes[0][2]), *weights[1:]]
            adapted.append(src.name)
        dst.set_weights(weights)
    return adapted


def _resnet50(bands: int, weights: str | None) -> keras.Model:
    """keras.applications ResNet-50 without top, tapped at its five strides."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "usually expects 1 or 3 input channels"
        app = keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=(None, None, bands)
        )
    return keras.Model(app.input, [app.get_layer(n).output for n in RESNET50_TAPS], name="encoder")


def _builder(name: str) -> Callable[[int], keras.Model]:
    if name == "resnet50":
        return lambda bands: _resnet50(bands, None)
    return lambda bands: resnet.build(name, bands)


def build_backbone(
    name: str, bands: int, weights: str | None = None, band_names: Sequence[str] | None = None
) -> keras.Model:
    """The backbone `name` for `bands` bands with `weights` (see the module docstring).

    Args:
        band_names: the scene's bands in input order; with a weights file whose sidecar
            records its band order, the first convolution is mapped by name.

    Returns:
        Model named "encoder": `(B, H, W, bands)` -> five features at strides 2 .. 32.

    Raises:
        ConfigError: missing weights file, a file of another network, "imagenet"
            for a backbone Keras has no ImageNet weights of, band names without a
            recorded band order or of another count than the bands.
    """
    build = _builder(name)
    if band_names is not None and len(band_names) != bands:
        raise ConfigError(
            f"model.params.encoder_bands names {len(band_names)} bands but the scenes have {bands}"
        )
    if weights is None:
        return build(bands)
    if weights == "imagenet":
        return _imagenet(name, build(bands), band_names)
    if not os.path.isfile(weights):
        raise ConfigError(f"model.params.encoder_weights: {weights}: no such file")
    order = _log_band_order(name, weights)
    if band_names is not None:
        if not order:
            raise ConfigError(
                f"model.params.encoder_bands: {weights} records no band order to match by name "
                "(`reseg weights convert --band-order`); leave encoder_bands unset to adapt by "
                "position"
            )
        source = build(len(order))
        try:
            _load(source, weights)
        except ValueError as err:
            raise _mismatch(name, weights, err) from None
        return _mapped(source, build(bands), weights, order, band_names)
    model = build(bands)
    try:
        _load(model, weights)
        log.info("encoder %s: weights of %s (%d bands)", name, weights, bands)
        return model
    except ValueError as err:
        if bands == 3:
            raise _mismatch(name, weights, err) from None
    source = build(3)
    try:
        _load(source, weights)
    except ValueError as err:
        raise _mismatch(name, weights, err) from None
    return _adapted(source, model, weights)


def _imagenet(name: str, target: keras.Model, band_names: Sequence[str] | None) -> keras.Model:
    """`target` (a resnet50) with Keras' ImageNet weights (red, green, blue)."""
    if name != "resnet50":
        raise ConfigError(
            f"model.params.encoder_weights: imagenet: Keras has no ImageNet weights of "
            f"{name}; convert torchvision's with `reseg weights convert`, or use resnet50"
        )
    log.info(
        "encoder resnet50: ImageNet weights from keras.applications (Keras downloads them once)"
    )
    source = _resnet50(3, "imagenet")
    if band_names is not None:
        return _mapped(source, target, "imagenet", ("red", "green", "blue"), band_names)
    return _adapted(source, target, "imagenet")


def _mapped(
    source: keras.Model,
    target: keras.Model,
    origin: str,
    weight_bands: Sequence[str],
    scene_bands: Sequence[str],
) -> keras.Model:
    """`source`'s weights in `target`, the first convolution's channels mapped by band name."""
    first = _first_conv(source)
    kernel, *rest = source.get_layer(first).get_weights()
    mapped, notes = map_input_conv(kernel, weight_bands, scene_bands)
    transfer_weights(source, target)  # every layer; the first convolution is replaced below
    target.get_layer(first).set_weights([mapped, *rest])
    log.info(
        "encoder weights %s: first convolution %s mapped by band name: %s",
        origin,
        first,
        ", ".join(notes),
    )
    return target


def _first_conv(model: keras.Model) -> str:
    """The name of `model`'s first layer with a 4-d kernel (the convolution of the input)."""
    for layer in model.layers:
        w = layer.get_weights()
        if w and w[0].ndim == 4:
            return layer.name
    raise ValueError(f"{model.name} has no convolution")


def _load(model: keras.Model, path: str) -> None:
    """`model.load_weights(path)`, without Keras' warnings about a file of another network
    (the ValueError that follows them is reported as a ConfigError)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.load_weights(path)


def _adapted(source: keras.Model, target: keras.Model, origin: str) -> keras.Model:
    bands = int(target.inputs[0].shape[-1])
    changed = transfer_weights(source, target)
    for layer in changed:
        log.info(
            "encoder weights %s: first convolution %s adapted from 3 to %d bands "
            "(channels repeated, scaled by 3/%d)",
            origin,
            layer,
            bands,
            bands,
        )
    return target


def _mismatch(name: str, path: str, err: Exception) -> ConfigError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConfigError(
        f"model.params.encoder_weights: {path} is not a weights file of encoder {name} "
        f"(3 bands or the scene's): {first}"
    )


def _log_band_order(name: str, path: str) -> list[str] | None:
    """The band order recorded beside weights file `path` (logged), None without one."""
    meta = sidecar(path)
    if not os.path.isfile(meta):
        return None
    with open(meta, encoding="utf-8") as f:
        info = json.load(f)
    log.info(
        "encoder %s: weights %s were made for bands %s (from %s)",
        name,
        path,
        info.get("band_order"),
        info.get("source"),
    )
    order = info.get("band_order")
    return [str(b) for b in order] if order else None
