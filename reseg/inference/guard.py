"""The agreement guard: a model runs in `auto`'s bfloat16 only where its classes agree
with float32's.

bfloat16 keeps 8 bits of mantissa, so a pixel whose two best classes are within about
0.4 % of each other can change class. On trained models that is rare (99.9 % of the
demo's pixels agree), on an untrained or badly calibrated one it is not (99.25 %
measured). The first time a model is asked to run in the bfloat16 that `auto` resolved
to, it predicts a small sample of tiles in float32 and in bfloat16 and compares their
classes on the valid pixels:

    agreement = #{valid pixels: argmax p_bf16 = argmax p_fp32} / #{valid pixels}

At or above `min_agreement` the model runs in bfloat16; below it, in float32, with one
warning per model. The verdict is kept for the process, per model and sample (`key`), so
every block of a scene (and every scene after the first) runs the same arithmetic
without asking again. An explicit `bfloat16` is the user's choice and is not guarded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from reseg.inference.precision import resolve

log = logging.getLogger(__name__)

SAMPLE_TILES = 4
"""Tiles of the guard's sample (spread over the scene or taken from the first tile file)."""

_verdicts: dict[Any, tuple[str, dict | None]] = {}
_warned: set[str] = set()


def agreement(backend: Any, tiles_raw: np.ndarray, valid: np.ndarray, precision: str) -> float:
    """Share of valid pixels of the batch whose class in `precision` equals float32's.

    `backend` has a settable `precision` (`KerasBackend`, `EnsembleBackend`); it is left
    in float32. Tiles are (B, H, W, bands) raw values, `valid` (B, H, W); 1.0 when no
    pixel is valid.
    """
    backend.precision = "float32"
    ref = backend(tiles_raw, valid).argmax(-1)
    backend.precision = precision
    got = backend(tiles_raw, valid).argmax(-1)
    backend.precision = "float32"
    ok = valid.astype(bool)
    n = int(ok.sum())
    return 1.0 if n == 0 else float((ref == got)[ok].sum()) / n


def guarded(
    backend: Any,
    requested: str,
    sample: Callable[[], tuple[np.ndarray, np.ndarray]],
    min_agreement: float,
    key: Any,
) -> tuple[str, dict | None]:
    """The precision `backend` should run in for `requested`, and the guard's record.

    Only `auto` resolved to a precision other than float32 is checked (module docstring);
    `sample()` gives the (tiles_raw, valid) batch, called only then. The record is None
    where no check ran, else {"requested", "resolved", "agreement", "min_agreement",
    "pixels", "passed"}. Verdicts are cached by `key`.
    """
    resolved = resolve(requested)
    if requested != "auto" or resolved == "float32":
        return resolved, None
    if key in _verdicts:
        return _verdicts[key]
    tiles_raw, valid = sample()
    share = agreement(backend, tiles_raw, valid, resolved)
    passed = share >= min_agreement
    record = {
        "requested": requested,
        "resolved": resolved,
        "agreement": round(share, 6),
        "min_agreement": min_agreement,
        "pixels": int(valid.astype(bool).sum()),
        "passed": passed,
    }
    name = str(getattr(backend, "path", type(backend).__name__))
    if passed:
        log.info(
            "%s: %s agrees with float32 on %.2f %% of %d sample pixels",
            name,
            resolved,
            100 * share,
            record["pixels"],
        )
    elif name not in _warned:
        _warned.add(name)
        log.warning(
            "%s: %s agrees with float32 on only %.2f %% of %d sample pixels (< %.2f %%); "
            "running it in float32",
            name,
            resolved,
            100 * share,
            record["pixels"],
            100 * min_agreement,
        )
    _verdicts[key] = (resolved if passed else "float32", record)
    return _verdicts[key]
