"""Tiny configurations of every registry entry, built once per test session, and a fixed batch."""

from __future__ import annotations

import functools

import keras
import numpy as np

from reseg.models import build_model

_SMALL_ENCODER = dict(encoder_widths=[4, 8, 8, 16], encoder_blocks=[1, 1, 1, 1])

# Widths of a few filters: enough to exercise every layer, fast on 2 cores.
TINY: dict[str, dict] = {
    "cnn": dict(filters=8, depth=2),
    "alexnet_fcn": dict(width=0.125, fc_filters=16, dropout=0.0),
    "fcn32s": dict(base_filters=4, fc_filters=16, fc_kernel=3, dropout=0.0),
    "fcn16s": dict(base_filters=4, fc_filters=16, fc_kernel=3, dropout=0.0),
    "fcn8s": dict(base_filters=4, fc_filters=16, fc_kernel=3, dropout=0.0),
    "unet": dict(depth=2, base_filters=4),
    "segnet": dict(base_filters=4),
    "pspnet": dict(**_SMALL_ENCODER, head_filters=8, dropout=0.0),
    "deeplabv3plus": dict(
        **_SMALL_ENCODER, aspp_filters=8, low_level_filters=4, decoder_filters=8, dropout=0.0
    ),
    "segformer": dict(decoder_dim=8, dropout=0.0),
}

NUM_CLASSES = 3


@functools.cache
def tiny_model(name: str, bands: int) -> keras.Model:
    """The tiny model of `name` for `bands` bands (shared by the tests of a session)."""
    keras.utils.set_random_seed(0)
    return build_model(name, NUM_CLASSES, bands, **TINY[name])


def batch(bands: int, height: int = 32, width: int = 32, n: int = 2, seed: int = 0):
    """A fixed float32 image batch `(n, height, width, bands)` and uint8 labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, height, width, bands)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=(n, height, width)).astype("uint8")
    return x, y
