"""The base of every architecture's `Params`: strict pydantic models, keras-hub style errors.

A `Params` subclass lists an architecture's parameters once: name, type,
default, bounds (`Field(ge=..., le=...)`) and description. Configs validate
`model.params` with it, the JSON Schema shows it, and the builder takes it.

Types are strict: an int parameter refuses `2.5`, `"64"` and `True`, a bool
refuses `1` and `"yes"`; a float accepts an int. Lists arrive as lists (YAML,
JSON) and are stored as tuples, so a `Params` is immutable and hashable.

Every error message reads as the end of the sentence "Argument `depth` ...":
"must be >= 1", "must be an int", "unknown parameter; allowed: [...]", so that
the config shows `model.params.depth: must be >= 1 (received: 0)` and the
registry raises "Argument `depth` must be >= 1. Received: depth=0" (see
`argument_error`).
"""

from __future__ import annotations

import typing
from collections.abc import KeysView, Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Count = Annotated[StrictInt, Field(ge=1)]
"""A positive int (filters, depths, kernel sides)."""

Rate = Annotated[StrictFloat, Field(ge=0.0, lt=1.0)]
"""A dropout rate in [0, 1)."""

Flag = StrictBool
"""A bool (ints and strings are refused)."""

_TYPE_ERRORS = {"int_type", "bool_type", "float_type", "string_type", "tuple_type", "list_type"}

_PHRASES = {
    "int_type": "must be an int",
    "bool_type": "must be a bool",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "too_short": "must have at least {min_length} entries",
    "too_long": "must have at most {max_length} entries",
    "model_type": "must be a mapping of parameter names to values",
}


def invalid(kind: str, message: str) -> PydanticCustomError:
    """An error of a validator, worded as the end of "Argument `x` ..." (e.g. "must be odd")."""
    return PydanticCustomError(kind, message)


class Params(BaseModel):
    """Parameters of one architecture; subclasses declare the fields.

    Reads as a mapping of its fields too (`dict(params)`, `**params`), so code
    that passed the parameters as keyword arguments keeps working.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="wrap")
    @classmethod
    def _sentence_messages(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as err:
            details = [_reworded(cls, e) for e in err.errors()]
            raise ValidationError.from_exception_data(cls.__name__, details) from None

    def keys(self) -> KeysView[str]:
        """The parameter names."""
        return type(self).model_fields.keys()

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)


def _reworded(cls: type[Params], error: Any) -> InitErrorDetails:
    """One pydantic error with its message worded as the end of "Argument `x` ..."."""
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    if kind == "extra_forbidden":
        kind, message = (
            "unknown_parameter",
            f"unknown parameter; allowed: {sorted(cls.model_fields)}",
        )
    elif kind == "literal_error":
        message = f"must be one of {_literal_values(cls, loc, ctx)}"
    elif kind == "too_short" and ctx.get("min_length") == 1:
        message = "must not be empty"
    elif kind in _PHRASES:
        message = _PHRASES[kind].format(**ctx)
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = error["msg"]
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=error["input"])


def _literal_values(cls: type[Params], loc: tuple, ctx: dict) -> Any:
    """The allowed values of a `Literal` field, as a list (pydantic's text otherwise)."""
    field = cls.model_fields.get(loc[0]) if len(loc) == 1 else None
    if field is not None and typing.get_origin(field.annotation) is typing.Literal:
        return list(typing.get_args(field.annotation))
    return ctx.get("expected")


def argument_error(err: ValidationError, given: Mapping[str, Any]) -> ValueError | TypeError:
    """A keras-hub style exception for the errors of a `Params` validation.

    Each error reads "Argument `depth` must be >= 1. Received: depth=0" (the
    whole value of the argument, from `given`); several are joined by "; ".

    Returns:
        TypeError when every error is one of a wrong type, else ValueError.
    """
    parts = []
    for e in err.errors():
        if not e["loc"]:
            parts.append(e["msg"])
            continue
        key = str(e["loc"][0])
        received = given.get(key, e["input"])
        parts.append(f"Argument `{key}` {e['msg']}. Received: {key}={received!r}")
    kind = TypeError if all(e["type"] in _TYPE_ERRORS for e in err.errors()) else ValueError
    return kind("; ".join(parts))
