"""Warmup requests of an export, and what the Keras models answer to them.

The requests carry real tiles of the tile set given when their dtype and bands fit
the model (else seeded synthetic tiles around the band means), cut to a multiple
of the output stride. One request per signature:

    0  serving_default  {images}          -> expected: backend(images, valid_rule(images))
    1  predict_masked   {images, valid}   -> expected: backend(images, valid)
    2  model_info       {request: [0]}

`valid_rule` is the in-graph validity of `serving_default`: not NaN and no band
equal to the model's nodata value.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from reseg import artifacts
from reseg.artifacts import ModelInfo
from reseg.serving import contract as c
from reseg.serving.layout import WarmupRequest
from reseg.tfrecords_schema import read_tiles

log = logging.getLogger(__name__)


def valid_rule(images: np.ndarray, info: ModelInfo) -> np.ndarray:
    """uint8 (B, H, W): 1 where no band is NaN or equal to `info.nodata` (as in the graph)."""
    ok = np.ones(images.shape[:3], bool)
    if images.dtype.kind == "f":
        ok &= ~np.isnan(images).any(-1)
    if info.nodata is not None and not np.isnan(info.nodata):
        ok &= ~(images == np.asarray(info.nodata).astype(images.dtype)).any(-1)
    return ok.astype(np.uint8)


def _real_tiles(
    tiles: artifacts.TileSet | None, info: ModelInfo, n: int
) -> tuple[np.ndarray, np.ndarray] | None:
    if tiles is None:
        return None
    if tiles.image_dtype != info.image_dtype or tiles.bands != info.bands:
        log.info(
            "tiles are %d x %s, the model takes %d x %s: synthetic warmup tiles",
            tiles.bands,
            tiles.image_dtype,
            info.bands,
            info.image_dtype,
        )
        return None
    images, valid = [], []
    for t in read_tiles(list(tiles.files)):
        if t.valid.mean() < 0.5:
            continue
        images.append(t.image)
        valid.append(t.valid)
        if len(images) == n:
            break
    if not images:
        return None
    s = info.output_stride
    h = min(i.shape[0] for i in images) // s * s
    w = min(i.shape[1] for i in images) // s * s
    if h == 0 or w == 0:
        return None
    return (
        np.stack([i[:h, :w] for i in images]).astype(info.image_dtype),
        np.stack([v[:h, :w] for v in valid]).astype(np.uint8),
    )


def _synthetic_tiles(info: ModelInfo, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    s = info.output_stride
    side = s * math.ceil(min(info.tile_size, 256) / s)
    rng = np.random.default_rng(seed)
    mean, std = np.asarray(info.mean), np.asarray(info.std)
    x = mean + std * rng.standard_normal((n, side, side, info.bands))
    dt = np.dtype(info.image_dtype)
    if dt.kind in "iu":
        lim = np.iinfo(dt)
        x = np.clip(np.rint(x), lim.min, lim.max)
    valid = np.ones((n, side, side), np.uint8)
    valid[:, : side // 8, : side // 8] = 0  # a corner of nodata exercises the masking
    return x.astype(dt), valid


def sample_tiles(
    tiles: artifacts.TileSet | None, info: ModelInfo, n: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """`n` tiles of `tiles` (else synthetic ones): (images, valid, "tiles" | "synthetic")."""
    got = _real_tiles(tiles, info, n)
    origin = "tiles"
    if got is None:
        got, origin = _synthetic_tiles(info, n), "synthetic"
    return got[0], got[1], origin


def warmup_requests(
    tiles: artifacts.TileSet | None, info: ModelInfo, backend, n: int
) -> tuple[list[WarmupRequest], dict[str, np.ndarray], str]:
    """The requests, the expected probabilities by `request<i>`, and where the tiles came from."""
    images, valid, origin = sample_tiles(tiles, info, n)
    requests = [
        WarmupRequest(c.DEFAULT_SIGNATURE, {c.IMAGES: images}),
        WarmupRequest(c.MASKED_SIGNATURE, {c.IMAGES: images, c.VALID: valid}),
        WarmupRequest(c.INFO_SIGNATURE, {c.INFO_REQUEST: np.zeros(1, np.int32)}),
    ]
    expected = {
        "request0": np.asarray(backend(images, valid_rule(images, info)), np.float32),
        "request1": np.asarray(backend(images, valid), np.float32),
    }
    return requests, expected, origin
