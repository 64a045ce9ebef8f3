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

import keras
from keras import layers

from reseg.model_params.deeplabv3plus import Params
from reseg.models import blocks, encoders
from reseg.models.layers import BilinearUpsample, ResizeToMatch

NAME = "deeplabv3plus"

__all__ = ["NAME", "Params", "build"]


def build(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """Build DeepLabV3+.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: Encoder, output stride, ASPP rates and widths, decoder widths,
            dropout (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`, H and W
        multiples of `output_stride`.
    """
    p = Params() if params is None else params
    aspp_filters, decoder_filters = p.aspp_filters, p.decoder_filters
    inputs, x = blocks.image_input(bands, p.output_stride, NAME)
    c2, _, _, c5 = encoders.build_encoder(x, bands, p)
    branches = [blocks.conv_bn_relu(c5, aspp_filters, 1, "aspp_1x1")]
    for rate in p.rates:
        branches.append(blocks.conv_bn_relu(c5, aspp_filters, 3, f"aspp_rate{rate}", dilation=rate))
    if p.image_pooling:
        y = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(c5)
        y = blocks.conv_bn_relu(y, aspp_filters, 1, "aspp_pool_proj")
        branches.append(ResizeToMatch(name="aspp_pool_resize")([y, c5]))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = blocks.conv_bn_relu(x, aspp_filters, 1, "aspp_proj")
    x = blocks.dropout(x, p.dropout, "aspp_dropout")
    x = BilinearUpsample(p.output_stride // 4, name="decoder_upsample")(x)
    low = blocks.conv_bn_relu(c2, p.low_level_filters, 1, "decoder_low_level")
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = blocks.conv_bn_relu(x, decoder_filters, 3, "decoder_1")
    x = blocks.conv_bn_relu(x, decoder_filters, 3, "decoder_2")
    x = blocks.classifier(x, num_classes)
    logits = BilinearUpsample(4, name="upsample")(x)
    return blocks.finish(inputs, logits, NAME)
