"""U-Net (Ronneberger et al., 2015).

Contracting path of `depth` levels (two 3 x 3 convolutions, then 2 x 2 max
pooling; filters `base_filters * 2**level`), a bottleneck of two convolutions
with `base_filters * 2**depth` filters, and an expanding path that upsamples with
2 x 2 transposed convolutions (halving the filters), concatenates the skip
connection of the same level and applies two 3 x 3 convolutions. A 1 x 1
convolution gives the class scores. Differences from the paper: "same" padding
(output at input resolution, no cropping), optional batch normalisation after
every convolution, and dropout (paper: at the end of the contracting path)
applied to the bottleneck output. Output stride `2**depth`.

Default (depth 4, base 32, 4 bands, 7 classes): 7.77 M parameters, 24.2 GFLOP
per 256 x 256 tile.

With `encoder` (segmentation_models' U-Net): the contracting path is a backbone
of `reseg.models.backbones` (a ResNet, pretrained or not), nested as the layer
"encoder", whose features at strides 2, 4, ..., 2**encoder_depth are the skips.
The deepest one (with dropout) is the bottleneck; each decoder level upsamples
2x (transposed convolution), concatenates the skip of its stride (none at
stride 1), and applies two 3 x 3 convolutions of `base_filters * 2**level`
filters (level = log2 of its output stride). Output stride 2**encoder_depth.
"""

from __future__ import annotations

import keras
from keras import layers

from reseg.model_params.unet import Params
from reseg.models import backbones, blocks

NAME = "unet"

__all__ = ["NAME", "Params", "build"]


def build(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """Build a U-Net.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: Depth, base filters, batch norm, dropout (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`, H and W
        multiples of `2**depth`.
    """
    p = Params() if params is None else params
    inputs, x = blocks.image_input(bands, p.output_stride, NAME)
    if p.encoder == "none":
        skips, x = _contracting_path(x, p)
        x = _double_conv(x, p.base_filters * 2**p.depth, "bottleneck", p.batch_norm)
    else:
        encoder = backbones.build_backbone(p.encoder, bands, p.encoder_weights, p.encoder_bands)
        features = encoder(x)[: p.encoder_depth]
        # skip of level l (output stride 2**l): none at stride 1, the stride-2**l feature after
        skips, x = [None, *features[:-1]], features[-1]
    x = blocks.dropout(x, p.dropout, "bottleneck_dropout")
    for level in reversed(range(p.levels)):
        filters = p.base_filters * 2**level
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, kernel_initializer="he_normal", name=f"dec{level + 1}_up"
        )(x)
        if skips[level] is not None:
            x = layers.Concatenate(name=f"dec{level + 1}_concat")([skips[level], x])
        x = _double_conv(x, filters, f"dec{level + 1}", p.batch_norm)
    return blocks.finish(inputs, blocks.classifier(x, num_classes), NAME)


def _double_conv(x, filters: int, name: str, batch_norm: bool):
    x = blocks.conv_bn_relu(x, filters, 3, f"{name}_1", batch_norm=batch_norm)
    return blocks.conv_bn_relu(x, filters, 3, f"{name}_2", batch_norm=batch_norm)


def _contracting_path(x, p: Params) -> tuple[list, object]:
    """The plain U-Net's encoder: skips at strides 1 .. 2**(depth-1), and its deepest pooling."""
    skips = []
    for level in range(p.depth):
        x = _double_conv(x, p.base_filters * 2**level, f"enc{level + 1}", p.batch_norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    return skips, x
