"""Plain CNN baseline: a stack of same-resolution convolutions.

`depth` blocks of 3 x 3 convolution (+ batch norm) + ReLU with `filters`
filters each, no pooling and no striding, then a 1 x 1 classifier. Its
receptive field is `1 + depth * (kernel_size - 1)` pixels, so it measures what
local context alone gives. Output stride 1: any height and width.
"""

from __future__ import annotations

import keras

from reseg.model_params.cnn import Params
from reseg.models import blocks

NAME = "cnn"

__all__ = ["NAME", "Params", "build"]


def build(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """Build the plain CNN.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: Filters, depth, kernel size, batch norm, dropout (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`.
    """
    p = Params() if params is None else params
    inputs, x = blocks.image_input(bands, p.output_stride, NAME)
    for i in range(p.depth):
        x = blocks.conv_bn_relu(
            x, p.filters, p.kernel_size, f"block{i + 1}", batch_norm=p.batch_norm
        )
    x = blocks.dropout(x, p.dropout, "dropout")
    return blocks.finish(inputs, blocks.classifier(x, num_classes), NAME)
