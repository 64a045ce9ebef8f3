"""SegFormer (Xie et al., 2021): a Mix Transformer encoder and an all-MLP decoder.

The encoder (`reseg.models.mit`, nested as the layer "encoder", so the trainer freezes it
by name) gives features at strides 4, 8, 16, 32. The decoder projects each to
`decoder_dim` channels (a dense layer per pixel), upsamples them bilinearly to stride 4,
concatenates them (deepest first), fuses them with a 1 x 1 convolution, batch norm and
ReLU, and classifies; the class scores are upsampled 4x bilinearly to the input size.
Output stride 32 (inputs: multiples of 32).
"""

from __future__ import annotations

import keras
from keras import layers

from reseg.model_params.segformer import Params
from reseg.models import blocks, mit
from reseg.models.layers import BilinearUpsample

NAME = "segformer"

__all__ = ["NAME", "Params", "build"]


def build(num_classes: int, bands: int, params: Params | None = None) -> keras.Model:
    """Build SegFormer.

    Args:
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        params: MiT variant, its weights, decoder width, dropout (None: the defaults).

    Returns:
        Model `(B, H, W, bands) float32 -> (B, H, W, C) float32 softmax`, H and W
        multiples of 32.
    """
    p = Params() if params is None else params
    inputs, x = blocks.image_input(bands, p.output_stride, NAME)
    features = mit.build_encoder(p.encoder, bands, p.encoder_weights)(x)
    projected = []
    for i, f in enumerate(features):
        y = layers.Dense(p.decoder_dim, name=f"decoder_linear_c{i + 2}")(f)
        projected.append(BilinearUpsample(2**i, name=f"decoder_up_c{i + 2}")(y) if i else y)
    x = layers.Concatenate(name="decoder_concat")(projected[::-1])
    x = blocks.conv_bn_relu(x, p.decoder_dim, 1, "decoder_fuse")
    x = blocks.dropout(x, p.dropout, "decoder_dropout")
    logits = BilinearUpsample(4, name="logits_up")(blocks.classifier(x, num_classes))
    return blocks.finish(inputs, logits, NAME)
