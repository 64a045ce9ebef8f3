"""Reading a scene for prediction: no config, bands and dtype from the model.

`open_scene` checks the image against the model (band count, dtype) and says
what differs; `ImageReader.read(window)` reads any window, reflect-padding the
parts outside the scene (image and validity alike). Valid = not nodata in any
band and not NaN.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window as RioWindow

from reseg import storage
from reseg.artifacts import ModelInfo
from reseg.errors import InputError
from reseg.windows import Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneImage:
    """What prediction needs to know about an image (headers only)."""

    path: str
    id: str
    height: int
    width: int
    bands: tuple[int, ...]
    dtype: str
    nodata: float | None
    crs: object | None  # rasterio CRS, None when not georeferenced
    transform: object  # affine.Affine (identity when not georeferenced)
    georeferenced: bool


def open_scene(
    path: str | Path, info: ModelInfo, nodata: float | None = None, scene_id: str | None = None
) -> SceneImage:
    """Check an image against what the model was trained on; raise InputError naming both.

    Args:
        path: image raster (GeoTIFF, or a PNG/TIFF without georeferencing).
        info: the model's `ModelInfo` (bands, image_dtype, band_indexes, nodata).
        nodata: overrides the file's nodata; the file's, then the model's, is the default.
        scene_id: the name of the scene's outputs; default the image's file name stem.
    """
    path = str(path)
    storage.check_input(path, "image")  # s3:// and gs:// are read by GDAL through its cloud paths
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(storage.gdal_path(path))
    except RasterioError as e:
        raise InputError(f"{path}: cannot open image raster: {e}") from None
    with ds:
        bands, dtype = _model_bands(path, ds, info)
        georef = ds.crs is not None and not ds.transform.is_identity
        if not georef:
            log.warning(
                "%s: not georeferenced; outputs use the pixel grid (identity transform)", path
            )
        if nodata is None:
            nodata = ds.nodata if ds.nodata is not None else info.nodata
        return SceneImage(
            path=path,
            id=scene_id or storage.path(path).stem,
            height=ds.height,
            width=ds.width,
            bands=bands,
            dtype=dtype,
            nodata=None if nodata is None else float(nodata),
            crs=ds.crs if georef else None,
            transform=ds.transform if georef else rasterio.Affine.identity(),
            georeferenced=georef,
        )


def _model_bands(path: str, ds: Any, info: ModelInfo) -> tuple[tuple[int, ...], str]:
    """The image's bands the model reads (1-based) and their one dtype, checked against
    the model's band count and dtype."""
    if info.band_indexes:
        bands = tuple(int(b) for b in info.band_indexes)
        if max(bands) > ds.count:
            raise InputError(
                f"{path}: the model reads bands {list(bands)} but the image has {ds.count} bands"
            )
    else:
        bands = tuple(range(1, ds.count + 1))
    if len(bands) != info.bands:
        raise InputError(
            f"{path}: image has {len(bands)} bands but the model was trained on {info.bands} bands"
        )
    dtypes = {ds.dtypes[b - 1] for b in bands}
    if len(dtypes) > 1:
        raise InputError(f"{path}: bands have different dtypes {sorted(dtypes)}")
    dtype = dtypes.pop()
    if dtype != info.image_dtype:
        raise InputError(
            f"{path}: image dtype is {dtype} but the model was trained on {info.image_dtype} images"
        )
    return bands, dtype


class ImageReader:
    """Reads windows of one image, reflect-padded outside it. One per thread; close after."""

    def __init__(self, scene: SceneImage):
        self.scene = scene
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._ds = rasterio.open(storage.gdal_path(scene.path))

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Image (h, w, bands) in the scene dtype and valid (h, w) uint8 of `window`.

        Parts of `window` outside the scene are filled by reflection about the
        scene's edge (numpy's `reflect`, repeated when the pad exceeds the scene).
        """
        s = self.scene
        inside = window.intersection(Window(0, 0, s.height, s.width))
        if inside is None:
            raise ValueError(f"window {window} does not touch the scene ({s.height}x{s.width})")
        rio_win = RioWindow(inside.col_off, inside.row_off, inside.width, inside.height)
        try:
            px = self._ds.read(list(s.bands), window=rio_win)
        except RasterioError as e:
            raise InputError(f"{s.path}: cannot read pixels at window {inside}: {e}") from None
        px = np.moveaxis(px, 0, -1)
        ok = np.ones(px.shape[:2], dtype=bool)
        if px.dtype.kind == "f":
            nan = np.isnan(px)
            ok &= ~nan.any(axis=-1)
            if nan.any():
                px = np.where(nan, 0, px)
        if s.nodata is not None and not np.isnan(s.nodata):
            ok &= ~(px == np.asarray(s.nodata).astype(px.dtype)).any(axis=-1)
        pads = (
            (inside.row_off - window.row_off, window.row_end - inside.row_end),
            (inside.col_off - window.col_off, window.col_end - inside.col_end),
        )
        if any(p for pair in pads for p in pair):
            px = np.pad(px, pads + ((0, 0),), mode="reflect")
            ok = np.pad(ok, pads, mode="reflect")
        return px, ok.astype(np.uint8)
