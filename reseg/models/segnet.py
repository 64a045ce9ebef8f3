"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017).

Encoder: the 13 convolutions of VGG-16 (blocks of 2, 2, 3, 3, 3; 3 x 3,
batch norm, ReLU; `base_filters * (1, 2, 4, 8, 8)` filters), each block ending
in 2 x 2 max pooling that keeps the position of every maximum
(`MaxPoolingWithArgmax2D`). Decoder: the mirror image; each block starts by
unpooling with the indices of its encoder block (`MaxUnpooling2D`: values go
back where the maxima were, zeros elsewhere) and densifies with 3 x 3
convolutions, the last of a block reducing the filters to the next block's
width. The last decoder convolution (`conv1_1_D`) outputs the class scores,
followed by softmax, as in the paper's Caffe model. Default widths are half of
VGG-16 (`base_filters=32`, paper 64). Output stride 32.
"""

from __future__ import annotations

import keras
from keras import layers

from reseg.model_params.segnet import Params
from reseg.models import blocks
from reseg.models.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

NAME = "segnet"
_VGG16 = (2, 2, 3, 3, 3)
_WIDTHS = (1, 2, 4, 8, 8)

__all__ = ["NAME", "Params", "build"]


def build(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """Build SegNet.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: Base filters, batch norm, dropout (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`, H and W
        multiples of 32.
    """
    p = Params() if params is None else params
    base_filters, batch_norm, dropout = p.base_filters, p.batch_norm, p.dropout
    inputs, x = blocks.image_input(bands, p.output_stride, NAME)
    indices = []
    for b, (convs, width) in enumerate(zip(_VGG16, _WIDTHS, strict=True), start=1):
        for i in range(1, convs + 1):
            x = blocks.conv_bn_relu(
                x, base_filters * width, 3, f"conv{b}_{i}", batch_norm=batch_norm
            )
        x, idx = MaxPoolingWithArgmax2D(2, name=f"pool{b}")(x)
        indices.append(idx)
        if b >= 3:
            x = blocks.dropout(x, dropout, f"pool{b}_dropout")
    for b in range(5, 0, -1):
        x = MaxUnpooling2D(2, name=f"unpool{b}")([x, indices[b - 1]])
        convs = _VGG16[b - 1]
        width = base_filters * _WIDTHS[b - 1]
        out_width = base_filters * _WIDTHS[b - 2] if b > 1 else width
        for i in range(convs, 0, -1):
            name = f"conv{b}_{i}_D"
            if b == 1 and i == 1:
                x = layers.Conv2D(num_classes, 3, padding="same", name=name)(x)
                break
            filters = out_width if i == 1 else width
            x = blocks.conv_bn_relu(x, filters, 3, name, batch_norm=batch_norm)
        if b >= 3:
            x = blocks.dropout(x, dropout, f"unpool{b}_dropout")
    return blocks.finish(inputs, x, NAME)
