"""PSPNet (Zhao et al., 2017).

A dilated encoder (output stride 8 by default, see `reseg.models.encoders`)
gives the feature map `c5`; the pyramid pooling module average-pools it onto
`bins` grids (1, 2, 3, 6), reduces each pooled map with a 1 x 1 convolution to
`channels(c5) / len(bins)` filters, upsamples it bilinearly to the size of `c5`
and concatenates all of them with `c5`. A 3 x 3 convolution (`head_filters`),
dropout and a 1 x 1 classifier give the scores, upsampled bilinearly by the
output stride.

The auxiliary head of the paper (3 x 3 conv, dropout, classifier on the
output of stage c4, loss weight 0.4) is training-only: it is not in the model
`build` returns (prediction, export), and `reseg.models.training_model` adds
it on top of the layer `encoder_c4` (see `aux_head`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from reseg.model_params.pspnet import Params
from reseg.models import blocks, encoders
from reseg.models.layers import AdaptiveAveragePool2D, BilinearUpsample, ResizeToMatch

NAME = "pspnet"
AUX_SOURCE = "encoder_c4"
AUX_WEIGHT = 0.4

__all__ = ["AUX_WEIGHT", "NAME", "Params", "aux_head", "build"]


def build(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """Build PSPNet (prediction model, without the auxiliary head).

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: Encoder, output stride, pyramid bins, head filters, dropout
            (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`, H and W
        multiples of `output_stride`.
    """
    p = Params() if params is None else params
    bins = p.bins
    inputs, x = blocks.image_input(bands, p.output_stride, NAME)
    c5 = encoders.build_encoder(x, bands, p)[3]
    reduced = max(c5.shape[-1] // len(bins), 1)
    branches = [c5]
    for b in bins:
        y = AdaptiveAveragePool2D(b, name=f"ppm{b}_pool")(c5)
        y = blocks.conv_bn_relu(y, reduced, 1, f"ppm{b}")
        branches.append(ResizeToMatch(name=f"ppm{b}_resize")([y, c5]))
    x = layers.Concatenate(name="ppm_concat")(branches)
    x = blocks.conv_bn_relu(x, p.head_filters, 3, "head")
    x = blocks.dropout(x, p.dropout, "head_dropout")
    x = blocks.classifier(x, num_classes)
    logits = BilinearUpsample(p.output_stride, name="upsample")(x)
    return blocks.finish(inputs, logits, NAME)


def aux_head(model: keras.Model) -> Any:
    """The auxiliary output of a PSPNet, built on the model's `encoder_c4` tensor.

    3 x 3 convolution to `channels(c4) / 4` filters (paper: 1024 -> 256), batch
    norm, ReLU, dropout at the rate of the main head (`dropout`, paper 0.1), 1 x 1
    classifier, bilinear resize to the input and softmax. Layers are named `aux_*`; the returned tensor is float32
    `(B, H, W, C)` and belongs to the graph of `model.input`.
    """
    c4 = model.get_layer(AUX_SOURCE).output
    num_classes = model.output.shape[-1]
    y = blocks.conv_bn_relu(c4, max(c4.shape[-1] // 4, 8), 3, "aux")
    rate = next((la.rate for la in model.layers if la.name == "head_dropout"), 0.0)
    y = blocks.dropout(y, rate, "aux_dropout")
    y = blocks.classifier(y, num_classes, name="aux_classifier")
    y = ResizeToMatch(name="aux_resize")([y, model.input])
    return blocks.softmax(y, name="aux_softmax")
