"""Per-tile confusion matrices of a scores directory, the unit of the study's bootstrap.

Cores partition a scene, so summing the core confusions of a fold's tiles gives
exactly the evaluator's confusion matrix; resampling tiles with replacement and
summing gives a bootstrap replicate of it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from reseg import artifacts, metrics, storage
from reseg.tfrecords_schema import read_tiles


def tile_confusions(
    scores_dir: str | Path, fold: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Core confusion of every validation tile of `fold`.

    Returns:
        keys: (n,) str, tile keys sorted; cms: (n, C, C) int64, row = label, column = argmax.
    """
    return _stacked(scores_dir, num_classes, "label", fold)


def target_tile_confusions(
    scores_dir: str | Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Core confusion against the target labels (`target/raw`) of every tile that has some.

    Returns (keys, cms) as `tile_confusions`; empty when the tiles hold no target pixels.
    """
    return _stacked(scores_dir, num_classes, "target", None)


def _stacked(
    scores_dir: str | Path, num_classes: int, against: str, fold: int | None
) -> tuple[np.ndarray, np.ndarray]:
    tiles = read_tiles(list(artifacts.Scores.load(scores_dir).files))
    out = metrics.tile_confusions(tiles, num_classes, against, fold, str(scores_dir))
    keys = sorted(out)
    cms = np.stack([out[k] for k in keys]) if keys else np.zeros((0, num_classes, num_classes))
    return np.array(keys, dtype=str), cms.astype(np.int64)


def save(path: str | Path, keys: np.ndarray, cms: np.ndarray) -> Path:
    """Write keys and confusions to `path` (.npz) atomically (one object on object storage)."""
    path = storage.path(path)
    storage.mkdir(path.parent)
    buf = io.BytesIO()
    np.savez_compressed(buf, keys=keys, cms=cms)
    with storage.atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return path


def load(path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(keys, cms) of a saved file; None when it does not exist."""
    try:
        data = storage.path(path).read_bytes()
    except FileNotFoundError:
        return None
    with np.load(io.BytesIO(data)) as z:
        return z["keys"], z["cms"]


def aligned(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The confusions of `a` and `b` on the tiles both have, in the same order: (n, C, C) each."""
    ka, ca = a
    kb, cb = b
    common, ia, ib = np.intersect1d(ka, kb, return_indices=True)
    return ca[ia], cb[ib]
