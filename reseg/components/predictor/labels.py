"""Reference labels of a predicted scene, read window by window for whole-scene metrics.

The labels are a raster (on the image grid, or georeferenced and resampled onto
it) or polygons; they are read with `reseg.raster.SceneReader` through a
`DataConfig` made on the fly from the model's classes and label value map
(`ModelInfo.label_values`: raw value as text -> class id, 255 = ignore; None
means value v is class v), unless a config's `data` section is given.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from reseg import storage
from reseg.artifacts import ModelInfo
from reseg.config import IGNORE, ClassSpec, DataConfig, SceneSpec, VectorLabels
from reseg.errors import InputError
from reseg.raster import SceneReader, inspect_scene
from reseg.windows import Window

log = logging.getLogger(__name__)

VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".fgb", ".kml")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _resolve(p: str | Path) -> str:
    """An absolute local path, or a URI as it is."""
    return storage.resolved(p)


def _classes(info: ModelInfo) -> list[ClassSpec]:
    colors = list(info.class_colors) + ["#808080"] * len(info.class_names)
    return [
        ClassSpec(name=n, color=c if _HEX.match(c or "") else "#808080")
        for n, c in zip(info.class_names, colors, strict=False)
    ]


def label_data_config(
    image: str | Path,
    labels: str | Path | VectorLabels,
    info: ModelInfo,
    nodata: float | None = None,
    data: DataConfig | None = None,
) -> tuple[SceneSpec, DataConfig]:
    """The scene spec and data config that `SceneReader` reads the labels with.

    Args:
        image: the predicted image.
        labels: a label raster path, a vector path (needs `data` listing the scene with
            its `vector` spec, or a `VectorLabels`), or a `VectorLabels`.
        info: the model's ModelInfo (classes, label value map, bands).
        nodata: image nodata (pixels that are nodata in the image are not scored).
        data: a config's data section: its classes must equal the model's; its label
            value map and vector specs are used.
    """
    image = _resolve(image)
    if data is not None and [c.name for c in data.classes] != list(info.class_names):
        raise InputError(
            f"the config's classes {[c.name for c in data.classes]} differ from the model's {list(info.class_names)}"
        )
    raster, vector = _label_source(labels, data)
    label_values, unknown = _label_values(info, data)
    spec = SceneSpec(image=image, labels=raster, vector=vector)
    cfg = DataConfig(
        scenes=[spec],
        classes=data.classes if data is not None else _classes(info),
        label_values=label_values,
        unknown_labels=unknown,
        bands=list(info.band_indexes) if info.band_indexes else None,
        nodata=nodata,
        label_nodata=data.label_nodata if data is not None else None,
        label_grid=data.label_grid if data is not None else "auto",
    )
    return spec, cfg


def _label_source(
    labels: str | Path | VectorLabels, data: DataConfig | None
) -> tuple[str | None, VectorLabels | None]:
    """(raster path, None) or (None, vector spec) of the labels; a vector path's spec is the
    one `data` lists for it."""
    if isinstance(labels, VectorLabels):
        return None, labels
    path = _resolve(labels)
    if storage.path(path).suffix.lower() not in VECTOR_SUFFIXES:
        return path, None
    listed = [
        s for s in (data.scenes if data else []) if s.vector and _resolve(s.vector.path) == path
    ]
    if not listed:
        raise InputError(
            f"{path}: vector labels need to know which attribute holds the class: give a config "
            "(--config) whose data section lists this file as a scene's `vector`, or "
            "--label-attribute/--burn-class"
        )
    return None, listed[0].vector


def _label_values(
    info: ModelInfo, data: DataConfig | None
) -> tuple[dict[float, int | None] | None, str]:
    """The label value map and what unknown labels become: the config's, else the model's
    (ignored ones as None) and `ignore`."""
    if data is not None:
        return data.label_values, data.unknown_labels
    label_values = None
    if info.label_values is not None:
        label_values = {
            float(k): (None if int(v) == IGNORE else int(v)) for k, v in info.label_values.items()
        }
    return label_values, "ignore"


class LabelReader:
    """Class ids (uint8, 255 = ignore) of any window of a scene's labels."""

    def __init__(self, spec: SceneSpec, data: DataConfig):

        self.data = data
        self._reader = SceneReader(inspect_scene(spec, data), data)
        self.unknown: set = set()

    def read(self, window: Window) -> np.ndarray:
        wd = self._reader.read(window)
        if wd.unknown_labels:
            if self.data.unknown_labels == "error":
                raise InputError(
                    f"{self._reader.info.labels.path}: label values {sorted(map(str, wd.unknown_labels))} "
                    "are not in the label value map"
                )
            self.unknown |= wd.unknown_labels
        return wd.label

    def close(self) -> None:
        if self.unknown:
            log.warning(
                "label values outside the label map were ignored: %s",
                sorted(map(str, self.unknown))[:20],
            )
        self._reader.close()
