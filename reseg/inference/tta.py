"""Test-time augmentation over the dihedral group D4.

A transform named `rotK` rotates a tile by K degrees counter-clockwise in the
image plane (`np.rot90` with k = K / 90 over the height and width axes);
`flip_rotK` mirrors left-right first, then rotates. The inverse of
`flip_rotK` rotates back by -K, then mirrors. TTA predicts every transformed
batch, maps each prediction back onto the original grid and averages:

    p(x) = (1 / |T|) sum_{t in T} t^{-1}( f( t(x) ) )

so a model that is exactly D4-equivariant (f(t(x)) = t(f(x))) gives p = f(x).

The transformed batches go through the model together: one call per tile shape
(one for square tiles, two when rotations by 90 and 270 degrees swap height and
width), of |T| x B tiles. That costs the memory of a batch |T| times larger, and
saves |T| - 1 calls' fixed costs per batch (D4 costs at most 8.5x plain prediction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from reseg.config.predict import D4


def _parse(name: str) -> tuple[bool, int]:
    if name not in D4:
        raise ValueError(f"Argument `name` must be one of {D4}. Received: name={name!r}")
    if name == "identity":
        return False, 0
    if name == "flip":
        return True, 0
    flip = name.startswith("flip_")
    return flip, int(name.rsplit("rot", 1)[1]) // 90


def forward(x: np.ndarray, name: str) -> np.ndarray:
    """Apply transform `name` to a batch (B, H, W, ...) over axes 1 and 2."""
    flip, k = _parse(name)
    if flip:
        x = x[:, :, ::-1]
    if k:
        x = np.rot90(x, k, axes=(1, 2))
    return np.ascontiguousarray(x)


def inverse(y: np.ndarray, name: str) -> np.ndarray:
    """Undo transform `name` on a batch (B, H', W', ...): inverse(forward(x, t), t) == x."""
    flip, k = _parse(name)
    if k:
        y = np.rot90(y, -k, axes=(1, 2))
    if flip:
        y = y[:, :, ::-1]
    return np.ascontiguousarray(y)


def predict_tta(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    tiles: np.ndarray,
    valid: np.ndarray,
    transforms: Sequence[str] = ("identity",),
) -> np.ndarray:
    """Mean of the back-transformed predictions of every transform (module docstring).

    Args:
        predict: a backend: (B, H, W, bands) raw tiles, (B, H, W) uint8 valid -> (B, H, W, C) float32.
        tiles: (B, H, W, bands) raw tiles in the scene dtype.
        valid: (B, H, W) uint8, 1 where the pixel holds data.
        transforms: names of `D4`; ("identity",) is plain prediction.

    Returns:
        (B, H, W, C) float32 probabilities.
    """
    if not transforms:
        raise ValueError("Argument `transforms` must name at least one transform. Received: ()")
    if tuple(transforms) == ("identity",):
        return predict(tiles, valid)
    groups: dict[tuple[int, ...], list[str]] = {}
    for name in transforms:
        swaps = _parse(name)[1] % 2 == 1
        shape = (tiles.shape[2], tiles.shape[1]) if swaps else tiles.shape[1:3]
        groups.setdefault(shape, []).append(name)
    b = tiles.shape[0]
    acc: np.ndarray | None = None
    for names in groups.values():
        x = np.concatenate([forward(tiles, n) for n in names])
        v = np.concatenate([forward(valid, n) for n in names])
        probs = predict(x, v)
        for i, name in enumerate(names):
            p = inverse(probs[i * b : (i + 1) * b], name).astype(np.float32, copy=False)
            acc = p.copy() if acc is None else np.add(acc, p, out=acc)
    assert acc is not None
    return acc / np.float32(len(transforms))
