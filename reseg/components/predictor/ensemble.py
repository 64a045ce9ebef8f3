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

from collections.abc import Sequence

import numpy as np

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
