"""Plain CNN baseline: a stack of same-resolution convolutions.

`depth` blocks of 3 x 3 convolution (+ batch norm) + ReLU with `filters`
filters each, no pooling and no striding, then a 1 x 1 classifier. Its
receptive field is `1 + depth * (kernel_size - 1)` pixels, so it measures what
local context alone gives. Output stride 1: any height and width.
"""

from __future__ import annotations

from typing import Any

import keras

from reseg.models import blocks, checks

NAME = "cnn"


def check(params: dict[str, Any]) -> None:
    """Check every argument of `build` (all present in `params`)."""
    checks.positive_int("filters", params["filters"])
    checks.positive_int("depth", params["depth"])
    checks.positive_int("kernel_size", params["kernel_size"])
    if params["kernel_size"] % 2 == 0:
        raise ValueError(
            f"Argument `kernel_size` must be odd. Received: kernel_size={params['kernel_size']}"
        )
    checks.boolean("batch_norm", params["batch_norm"])
    checks.rate("dropout", params["dropout"])


def output_stride(params: dict[str, Any]) -> int:
    """1: no downsampling."""
    return 1


def build(
    num_classes: int,
    bands: int,
    filters: int = 64,
    depth: int = 6,
    kernel_size: int = 3,
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> keras.Model:
    """Build the plain CNN.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        filters: Filters of every convolution.
        depth: Number of convolution blocks.
        kernel_size: Odd kernel side of every convolution.
        batch_norm: Batch normalisation after every convolution.
        dropout: Dropout rate before the classifier (0 = none).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`.
    """
    params = dict(
        filters=filters,
        depth=depth,
        kernel_size=kernel_size,
        batch_norm=batch_norm,
        dropout=dropout,
    )
    checks.common(num_classes, bands)
    check(params)
    inputs, x = blocks.image_input(bands, 1, NAME)
    for i in range(depth):
        x = blocks.conv_bn_relu(x, filters, kernel_size, f"block{i + 1}", batch_norm=batch_norm)
    x = blocks.dropout(x, dropout, "dropout")
    return blocks.finish(inputs, blocks.classifier(x, num_classes), NAME)
