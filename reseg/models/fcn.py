"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, 2015).

VGG-16 encoder (blocks of 2, 2, 3, 3, 3 3 x 3 convolutions with
`base_filters * (1, 2, 4, 8, 8)` filters, each block ending in 2 x 2 max pooling:
pool1 ... pool5), the fully connected layers as convolutions (fc6: `fc_kernel` x
`fc_kernel`, fc7: 1 x 1, both `fc_filters` wide, ReLU and dropout), and a 1 x 1
class score `score_fr` at stride 32. Then, as in the paper:

- FCN-32s: `upscore` upsamples the scores 32x.
- FCN-16s: `upscore2` (2x) + `score_pool4` (1 x 1 scores of pool4) = `fuse_pool4`,
  upsampled 16x.
- FCN-8s: `fuse_pool4` upsampled 2x (`upscore_pool4`) + `score_pool3` =
  `fuse_pool3`, upsampled 8x.

Upsampling layers are transposed convolutions of kernel `2 * factor`, stride
`factor`, per class, initialised to bilinear interpolation: the 2x ones are
learned, the final one is fixed (not trainable), as in the paper. The skip
score layers start at zero, so each net starts as its coarser parent.
Differences from the paper's Caffe nets: "same" padding instead of padding 100
and crop layers (so inputs must be multiples of 32), optional batch norm, and
default widths of half VGG-16 (`base_filters=32`, paper 64) and a quarter of
its fc layers (`fc_filters=1024`, paper 4096). Output stride 32.

Pretrained (the paper's premise): `encoder_weights` loads VGG-16's convolution blocks
from `keras.applications.VGG16(include_top=False)`, "imagenet" (Keras downloads them
once, online; reseg never does) or a local `.weights.h5` of that network, into
`conv1_1` ... `conv5_3` (needs `base_filters=64`, `batch_norm=false`). Keras' file has
no fully connected layers, so fc6 and fc7 start random. A 3-band kernel on an N-band
scene adapts the first convolution (`reseg.models.backbones.adapt_input_conv`), logged.
Note that Keras' ImageNet VGG-16 expects caffe-style inputs (BGR, mean-subtracted) while
reseg feeds per-band standardised images: fine-tuning absorbs the difference.
"""

from __future__ import annotations

import logging
import os
import warnings

import keras
from keras import layers

from reseg.errors import ConfigError
from reseg.model_params.fcn import VARIANTS, Params
from reseg.models import blocks
from reseg.models.backbones import adapt_input_conv
from reseg.models.layers import BilinearKernel

log = logging.getLogger(__name__)

_VGG16 = (2, 2, 3, 3, 3)
_WIDTHS = (1, 2, 4, 8, 8)

__all__ = ["VARIANTS", "Params", "build_fcn", "build_fcn8s", "build_fcn16s", "build_fcn32s"]


def _upsample(x, num_classes: int, factor: int, name: str, trainable: bool):
    return layers.Conv2DTranspose(
        num_classes,
        2 * factor,
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearKernel(),
        trainable=trainable,
        name=name,
    )(x)


def _score(x, num_classes: int, name: str):
    return layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=name)(x)


def build_fcn(
    variant: str, num_classes: int, bands: int, params: Params | None = None
) -> keras.Model:
    """Build FCN-32s, FCN-16s or FCN-8s (`variant`); see the module docstring.

    Args:
        variant: "fcn32s", "fcn16s" or "fcn8s".
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: Widths, fc kernel, batch norm, dropout (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax` named
        `variant`, H and W multiples of 32.
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"Argument `variant` must be one of {list(VARIANTS)}. Received: variant={variant!r}"
        )
    p = Params() if params is None else params
    inputs, x = blocks.image_input(bands, p.output_stride, variant)
    pools = []
    for b, (convs, width) in enumerate(zip(_VGG16, _WIDTHS, strict=True), start=1):
        for i in range(1, convs + 1):
            x = blocks.conv_bn_relu(
                x, p.base_filters * width, 3, f"conv{b}_{i}", batch_norm=p.batch_norm
            )
        x = layers.MaxPooling2D(2, name=f"pool{b}")(x)
        pools.append(x)
    x = blocks.conv_bn_relu(x, p.fc_filters, p.fc_kernel, "fc6", batch_norm=p.batch_norm)
    x = blocks.dropout(x, p.dropout, "drop6")
    x = blocks.conv_bn_relu(x, p.fc_filters, 1, "fc7", batch_norm=p.batch_norm)
    x = blocks.dropout(x, p.dropout, "drop7")
    score = blocks.classifier(x, num_classes, name="score_fr")
    if variant == "fcn32s":
        logits = _upsample(score, num_classes, 32, "upscore", trainable=False)
        return _with_vgg16(blocks.finish(inputs, logits, variant), p.encoder_weights, bands)
    up = _upsample(score, num_classes, 2, "upscore2", trainable=True)
    fused = layers.Add(name="fuse_pool4")([up, _score(pools[3], num_classes, "score_pool4")])
    if variant == "fcn16s":
        logits = _upsample(fused, num_classes, 16, "upscore16", trainable=False)
        return _with_vgg16(blocks.finish(inputs, logits, variant), p.encoder_weights, bands)
    up = _upsample(fused, num_classes, 2, "upscore_pool4", trainable=True)
    fused = layers.Add(name="fuse_pool3")([up, _score(pools[2], num_classes, "score_pool3")])
    logits = _upsample(fused, num_classes, 8, "upscore8", trainable=False)
    return _with_vgg16(blocks.finish(inputs, logits, variant), p.encoder_weights, bands)


def _vgg16(weights: str) -> keras.Model:
    """keras.applications' VGG-16 convolution blocks with `weights` (see the docstring)."""
    if weights != "imagenet" and not os.path.isfile(weights):
        raise ConfigError(f"model.params.encoder_weights: {weights}: no such file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if weights == "imagenet":
            log.info("FCN: VGG-16 ImageNet weights from keras.applications (Keras downloads once)")
            return keras.applications.VGG16(include_top=False, weights="imagenet")
        vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
        try:
            vgg.load_weights(weights)
        except ValueError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else "ValueError"
            raise ConfigError(
                f"model.params.encoder_weights: {weights} is not a weights file of "
                f"keras.applications.VGG16(include_top=False): {first}"
            ) from None
    return vgg


def _with_vgg16(model: keras.Model, weights: str | None, bands: int) -> keras.Model:
    """`model` with VGG-16's convolution weights in conv1_1 ... conv5_3 (None: unchanged)."""
    if weights is None:
        return model
    vgg = _vgg16(weights)
    for b, convs in enumerate(_VGG16, start=1):
        for i in range(1, convs + 1):
            kernel, bias = vgg.get_layer(f"block{b}_conv{i}").get_weights()
            if b == i == 1 and kernel.shape[2] != bands:  # conv1_1 of a scene not RGB
                log.info("FCN: VGG-16 conv1_1 adapted from %d to %d bands", kernel.shape[2], bands)
                kernel = adapt_input_conv(kernel, bands)
            model.get_layer(f"conv{b}_{i}_conv").set_weights([kernel, bias])
    log.info("FCN: VGG-16 convolution blocks loaded from %s", weights)
    return model


def build_fcn32s(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """FCN-32s; arguments as `build_fcn`."""
    return build_fcn("fcn32s", num_classes, bands, params)


def build_fcn16s(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """FCN-16s; arguments as `build_fcn`."""
    return build_fcn("fcn16s", num_classes, bands, params)


def build_fcn8s(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """FCN-8s; arguments as `build_fcn`."""
    return build_fcn("fcn8s", num_classes, bands, params)
