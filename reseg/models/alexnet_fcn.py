"""AlexNet made fully convolutional (FCN-AlexNet, Long et al., 2015, table 1).

AlexNet's five convolutions (11 x 11 stride 4, 5 x 5, 3 x 3, 3 x 3, 3 x 3 with
96, 256, 384, 384, 256 filters scaled by `width`) with 3 x 3 stride-2 max
pooling after conv1, conv2 and conv5; fc6 as a 6 x 6 convolution and fc7 as a
1 x 1 convolution (`fc_filters`, paper 4096), ReLU and dropout; a 1 x 1 class
score, upsampled 32x by a fixed bilinear transposed convolution (kernel 64,
stride 32). "same" padding keeps every stride exact, so the output stride is
32; batch norm (optional) replaces AlexNet's local response normalisation.
"""

from __future__ import annotations

import keras
from keras import layers

from reseg.model_params.alexnet_fcn import Params
from reseg.models import blocks
from reseg.models.layers import BilinearKernel

NAME = "alexnet_fcn"
_CONVS = ((96, 11, 4), (256, 5, 1), (384, 3, 1), (384, 3, 1), (256, 3, 1))
_POOL_AFTER = (1, 2, 5)

__all__ = ["NAME", "Params", "build"]


def build(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """Build FCN-AlexNet.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: Width multiplier, fc filters, batch norm, dropout (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`, H and W
        multiples of 32.
    """
    p = Params() if params is None else params
    inputs, x = blocks.image_input(bands, p.output_stride, NAME)
    for i, (filters, kernel, stride) in enumerate(_CONVS, start=1):
        x = blocks.conv_bn_relu(
            x,
            max(int(filters * p.width), 1),
            kernel,
            f"conv{i}",
            strides=stride,
            batch_norm=p.batch_norm,
        )
        if i in _POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
    x = blocks.conv_bn_relu(x, p.fc_filters, 6, "fc6", batch_norm=p.batch_norm)
    x = blocks.dropout(x, p.dropout, "drop6")
    x = blocks.conv_bn_relu(x, p.fc_filters, 1, "fc7", batch_norm=p.batch_norm)
    x = blocks.dropout(x, p.dropout, "drop7")
    score = blocks.classifier(x, num_classes, name="score_fr")
    logits = layers.Conv2DTranspose(
        num_classes,
        64,
        strides=32,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearKernel(),
        trainable=False,
        name="upscore",
    )(score)
    return blocks.finish(inputs, logits, NAME)
