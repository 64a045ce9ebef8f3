"""The architectures of the model zoo by name, with their parameters; no Keras.

Each architecture's parameters are a pydantic model (`reseg.model_params.unet.Params`
for `reseg.models.unet`, and so on): names, types, defaults, bounds and
descriptions, written once. Configs validate `model.params` with them and the
JSON Schema shows them; the builders in `reseg.models` take them; the Keras
registry (`reseg.models.registry`) builds from this catalogue.

They live outside `reseg.models` because importing anything under it imports
Keras (the package registers its custom layers on import, which model loading
relies on), and loading a config must not (3 s of TensorFlow start-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reseg.model_params import (
    alexnet_fcn,
    cnn,
    deeplabv3plus,
    fcn,
    pspnet,
    segformer,
    segnet,
    unet,
)
from reseg.model_params.base import Params, argument_error

__all__ = ["Architecture", "Params", "architecture", "names", "params_class", "validate_params"]


@dataclass(frozen=True)
class Architecture:
    """A registry entry: its name, its parameters and where its builder is.

    Attributes:
        name: Registry name (`model.name` in a config).
        params: The `Params` class of the architecture.
        builder: "module:function" of `build(num_classes, bands, params) -> keras.Model`,
            imported only when a model is built.
    """

    name: str
    params: type[Params]
    builder: str


_ARCHITECTURES = {
    a.name: a
    for a in (
        Architecture("cnn", cnn.Params, "reseg.models.cnn:build"),
        Architecture("alexnet_fcn", alexnet_fcn.Params, "reseg.models.alexnet_fcn:build"),
        Architecture("fcn32s", fcn.Params, "reseg.models.fcn:build_fcn32s"),
        Architecture("fcn16s", fcn.Params, "reseg.models.fcn:build_fcn16s"),
        Architecture("fcn8s", fcn.Params, "reseg.models.fcn:build_fcn8s"),
        Architecture("unet", unet.Params, "reseg.models.unet:build"),
        Architecture("segnet", segnet.Params, "reseg.models.segnet:build"),
        Architecture("pspnet", pspnet.Params, "reseg.models.pspnet:build"),
        Architecture("deeplabv3plus", deeplabv3plus.Params, "reseg.models.deeplabv3plus:build"),
        Architecture("segformer", segformer.Params, "reseg.models.segformer:build"),
    )
}


def names() -> list[str]:
    """Registry names, in a stable order."""
    return list(_ARCHITECTURES)


def architecture(name: str) -> Architecture:
    """The entry called `name`; ValueError listing the names if there is none."""
    if name not in _ARCHITECTURES:
        raise ValueError(f"Unknown model name {name!r}. Available: {names()}")
    return _ARCHITECTURES[name]


def params_class(name: str) -> type[Params]:
    """The `Params` class of architecture `name`."""
    return architecture(name).params


def validate_params(name: str, params: Params | Mapping[str, Any] | None = None) -> Params:
    """The parameters of architecture `name`: `params` checked, defaults filled in.

    Args:
        name: Registry name.
        params: A `Params` of that architecture (returned as is), or a mapping of
            some of its parameters (the rest take their defaults).

    Raises:
        ValueError: Unknown name, unknown parameter or bad value, e.g.
            "Argument `depth` must be >= 1. Received: depth=0".
        TypeError: `params` is not a mapping, or only wrong types, e.g.
            "Argument `batch_norm` must be a bool. Received: batch_norm=1".
    """
    cls = params_class(name)
    if isinstance(params, cls):
        return params
    if isinstance(params, Params):
        raise TypeError(
            f"Model {name!r} takes {cls.__name__}. Received: params={params!r} "
            f"({type(params).__name__})"
        )
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise TypeError(
            f"Model params must be a mapping. Received: params={params!r} ({type(params).__name__})"
        )
    unknown = sorted(set(params) - set(cls.model_fields))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for model {name!r}. Allowed: "
            f"{sorted(cls.model_fields)}. Received: params={dict(params)!r}"
        )
    try:
        return cls.model_validate(dict(params))
    except ValidationError as err:
        raise argument_error(err, params) from None
