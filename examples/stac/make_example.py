"""Makes this folder's example: three small generated scenes and `items.json`, the STAC
ItemCollection that `examples/stac_items.yaml` reads its scenes from.

    python examples/stac/make_example.py

Each scene is a 4-band uint16 image (128 x 128, 10 m, UTM 32N) of smooth random fields and a
label raster (values 10, 20, 30: water, field, forest) that follows from the bands, so a
model can learn it. `scene-c` is marked unlabelled by the item property `reseg:role` (its
label asset is still there, unused). Asset hrefs are relative to items.json, so the folder
works from any clone. Seeded: rerunning it rewrites the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from reseg import stac

HERE = Path(__file__).resolve().parent
SIZE = 128
SCENES = {
    "scene-a": (500_000.0, 6_200_000.0, "labelled"),
    "scene-b": (502_000.0, 6_200_000.0, "labelled"),
    "scene-c": (504_000.0, 6_200_000.0, "unlabelled"),
}


def _smooth(rng: np.random.Generator, bands: int) -> np.ndarray:
    small = rng.uniform(0, 1, (bands, SIZE // 16 + 2, SIZE // 16 + 2))
    t = np.linspace(0, small.shape[1] - 1.001, SIZE)
    i, f = t.astype(int), (t - t.astype(int))
    rows = small[:, i] * (1 - f)[None, :, None] + small[:, i + 1] * f[None, :, None]
    return rows[:, :, i] * (1 - f)[None, None, :] + rows[:, :, i + 1] * f[None, None, :]


def _write(path: Path, array: np.ndarray, x0: float, y0: float) -> None:
    profile = dict(
        driver="GTiff",
        height=SIZE,
        width=SIZE,
        count=array.shape[0],
        dtype=array.dtype.name,
        crs="EPSG:32632",
        transform=from_origin(x0, y0, 10.0, 10.0),
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="deflate",
        predictor=2,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array)


def main() -> None:
    items = []
    for k, (sid, (x0, y0, role)) in enumerate(SCENES.items()):
        rng = np.random.default_rng(100 + k)
        fields = _smooth(rng, 3)
        cls = fields.argmax(0)  # 0 water, 1 field, 2 forest
        signature = np.array([[300, 500, 200, 100], [900, 1200, 1500, 2600], [400, 700, 500, 3200]])
        img = signature[cls].transpose(2, 0, 1) + rng.normal(0, 60, (4, SIZE, SIZE))
        img = np.clip(img, 1, 4000).astype("uint16")
        _write(HERE / f"{sid}.tif", img, x0, y0)
        _write(HERE / f"{sid}_labels.tif", ((cls + 1) * 10).astype("uint8")[None], x0, y0)
        items.append(
            stac.describe(
                sid,
                {"image": HERE / f"{sid}.tif", "labels": HERE / f"{sid}_labels.tif"},
                relative_to=HERE,
                properties={"reseg:role": role},
                datetime=f"2024-06-0{k + 1}T10:30:00Z",
            )
        )
    (HERE / "items.json").write_text(json.dumps(stac.item_collection(items), indent=2) + "\n")


if __name__ == "__main__":
    main()
