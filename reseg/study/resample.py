"""Scenes at a coarser ground resolution: images area-averaged, labels mode-resampled.

For a factor f, output pixel (i, j) covers the f x f input block of rows
[f i, f i + f) and columns [f j, f j + f) (blocks at the right and bottom edges
are partial; output size ceil(H / f) x ceil(W / f)). The output transform is
the input's scaled by f, so the output covers the same ground.

- Image, band b: the mean of the block's valid pixels,
  x'_b = sum_{p valid} x_b(p) / n_valid, rounded for integer dtypes; the output
  pixel is nodata when fewer than half of the block's in-scene pixels are valid
  (a pixel is valid when no band equals nodata and none is NaN, as in
  `reseg.raster.SceneReader`).
- Labels: the most frequent raw value among the block's pixels that map to a
  class (not nodata, not an ignored or unknown value; ties go to the lowest
  class id); when none does, the block's most frequent raw value (so an ignored
  block stays ignored).

Both are written window by window (strips of f x `STRIP` input rows) as tiled,
deflate-compressed GeoTIFFs.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window as RioWindow

from reseg import artifacts, storage
from reseg.config import IGNORE, DataConfig, SceneSpec
from reseg.errors import InputError

log = logging.getLogger(__name__)

STRIP = 64
"""Output rows computed per read."""

CODE_VERSION = 1


def _open(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _blocks(a: np.ndarray, f: int, fill) -> np.ndarray:
    """(h, w, ...) -> (ceil(h/f), ceil(w/f), f * f, ...) blocks, padded with `fill`."""
    h, w = a.shape[:2]
    H, W = -(-h // f), -(-w // f)
    pad = [(0, H * f - h), (0, W * f - w)] + [(0, 0)] * (a.ndim - 2)
    a = np.pad(a, pad, constant_values=fill)
    a = a.reshape(H, f, W, f, *a.shape[2:])
    a = np.moveaxis(a, 2, 1)  # (H, W, f, f, ...)
    return a.reshape(H, W, f * f, *a.shape[4:])


def area_average(
    px: np.ndarray, valid: np.ndarray, f: int, nodata: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Block means of the valid pixels.

    Args:
        px: (h, w, B) image values.
        valid: (h, w) bool, pixels that count.
        f: factor.
        nodata: value written where the output is invalid (0 when None).

    Returns:
        (ceil(h/f), ceil(w/f), B) values in `px.dtype` and their (.., ..) bool validity: at
        least half of the block's pixels inside the input valid.
    """
    inside = _blocks(np.ones(valid.shape, bool), f, False)  # (H, W, f*f)
    ok = _blocks(valid, f, False)
    vals = _blocks(px.astype(np.float64), f, 0.0)  # (H, W, f*f, B)
    n = ok.sum(-1)
    total = (vals * ok[..., None]).sum(-2)
    mean = total / np.maximum(n, 1)[..., None]
    out_valid = (n > 0) & (2 * n >= inside.sum(-1))
    dtype = px.dtype
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    out = mean.astype(dtype)
    if nodata is not None:
        nd = np.asarray(nodata).astype(dtype)
        # a valid average that happens to equal nodata would read as invalid: step off it
        clash = out_valid[..., None] & (out == nd)
        if clash.any():
            step = -1 if dtype.kind in "iu" and nd == np.iinfo(dtype).max else 1
            out[clash] = (nd + step).astype(dtype) if dtype.kind in "iu" else nd + 1e-3
        out[~out_valid] = nd
    else:
        out[~out_valid] = 0
    return out, out_valid


def mode_labels(raw: np.ndarray, countable: np.ndarray, f: int, fill) -> np.ndarray:
    """Block modes of raw label values.

    Args:
        raw: (h, w) raw label values.
        countable: (h, w) bool, pixels whose value maps to a class.
        f: factor.
        fill: value of padding outside the input (never counted).

    Returns:
        (ceil(h/f), ceil(w/f)) values: the most frequent countable value of each block (the
        lowest such value on ties), else the most frequent value of the block's in-input pixels.
    """
    vals = _blocks(raw, f, fill)  # (H, W, f*f)
    cnt = _blocks(countable, f, False)
    inside = _blocks(np.ones(raw.shape, bool), f, False)
    out = np.full(vals.shape[:2], fill, dtype=raw.dtype)
    best = np.full(vals.shape[:2], -1, np.int64)
    for v in np.unique(raw[countable]):
        n = ((vals == v) & cnt).sum(-1)
        better = n > best
        better &= n > 0
        out[better], best[better] = v, n[better]
    empty = best < 0
    if empty.any():
        best_any = np.full(vals.shape[:2], -1, np.int64)
        for v in np.unique(raw):
            n = ((vals == v) & inside).sum(-1)
            better = empty & (n > best_any)
            out[better], best_any[better] = v, n[better]
    return out


def _image_nodata(ds, data: DataConfig) -> float | None:
    return data.nodata if data.nodata is not None else ds.nodata


