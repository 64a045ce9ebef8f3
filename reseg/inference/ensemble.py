"""Combining the class probabilities of several models (merged rounds).

The merger writes a `merged.json` into its directory:

    {"method": "mean" | "weighted" | "max_confidence" | "vote",
     "members": [{"model": "<model dir, relative to merged.json's folder or absolute>",
                  "weight": <float >= 0>}, ...]}

and `combine` turns the members' probabilities p_i (..., C) into one (..., C) array:

- mean:            p = (1 / n) sum_i p_i                      (weights ignored)
- weighted:        p = sum_i w_i p_i / sum_i w_i
- max_confidence:  per pixel, p = p_k with k = argmax_i max_c p_i[c]   (ties: first member)
- vote:            p[c] = sum_i w_i [argmax p_i = c] / sum_i w_i, the (weighted) vote shares;
                   with equal weights this is the plain majority (ties: lowest class id wins
                   the argmax of the shares)

It works on any array whose last axis is the class axis, so the merger can reuse it
on stored per-pixel scores.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reseg import layout, storage
from reseg.errors import ArtifactError
from reseg.inference.backends import KerasBackend

METHODS = ("mean", "weighted", "max_confidence", "vote")


def combine(
    probs_list: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    method: str = "mean",
) -> np.ndarray:
    """Combine members' class probabilities (see the module docstring for the formulas).

    Args:
        probs_list: n arrays of the same shape (..., C), float (float16 is accepted).
        weights: n non-negative weights with a positive sum; None = equal weights.
        method: one of `METHODS`.

    Returns:
        float32 array (..., C).
    """
    if method not in METHODS:
        raise ValueError(f"Argument `method` must be one of {METHODS}. Received: method={method!r}")
    if not probs_list:
        raise ValueError("Argument `probs_list` must hold at least one array. Received: []")
    shape = probs_list[0].shape
    for k, p in enumerate(probs_list):
        if p.shape != shape:
            raise ValueError(f"probs_list[{k}] has shape {p.shape}, probs_list[0] has {shape}")
    n = len(probs_list)
    w = np.ones(n, np.float64) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"Argument `weights` must be {n} non-negative numbers with a positive sum. "
            f"Received: weights={list(weights) if weights is not None else None}"
        )
    if method == "mean":
        w = np.ones(n, np.float64)
    w = w / w.sum()
    if method in ("mean", "weighted"):
        out = np.zeros(shape, np.float32)
        for wi, p in zip(w, probs_list, strict=True):
            out += np.float32(wi) * p.astype(np.float32, copy=False)
        return out
    if method == "max_confidence":
        conf = np.stack([p.max(axis=-1) for p in probs_list])  # (n, ...)
        best = conf.argmax(axis=0)
        out = np.empty(shape, np.float32)
        for k, p in enumerate(probs_list):
            sel = best == k
            out[sel] = p[sel]
        return out
    c = shape[-1]
    out = np.zeros(shape, np.float32)
    for wi, p in zip(w, probs_list, strict=True):
        votes = np.argmax(p, axis=-1)
        out += np.float32(wi) * np.eye(c, dtype=np.float32)[votes]
    return out


class EnsembleBackend:
    """Merged rounds: every member (a round's Keras model) predicts, `combine` merges them."""

    def __init__(
        self, merged_dir: str | Path, jit_compile: bool = False, precision: str = "float32"
    ):
        merged_dir = storage.path(merged_dir)
        spec_path = merged_dir / layout.MERGED_JSON
        try:
            spec = json.loads(spec_path.read_text())
            self.method = spec["method"]
            members = spec["members"]
            self.weights = [float(m.get("weight", 1.0)) for m in members]
            paths = [str(m["model"]) for m in members]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(
                f"{spec_path}: not a valid merged.json ({type(e).__name__}: {e})"
            ) from None
        if self.method not in METHODS or not members:
            raise ArtifactError(
                f"{spec_path}: method must be one of {METHODS} with at least one member; "
                f"received method={self.method!r}, {len(members)} members"
            )
        paths = [storage.join(merged_dir, p) for p in paths]
        self.path = merged_dir
        self.members = [KerasBackend(p, jit_compile, precision) for p in paths]
        first = self.members[0].info
        for p, m in zip(paths[1:], self.members[1:], strict=True):
            i = m.info
            if (i.bands, i.image_dtype, i.class_names, i.band_indexes) != (
                first.bands,
                first.image_dtype,
                first.class_names,
                first.band_indexes,
            ):
                raise ArtifactError(
                    f"{spec_path}: member {p} takes {i.bands} x {i.image_dtype} bands {i.band_indexes} "
                    f"with classes {list(i.class_names)}, but {paths[0]} takes {first.bands} x "
                    f"{first.image_dtype} bands {first.band_indexes} with classes {list(first.class_names)}"
                )
        stride = math.lcm(*(m.info.output_stride for m in self.members))
        self.info = dataclasses.replace(
            first,
            output_stride=stride,
            architecture=f"{self.method}({', '.join(m.info.architecture for m in self.members)})",
        )

    @property
    def jit_compile(self) -> bool:
        return all(getattr(m, "jit_compile", False) for m in self.members)

    @jit_compile.setter
    def jit_compile(self, on: bool) -> None:
        for m in self.members:
            if hasattr(m, "jit_compile"):
                m.jit_compile = on

    @property
    def precision(self) -> str:
        """The members' precision (`KerasBackend.precision`); the combination is float32."""
        return self.members[0].precision

    @precision.setter
    def precision(self, value: str) -> None:
        for m in self.members:
            m.precision = value

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        probs = [m(tiles_raw, valid) for m in self.members]
        return combine(probs, self.weights, self.method)
