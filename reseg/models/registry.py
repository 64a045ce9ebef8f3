"""The model registry: architectures by name, for configs and the trainer.

The entries, their `Params` classes and their builders are listed once, in the
Keras-free catalogue `reseg.model_params`; this module builds from it. A
builder is `build(num_classes, bands, params) -> keras.Model` and returns the
prediction model: input "image" `(None, None, bands)` float32 (normalised), one
output, float32 softmax `(B, H, W, C)`, named after the entry.
`training_model` adds the training-only heads (PSPNet's auxiliary head).

Parameters are given as the entry's `Params`, as a mapping, or as keyword
arguments: `build_model("unet", 7, 4, depth=3)` equals
`build_model("unet", 7, 4, unet.Params(depth=3))`.

Saving and loading: `model.save("m.keras")`; `keras.models.load_model("m.keras",
safe_mode=True)` after `import reseg.models` (which registers the custom
layers), no `custom_objects`. The auxiliary head is not saved with the
prediction model: `training_model` builds it again (fresh weights) for a
reloaded PSPNet, so fine-tuning a reloaded PSPNet starts a new auxiliary head.
"""

from __future__ import annotations

import importlib
import os
import weakref
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import keras

from reseg.model_params import architecture, names, params_class, validate_params
from reseg.model_params.base import Params
from reseg.model_params.fcn import VARIANTS as FCN_VARIANTS
from reseg.models import pspnet

__all__ = [
    "build_model",
    "builder",
    "encoder_layers",
    "names",
    "output_stride",
    "parameters",
    "params_class",
    "training_model",
    "validate_params",
]

# name: (function building the auxiliary outputs of a built model, their loss weights)
_AUX_HEADS: dict[str, tuple[Callable[[keras.Model], Any], float]] = {
    "pspnet": (pspnet.aux_head, pspnet.AUX_WEIGHT),
}

_TRAINING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def builder(name: str) -> Callable[..., keras.Model]:
    """The builder function of entry `name`."""
    module, function = architecture(name).builder.split(":")
    return getattr(importlib.import_module(module), function)


def parameters(name: str) -> dict[str, Any]:
    """The parameters of an entry with their defaults."""
    return dict(params_class(name)())


def _resolve(name: str, params: Params | Mapping[str, Any] | None, kwargs: dict) -> Params:
    """`params` updated with `kwargs`, checked (see `validate_params`)."""
    if not kwargs:
        return validate_params(name, params)
    if params is not None and not isinstance(params, Mapping | Params):
        return validate_params(name, params)  # raises the TypeError
    return validate_params(name, {**dict(params or {}), **kwargs})


def output_stride(
    name: str, params: Params | Mapping[str, Any] | None = None, **kwargs: Any
) -> int:
    """The factor that the input height and width of this model must be multiples of."""
    return int(_resolve(name, params, kwargs).output_stride)


def _check_counts(num_classes: Any, bands: Any) -> None:
    for key, value, minimum in (("num_classes", num_classes, 2), ("bands", bands, 1)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"Argument `{key}` must be an int. Received: {key}={value!r}")
        if value < minimum:
            raise ValueError(f"Argument `{key}` must be >= {minimum}. Received: {key}={value!r}")


def build_model(
    name: str,
    num_classes: int,
    bands: int,
    params: Params | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> keras.Model:
    """Build the prediction model of a registry entry.

    Args:
        name: Registry name (see `names()`).
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B (>= 1).
        params: The entry's `Params`, or a mapping of some of its parameters.
        **kwargs: Parameters as keyword arguments (over those of `params`).

    Returns:
        Model named `name`: `(B, H, W, bands) float32 -> (B, H, W, C) float32`
        per-pixel softmax; H and W multiples of `output_stride(name, params)`.

    Raises:
        ValueError, TypeError: Unknown name or parameter, bad value (see
            `validate_params`), bad class or band count.
    """
    _check_counts(num_classes, bands)
    resolved = _resolve(name, params, kwargs)
    return builder(name)(num_classes, bands, resolved)


def training_model(model: keras.Model) -> tuple[keras.Model, list[float]]:
    """The model to train and its loss weights.

    For PSPNet: a model with outputs `[main, aux]` sharing every layer of
    `model` plus the auxiliary head, and loss weights `[1.0, 0.4]`. For the
    others: `(model, [1.0])`. Calling it again on the same model object returns
    the same training model (same auxiliary head); on a reloaded model the
    auxiliary head is new.
    """
    cached = _TRAINING.get(model)
    if cached is not None:
        return cached
    aux = _AUX_HEADS.get(model.name)
    if aux is None:
        result = (model, [1.0])
    else:
        head, weight = aux
        train = keras.Model(model.input, [model.output, head(model)], name=f"{model.name}_train")
        result = (train, [1.0, weight])
    _TRAINING[model] = result
    return result


def encoder_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of `model`'s encoder: the nested backbone "encoder" (U-Net, SegFormer), the
    layers named `encoder_*` (PSPNet, DeepLabV3+), or FCN's VGG-16 blocks `conv1_1` ...
    `conv5_3` (when loaded with VGG-16's weights, or not); empty for a model without one
    (plain U-Net)."""
    fcn = model.name in FCN_VARIANTS
    return [
        la
        for la in model.layers
        if la.name == "encoder"
        or la.name.startswith("encoder_")
        or (fcn and la.name.startswith("conv") and la.name[4:5].isdigit())
    ]


def load_saved(
    local: str | os.PathLike, name: str | os.PathLike | None = None, error: type = ValueError
) -> keras.Model:
    """`keras.models.load_model(local, safe_mode=True, compile=False)`, or the one-line `error`
    (a `reseg.errors` type) of a file that is not a model, naming it by `name` (its URI when
    `local` is a cached copy): "corrupt" for a file that is not a `.keras` zip archive
    (truncated or overwritten; Keras itself says "File not found"), Keras' own reason for
    an archive it cannot read."""
    name = name or local
    if not zipfile.is_zipfile(local):
        raise error(
            f"{name}: corrupt model file: not a .keras (zip) archive, truncated or overwritten"
        )
    try:
        return keras.models.load_model(local, safe_mode=True, compile=False)
    except Exception as e:  # a damaged member or a foreign archive; keras raises many kinds
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise error(f"{name}: corrupt model file: Keras cannot load it ({reason})") from None
