"""Argument checks shared by the model builders; pure Python, no Keras.

Each check raises `ValueError` (bad value) or `TypeError` (bad type) with a
message that names the argument and what was received, e.g.
"Argument `depth` must be a positive int. Received: depth=0".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int >= `minimum` (bools are refused)."""
    if not _is_int(value):
        raise TypeError(f"Argument `{name}` must be an int. Received: {name}={value!r}")
    if value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"Argument `{name}` must be {what}. Received: {name}={value!r}")
    return value


def boolean(name: str, value: Any) -> bool:
    """`value` as a bool (ints are refused)."""
    if not isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a bool. Received: {name}={value!r}")
    return value


def rate(name: str, value: Any) -> float:
    """A dropout rate in [0, 1)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a float. Received: {name}={value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Argument `{name}` must be in [0, 1). Received: {name}={value!r}")
    return float(value)


def positive_float(name: str, value: Any) -> float:
    """A float > 0."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"Argument `{name}` must be a float. Received: {name}={value!r}")
    if not value > 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value!r}")
    return float(value)


def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """`value` if it is one of `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"Argument `{name}` must be one of {list(allowed)}. Received: {name}={value!r}"
        )
    return value


def int_tuple(
    name: str, value: Any, length: int | None = None, minimum: int = 1
) -> tuple[int, ...]:
    """A non-empty list/tuple of ints >= `minimum`, optionally of a given length."""
    if not isinstance(value, list | tuple) or not value:
        raise TypeError(
            f"Argument `{name}` must be a non-empty list of ints. Received: {name}={value!r}"
        )
    if not all(_is_int(v) and v >= minimum for v in value):
        raise ValueError(
            f"Argument `{name}` must hold ints >= {minimum}. Received: {name}={value!r}"
        )
    if length is not None and len(value) != length:
        raise ValueError(
            f"Argument `{name}` must have {length} entries. Received: {name}={value!r} "
            f"({len(value)} entries)"
        )
    return tuple(value)


def optional_path(name: str, value: Any) -> str | None:
    """None or a non-empty path string (existence is checked when the model is built)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"Argument `{name}` must be None or a file path. Received: {name}={value!r}"
        )
    return value


def common(num_classes: Any, bands: Any) -> None:
    """Check the two arguments every builder takes."""
    positive_int("num_classes", num_classes, minimum=2)
    positive_int("bands", bands)
