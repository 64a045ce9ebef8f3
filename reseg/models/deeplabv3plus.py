"""DeepLabV3+ (Chen et al., 2018).

A dilated encoder (output stride 16 or 8, see `reseg.models.encoders`, with the
HDC option) gives `c5`. Atrous spatial pyramid pooling on `c5`: a 1 x 1
convolution, one 3 x 3 convolution per atrous rate, and image pooling (global
average, 1 x 1 convolution, broadcast back), each `aspp_filters` wide with batch
norm and ReLU, concatenated, projected by a 1 x 1 convolution and dropout.
Decoder: the ASPP output is upsampled bilinearly to stride 4 and concatenated
with the low-level feature `c2` reduced to `low_level_filters` by a 1 x 1
convolution; two 3 x 3 convolutions (`decoder_filters`) and a 1 x 1 classifier
follow, and the scores are upsampled 4x. Rates default to (6, 12, 18) at output
stride 16 and (12, 24, 36) at 8, as in the paper. Plain (not depthwise
separable) convolutions, as in the ResNet variant of the paper.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from reseg.models import blocks, checks, encoders
from reseg.models.layers import BilinearUpsample, ResizeToMatch

NAME = "deeplabv3plus"


def check(params: dict[str, Any]) -> None:
    """Check every argument of `build` (all present in `params`)."""
    encoders.check_encoder(params)
    if params["atrous_rates"] is not None:
        checks.int_tuple("atrous_rates", params["atrous_rates"])
    checks.boolean("image_pooling", params["image_pooling"])
    checks.positive_int("aspp_filters", params["aspp_filters"])
    checks.positive_int("low_level_filters", params["low_level_filters"])
    checks.positive_int("decoder_filters", params["decoder_filters"])
    checks.rate("dropout", params["dropout"])


def output_stride(params: dict[str, Any]) -> int:
    """The encoder's output stride (16 or 8)."""
    return params["output_stride"]


def build(
    num_classes: int,
    bands: int,
    encoder: str = "small",
    encoder_weights: str | None = None,
    encoder_widths: list[int] | tuple[int, ...] = (32, 64, 128, 256),
    encoder_blocks: list[int] | tuple[int, ...] = (2, 2, 2, 2),
    output_stride: int = 16,
    hdc: list[int] | list[list[int]] | None = None,
    atrous_rates: list[int] | tuple[int, ...] | None = None,
    image_pooling: bool = True,
    aspp_filters: int = 256,
    low_level_filters: int = 48,
    decoder_filters: int = 256,
    dropout: float = 0.1,
) -> keras.Model:
    """Build DeepLabV3+.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        encoder: "small" (built-in), "resnet50", "mobilenetv2" or "efficientnetb0".
        encoder_weights: Local weights file of the 3-band keras.applications
            encoder (None: random initialisation).
        encoder_widths: Stage widths of the "small" encoder.
        encoder_blocks: Basic blocks per stage of the "small" encoder.
        output_stride: 16 or 8.
        hdc: Hybrid dilated convolution rates for the encoder's dilated stages
            (a list, or one list per dilated stage); None = the nominal rates.
        atrous_rates: Rates of the ASPP 3 x 3 branches; None = (6, 12, 18) x 16 / OS.
        image_pooling: Include the image pooling branch.
        aspp_filters: Filters of every ASPP branch and of the projection.
        low_level_filters: Filters of the 1 x 1 reduction of `c2` (paper 48).
        decoder_filters: Filters of the two decoder 3 x 3 convolutions.
        dropout: Dropout after the ASPP projection.

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`, H and W
        multiples of `output_stride`.
    """
    params = dict(
        encoder=encoder,
        encoder_weights=encoder_weights,
        encoder_widths=encoder_widths,
        encoder_blocks=encoder_blocks,
        output_stride=output_stride,
        hdc=hdc,
        atrous_rates=atrous_rates,
        image_pooling=image_pooling,
        aspp_filters=aspp_filters,
        low_level_filters=low_level_filters,
        decoder_filters=decoder_filters,
        dropout=dropout,
    )
    checks.common(num_classes, bands)
    check(params)
    if atrous_rates is None:
        atrous_rates = tuple(r * 16 // output_stride for r in (6, 12, 18))
    inputs, x = blocks.image_input(bands, output_stride, NAME)
    c2, _, _, c5 = encoders.build_encoder(
        x,
        encoder,
        bands,
        output_stride,
        hdc=hdc,
        encoder_weights=encoder_weights,
        encoder_widths=encoder_widths,
        encoder_blocks=encoder_blocks,
    )
    branches = [blocks.conv_bn_relu(c5, aspp_filters, 1, "aspp_1x1")]
    for rate in atrous_rates:
        branches.append(blocks.conv_bn_relu(c5, aspp_filters, 3, f"aspp_rate{rate}", dilation=rate))
    if image_pooling:
        y = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(c5)
        y = blocks.conv_bn_relu(y, aspp_filters, 1, "aspp_pool_proj")
        branches.append(ResizeToMatch(name="aspp_pool_resize")([y, c5]))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = blocks.conv_bn_relu(x, aspp_filters, 1, "aspp_proj")
    x = blocks.dropout(x, dropout, "aspp_dropout")
    x = BilinearUpsample(output_stride // 4, name="decoder_upsample")(x)
    low = blocks.conv_bn_relu(c2, low_level_filters, 1, "decoder_low_level")
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = blocks.conv_bn_relu(x, decoder_filters, 3, "decoder_1")
    x = blocks.conv_bn_relu(x, decoder_filters, 3, "decoder_2")
    x = blocks.classifier(x, num_classes)
    logits = BilinearUpsample(4, name="upsample")(x)
    return blocks.finish(inputs, logits, NAME)
