"""Seeded small GeoTIFFs for tests, with CRS and transform set explicitly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

CRS = "EPSG:32632"
TRANSFORM = from_origin(500_000.0, 6_200_000.0, 10.0, 10.0)


def write_raster(
    path: str | Path,
    array: np.ndarray,
    crs: str | None = CRS,
    transform=TRANSFORM,
    nodata: float | None = None,
    driver: str = "GTiff",
) -> Path:
    """Write (B, H, W) or (H, W) `array` as a raster; returns the path."""
    arr = array if array.ndim == 3 else array[None]
    profile = dict(
        driver=driver,
        height=arr.shape[1],
        width=arr.shape[2],
        count=arr.shape[0],
        dtype=arr.dtype.name,
    )
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return Path(path)


def scene(
    tmp: str | Path,
    name: str = "scene",
    height: int = 100,
    width: int = 120,
    bands: int = 3,
    dtype: str = "uint16",
    classes: int = 3,
    seed: int = 0,
    nodata: float | None = None,
) -> tuple[Path, Path]:
    """A random image and a blocky label raster (values 0..classes-1) on the same grid."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        img = rng.normal(100, 20, (bands, height, width)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        img = rng.integers(
            max(info.min, 0) + 1, min(info.max, 4000), (bands, height, width)
        ).astype(dtype)
    lab = np.kron(rng.integers(0, classes, (height // 10 + 1, width // 10 + 1)), np.ones((10, 10)))
    lab = lab[:height, :width].astype("uint8")
    tmp = Path(tmp)
    return (
        write_raster(tmp / f"{name}.tif", img, nodata=nodata),
        write_raster(tmp / f"{name}_labels.tif", lab),
    )


def config_dict(image: Path, labels: Path | None, classes: int = 3, **tiling) -> dict:
    """A minimal config for one scene."""
    scene_spec = {"image": str(image)}
    if labels is not None:
        scene_spec["labels"] = str(labels)
    return {
        "name": "test",
        "data": {
            "scenes": [scene_spec],
            "classes": [{"name": f"c{i}"} for i in range(classes)],
        },
        "tiling": {"tile_size": 32, "overlap": 8, "folds": 3, "shard_rows": 2, **tiling},
        "beam": {
            "args": [
                "--runner=DirectRunner",
                "--direct_num_workers=1",
                "--direct_running_mode=in_memory",
            ]
        },
        "tracking": {"enabled": False},
    }
