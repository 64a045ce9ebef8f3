"""Tensors as TF Serving REST JSON, both ways, without a detour through Python floats.

JSON is the cost of the REST API: a float32 written by `repr` has up to 17
digits and parsing a nested list builds one Python object per number. Two
shortcuts, each exact:

- `to_json(a)`: a float array whose values are all integers (many sensors store
  digital numbers as float32) is written as JSON integers, which TF Serving reads
  into a float tensor just the same; anything else goes through `tolist()`.
- `read_array(body, key, shape)`: the answer `{"<key>": [[...]]}` of a signature with
  one output is parsed by deleting brackets and whitespace and reading the numbers
  with `np.fromstring` (C speed). The bracket count and the number count must both
  match a (B, H, W, C) array, else None is returned and the caller parses it as JSON.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

_NOISE = b"[] \n\r\t"
_INT_SAFE = 2.0**53  # integers a float64 (and JSON) holds exactly


def to_json(a: np.ndarray) -> list[Any]:
    """The nested list TF Serving expects for `a`; integral floats as ints (exact)."""
    if a.dtype.kind == "f" and a.size:
        finite = np.isfinite(a).all()
        if finite and np.abs(a).max() < _INT_SAFE and np.array_equal(a, np.rint(a)):
            return a.astype(np.int64).tolist()
    return a.tolist()


def read_array(body: bytes, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """float32 array of `shape` from `{"<key>": <nested list>}`, or None if that is not the body."""
    m = re.match(rb'\s*\{\s*"' + re.escape(key.encode()) + rb'"\s*:\s*\[', body)
    end = body.rfind(b"]")
    if m is None or end < 0 or body[end + 1 :].strip() != b"}":
        return None
    text = body[m.end() - 1 : end + 1]
    # a C-order (d0, d1, ..., dk) array has 1 + d0 + d0 d1 + ... + d0...d(k-1) opening brackets
    opens = sum(math.prod(shape[:i]) for i in range(len(shape)))
    if text.count(b"[") != opens or text.count(b"]") != opens or b"{" in text or b'"' in text:
        return None
    flat = np.fromstring(text.translate(None, _NOISE), dtype=np.float32, sep=",")
    if flat.size != math.prod(shape):
        return None
    return flat.reshape(shape)
