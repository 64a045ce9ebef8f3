"""The model registry: architectures by name, for configs and the trainer.

Each entry is a builder `build(num_classes, bands, **params) -> keras.Model`
whose keyword arguments, with their defaults, are the entry's parameters. The
model it returns is the prediction model: input "image" `(None, None, bands)`
float32 (normalised), one output, float32 softmax `(B, H, W, C)`, named after the
entry. `training_model` adds the training-only heads (PSPNet's auxiliary head).

Saving and loading: `model.save("m.keras")`; `keras.models.load_model("m.keras",
safe_mode=True)` after `import reseg.models` (which registers the custom
layers), no `custom_objects`. The auxiliary head is not saved with the
prediction model: `training_model` builds it again (fresh weights) for a
reloaded PSPNet, so fine-tuning a reloaded PSPNet starts a new auxiliary head.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

import keras

from reseg.models import (
    alexnet_fcn,
    checks,
    cnn,
    deeplabv3plus,
    fcn,
    pspnet,
    segnet,
    unet,
)

# name: (module with `check(params)` and `output_stride(params)`, builder)
_ENTRIES: dict[str, tuple[ModuleType, Callable[..., keras.Model]]] = {
    "cnn": (cnn, cnn.build),
    "alexnet_fcn": (alexnet_fcn, alexnet_fcn.build),
    "fcn32s": (fcn, functools.partial(fcn.build_fcn, "fcn32s")),
    "fcn16s": (fcn, functools.partial(fcn.build_fcn, "fcn16s")),
    "fcn8s": (fcn, functools.partial(fcn.build_fcn, "fcn8s")),
    "unet": (unet, unet.build),
    "segnet": (segnet, segnet.build),
    "pspnet": (pspnet, pspnet.build),
    "deeplabv3plus": (deeplabv3plus, deeplabv3plus.build),
}

# name: (function building the auxiliary outputs of a built model, their loss weights)
_AUX_HEADS: dict[str, tuple[Callable[[keras.Model], Any], float]] = {
    "pspnet": (pspnet.aux_head, pspnet.AUX_WEIGHT),
}

_TRAINING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def names() -> list[str]:
    """Registry names, in a stable order."""
    return list(_ENTRIES)


def _entry(name: str) -> tuple[ModuleType, Callable[..., keras.Model]]:
    if name not in _ENTRIES:
        raise ValueError(f"Unknown model name {name!r}. Available: {names()}")
    return _ENTRIES[name]


def parameters(name: str) -> dict[str, Any]:
    """The parameters of an entry with their defaults (all but `num_classes`, `bands`)."""
    _, builder = _entry(name)
    sig = inspect.signature(builder)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name not in ("num_classes", "bands") and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def _resolve(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated with `params`, checked; raises on unknown keys or bad values."""
    if not isinstance(params, dict):
        raise TypeError(
            f"Model params must be a mapping. Received: params={params!r} ({type(params).__name__})"
        )
    module, _ = _entry(name)
    allowed = parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for model {name!r}. Allowed: {sorted(allowed)}. "
            f"Received: params={params!r}"
        )
    full = {**allowed, **params}
    module.check(full)
    return full


def validate_params(name: str, params: dict[str, Any]) -> None:
    """Check a model's parameters without building it.

    Raises:
        ValueError: Unknown name, unknown parameter or bad value; the message
            names the key, what was received and what is allowed.
        TypeError: A value of the wrong type.
    """
    _resolve(name, params)


def output_stride(name: str, **params: Any) -> int:
    """The factor that the input height and width of this model must be multiples of."""
    module, _ = _entry(name)
    return int(module.output_stride(_resolve(name, params)))


def build_model(name: str, num_classes: int, bands: int, **params: Any) -> keras.Model:
    """Build the prediction model of a registry entry.

    Args:
        name: Registry name (see `names()`).
        num_classes: Number of classes C (>= 2).
        bands: Number of input bands B.
        **params: The entry's parameters (see `parameters(name)`).

    Returns:
        Model named `name`: `(B, H, W, bands) float32 -> (B, H, W, C) float32`
        per-pixel softmax; H and W multiples of `output_stride(name, **params)`.
    """
    checks.common(num_classes, bands)
    _resolve(name, params)
    _, builder = _entry(name)
    return builder(num_classes, bands, **params)


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