def _profile(ds, f: int, count: int, dtype: str, nodata: float | None) -> dict:
    h, w = -(-ds.height // f), -(-ds.width // f)
    prof = dict(
        driver="GTiff",
        height=h,
        width=w,
        count=count,
        dtype=dtype,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        transform=ds.transform * ds.transform.scale(f, f),
    )
    if ds.crs is not None:
        prof["crs"] = ds.crs
    if nodata is not None:
        prof["nodata"] = nodata
    return prof


def _valid(px: np.ndarray, nodata: float | None) -> np.ndarray:
    ok = np.ones(px.shape[:2], bool)
    if px.dtype.kind == "f":
        ok &= ~np.isnan(px).any(-1)
    if nodata is not None:
        ok &= ~(px == np.asarray(nodata, dtype=px.dtype)).any(-1)
    return ok


def resample_image(src_path: str, dst_path: Path, f: int, data: DataConfig) -> None:
    """Area-average every band of `src_path` by `f` into `dst_path` (GeoTIFF, same dtype)."""
    with _open(src_path) as ds:
        nodata = _image_nodata(ds, data)
        prof = _profile(ds, f, ds.count, ds.dtypes[0], nodata)
        with rasterio.open(dst_path, "w", **prof) as dst:
            for r0 in range(0, prof["height"], STRIP):
                rows = min(STRIP * f, ds.height - r0 * f)
                px = np.moveaxis(ds.read(window=RioWindow(0, r0 * f, ds.width, rows)), 0, -1)
                # a pixel is valid when all configured bands are; read all bands, keep all
                use = px if not data.bands else px[..., [b - 1 for b in data.bands]]
                out, _ = area_average(px, _valid(use, nodata), f, nodata)
                dst.write(
                    np.moveaxis(out, -1, 0), window=RioWindow(0, r0, out.shape[1], out.shape[0])
                )


def resample_labels(
    src_path: str, dst_path: Path, f: int, data: DataConfig, image_path: str
) -> None:
    """Mode-resample the label raster `src_path` (on the image grid) by `f` into `dst_path`."""
    with _open(src_path) as ds, _open(image_path) as img:
        if (ds.height, ds.width) != (img.height, img.width):
            raise InputError(
                f"{src_path}: a resolution study needs labels on the image grid; the label raster "
                f"is {ds.height}x{ds.width}, the image {img.height}x{img.width}"
            )
        nodata = data.label_nodata if data.label_nodata is not None else ds.nodata
        table = data.value_to_class()
        prof = _profile(ds, f, 1, ds.dtypes[0], nodata)
        fill = nodata if nodata is not None else 0
        with rasterio.open(dst_path, "w", **prof) as dst:
            for r0 in range(0, prof["height"], STRIP):
                rows = min(STRIP * f, ds.height - r0 * f)
                raw = ds.read(1, window=RioWindow(0, r0 * f, ds.width, rows))
                countable = np.isin(
                    raw.astype(np.float64), [k for k, v in table.items() if v != IGNORE]
                )
                if nodata is not None:
                    countable &= raw != np.asarray(nodata, dtype=raw.dtype)
                out = mode_labels(raw, countable, f, np.asarray(fill).astype(raw.dtype))
                dst.write(out, 1, window=RioWindow(0, r0, out.shape[1], out.shape[0]))


def resample_scenes(data: DataConfig, f: int, out: Path) -> list[SceneSpec]:
    """Every scene of `data` at factor `f` under `out` (skipped when current); the new specs.

    Label rasters are mode-resampled; label polygons stay polygons (the tiler burns them onto
    the coarser image grid). GDAL writes into a local stage, uploaded when `out` is in a bucket.
    """
    out = storage.path(out)
    fp = artifacts.fingerprint("resample", CODE_VERSION, data.model_dump(mode="json"), f)
    specs = []
    for s in data.scenes:
        update: dict = {"id": s.scene_id, "image": str(out / f"{s.scene_id}.image.tif")}
        if s.labels:
            update["labels"] = str(out / f"{s.scene_id}.labels.tif")
        specs.append(s.model_copy(update=update))
    if artifacts.is_current(out, fp):
        return specs
    with artifacts.stage(out, fp, "resample", local=True) as st:
        st.manifest["factor"] = f
        for s in data.scenes:
            log.info("resampling scene %s by %d", s.scene_id, f)
            resample_image(s.image, st.dir / f"{s.scene_id}.image.tif", f, data)
            if s.labels:
                resample_labels(s.labels, st.dir / f"{s.scene_id}.labels.tif", f, data, s.image)
    return specs


def scaled_tiling(tile_size: int, overlap: int, block: int | None, f: int, multiple: int) -> dict:
    """Tiling at factor `f`: sizes divided by f, tiles >= 32 px and multiples of `multiple`.

    Returns `tile_size`, `overlap` (even, < tile_size) and `block_size` (in pixels at f,
    covering about the same ground as the fold blocks at f = 1); f = 1 returns the input.
    """
    if f == 1:
        return {"tile_size": tile_size, "overlap": overlap, "block_size": block}
    m = math.lcm(multiple, 2)
    tile = max(32, tile_size // f)
    tile = max(m, int(round(tile / m)) * m)
    while tile < 32:
        tile += m
    ov = min(2 * int(round(overlap / f / 2)), tile - 2)
    stride0 = tile_size - overlap
    ground_block = block if block is not None else 2 * stride0
    return {"tile_size": tile, "overlap": max(0, ov), "block_size": max(1, round(ground_block / f))}
