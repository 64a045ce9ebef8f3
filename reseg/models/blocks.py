"""Small functional building blocks shared by the builders (named layers only)."""

from __future__ import annotations

import keras
from keras import layers

from reseg.models.layers import InputSizeCheck

BN_MOMENTUM = 0.9
"""Momentum of the moving mean and variance of every batch norm the builders make.

Keras' default, 0.99, keeps 0.99^n of the initial statistics (mean 0, variance 1)
after n steps: 37% after 100 steps, which is a whole training on a small sample
(the ISPRS crops make 5 steps per epoch), so validation and prediction ran on
statistics that were mostly the initial ones (Potsdam: validation loss 15 while
the training loss was 0.9). 0.9 (PyTorch's default, 0.1 in its convention) keeps
4% after 30 steps.
"""


def image_input(bands: int, multiple: int, model_name: str):
    """The model input `(None, None, bands)` float32 and its size-checked tensor.

    Returns:
        `(inputs, x)`: the `keras.Input` named "image" and the same tensor after
        `InputSizeCheck(multiple)`, which every builder continues from.
    """
    inputs = keras.Input((None, None, bands), dtype="float32", name="image")
    x = InputSizeCheck(multiple, model_name=model_name, name="stride_check")(inputs)
    return inputs, x


def conv_bn_relu(
    x,
    filters: int,
    kernel_size: int,
    name: str,
    *,
    strides: int = 1,
    dilation: int = 1,
    batch_norm: bool = True,
    activation: bool = True,
):
    """Conv2D ("same" padding) -> BatchNormalization (optional) -> ReLU (optional).

    Layers are named `{name}_conv`, `{name}_bn`, `{name}_relu`; the convolution
    has no bias when batch norm follows it.
    """
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        dilation_rate=dilation,
        use_bias=not batch_norm,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if activation:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def dropout(x, rate: float, name: str):
    """Dropout when `rate > 0`, else `x` unchanged (no layer)."""
    return layers.Dropout(rate, name=name)(x) if rate > 0 else x


def classifier(x, num_classes: int, name: str = "classifier"):
    """1 x 1 convolution to class logits `(B, H, W, num_classes)`."""
    return layers.Conv2D(num_classes, 1, name=name)(x)


def softmax(logits, name: str = "softmax"):
    """Per-pixel softmax over classes, always float32."""
    return layers.Activation("softmax", dtype="float32", name=name)(logits)


def finish(inputs, logits, model_name: str) -> keras.Model:
    """The prediction model: `inputs -> softmax(logits)`, named after the registry entry."""
    return keras.Model(inputs, softmax(logits), name=model_name)
