"""The `model` section: which architecture of the registry, with which parameters.

`name` is one of the registry's names and `params` is validated by that
architecture's `Params` (`reseg.model_params`, no Keras): unknown keys and bad
values are errors naming the key path, e.g. `model.params.depth: must be >= 1
(received: 0)`. Omitted parameters take their defaults, so the loaded (and
saved) config holds every parameter of the model.

The JSON Schema shows the parameters of each architecture: `params` is one of
the `Params` schemas, and an `if name is X then params is X's` rule per name
(the schema of a discriminated union on `name` that keeps `params` beside it).
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import ConfigDict, Field, SkipValidation, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from reseg import model_params
from reseg.config.base import Section

_NAMES = tuple(model_params.names())
_CLASSES = tuple(dict.fromkeys(model_params.params_class(n) for n in _NAMES))
DEFAULT_MODEL = "unet"

ModelName = Literal[_NAMES]  # type: ignore[valid-type]
AnyParams = Union[_CLASSES]  # type: ignore[valid-type]  # noqa: UP007  (built from a tuple)


def _params_follow_name(schema: dict[str, Any]) -> None:
    """Add to the section's JSON Schema: the name selects the `params` schema."""
    refs = schema["properties"]["params"]["anyOf"]
    rules = []
    for name in _NAMES:
        ref = refs[_CLASSES.index(model_params.params_class(name))]
        when = {"properties": {"name": {"const": name}}}
        if name != DEFAULT_MODEL:
            when["required"] = ["name"]
        rules.append({"if": when, "then": {"properties": {"params": ref}}})
    schema["allOf"] = rules


class ModelConfig(Section):
    """The architecture and its parameters (see `reseg.models.registry`)."""

    model_config = ConfigDict(json_schema_extra=_params_follow_name)

    name: ModelName = Field(DEFAULT_MODEL, description=f"Registry name, one of {list(_NAMES)}.")
    # `_params_of_name` validates with the named architecture's Params; the union is the
    # type and the schema only (tried as a plain union, any model's params would pass).
    params: SkipValidation[AnyParams] = Field(
        default_factory=dict,
        validate_default=True,
        description="Parameters of the architecture `name` (its Params); omitted ones take "
        "their defaults.",
    )

    @field_validator("name", mode="before")
    @classmethod
    def _known_name(cls, v: Any) -> Any:
        if v not in _NAMES:
            raise PydanticCustomError(
                "unknown_model",
                "unknown model {name}; available: {available}",
                {"name": repr(v), "available": str(list(_NAMES))},
            )
        return v

    @field_validator("params", mode="before")
    @classmethod
    def _params_of_name(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.data.get("name")
        if name is None:  # the name is wrong and reported; these params cannot be checked
            return v
        return model_params.params_class(name).model_validate(v)
