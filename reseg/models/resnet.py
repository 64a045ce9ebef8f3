"""ResNet-18/34/50 feature pyramids in torchvision's layout (He et al., 2016).

The network of `torchvision.models.resnet18/34/50` (and timm's `resnet*`, and
TorchGeo's ResNet weights) without its pooling and classifier, written in Keras
so that a PyTorch state dict converts by name (`reseg.models.convert`): a layer
is the state-dict prefix with "." replaced by "_" (`layer2.0.downsample.0` ->
`layer2_0_downsample_0`). ResNet-50 is torchvision's "v1.5": the stride of a
bottleneck sits on its 3 x 3 convolution, not on the first 1 x 1 (as in
`keras.applications.ResNet50`).

PyTorch pads symmetrically (`padding = k // 2`); Keras' "same" pads a stride-2
convolution of an even input on the bottom and right only, which shifts every
later feature by half a pixel. Strided convolutions and the stem's max pooling
are therefore an explicit `ZeroPadding2D(k // 2)` and a "valid" layer, which
computes what PyTorch computes (zero padding before the max pooling equals
PyTorch's -inf padding, because its input is a ReLU output >= 0). Batch norm:
epsilon 1e-5 (PyTorch's), momentum `blocks.BN_MOMENTUM`.

The model maps `(B, H, W, bands)` to five features at strides 2, 4, 8, 16, 32:
`relu` (64 channels), `layer1` ... `layer4` (ResNet-18/34: 64, 128, 256, 512;
ResNet-50: 256, 512, 1024, 2048), H and W multiples of 32.
"""

from __future__ import annotations

import keras
from keras import layers

from reseg.models.blocks import BN_MOMENTUM

# name: (block kind, blocks per stage layer1..layer4)
DEPTHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50_torchvision": ("bottleneck", (3, 4, 6, 3)),
}

WIDTHS = (64, 128, 256, 512)
"""Inner widths of the four stages; a bottleneck's output has 4x as many channels."""

__all__ = ["DEPTHS", "WIDTHS", "build"]


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    """A bias-free convolution padded as PyTorch pads it (`k // 2` on every side)."""
    pad = kernel // 2
    if stride > 1 and pad:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=False, name=name
    )(x)


def _bn(x, name: str):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-5, name=name)(x)


def _basic(x, width: int, stride: int, name: str):
    """Two 3 x 3 convolutions; a 1 x 1 projection when the shape changes."""
    y = layers.ReLU(name=f"{name}_relu1")(
        _bn(_conv(x, width, 3, stride, f"{name}_conv1"), f"{name}_bn1")
    )
    y = _bn(_conv(y, width, 3, 1, f"{name}_conv2"), f"{name}_bn2")
    return _residual(x, y, width, stride, name)


def _bottleneck(x, width: int, stride: int, name: str):
    """1 x 1 reduce, 3 x 3 (strided, v1.5), 1 x 1 expand to 4 * width."""
    y = layers.ReLU(name=f"{name}_relu1")(
        _bn(_conv(x, width, 1, 1, f"{name}_conv1"), f"{name}_bn1")
    )
    y = layers.ReLU(name=f"{name}_relu2")(
        _bn(_conv(y, width, 3, stride, f"{name}_conv2"), f"{name}_bn2")
    )
    y = _bn(_conv(y, 4 * width, 1, 1, f"{name}_conv3"), f"{name}_bn3")
    return _residual(x, y, 4 * width, stride, name)


def _residual(x, y, channels: int, stride: int, name: str):
    if stride != 1 or x.shape[-1] != channels:
        x = layers.Conv2D(channels, 1, strides=stride, use_bias=False, name=f"{name}_downsample_0")(
            x
        )
        x = _bn(x, f"{name}_downsample_1")
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))


def build(name: str, bands: int) -> keras.Model:
    """The ResNet `name` ("resnet18", "resnet34", "resnet50_torchvision") for `bands` bands.

    Returns:
        Model named "encoder": `(B, H, W, bands)` -> `[relu, layer1, layer2, layer3,
        layer4]` at strides 2, 4, 8, 16, 32, randomly initialised.
    """
    if name not in DEPTHS:
        raise ValueError(f"Argument `name` must be one of {list(DEPTHS)}. Received: name={name!r}")
    kind, counts = DEPTHS[name]
    block = _basic if kind == "basic" else _bottleneck
    inputs = keras.Input((None, None, bands), name="encoder_input")
    x = layers.ReLU(name="relu")(_bn(_conv(inputs, 64, 7, 2, "conv1"), "bn1"))
    features = [x]
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, 2, name="maxpool")(x)
    for stage, (width, count) in enumerate(zip(WIDTHS, counts, strict=True), start=1):
        for b in range(count):
            stride = 2 if stage > 1 and b == 0 else 1
            x = block(x, width, stride, f"layer{stage}_{b}")
        x = layers.Identity(name=f"layer{stage}")(x)
        features.append(x)
    return keras.Model(inputs, features, name="encoder")
