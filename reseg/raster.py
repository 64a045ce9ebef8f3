"""Scenes in: validate image and label sources, then read them window by window.

`inspect_scene` opens the headers only and checks everything that can be
checked without reading pixels (files exist and open, dtype, bands, label grid).
`SceneReader` reads any window, padding outside the scene: image 0, label 255,
valid 0. No function here reads a whole scene.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window as RioWindow

from reseg import storage
from reseg.config import IGNORE, DataConfig, SceneSpec
from reseg.errors import InputError
from reseg.tfrecords_schema import IMAGE_DTYPES
from reseg.windows import Window

log = logging.getLogger(__name__)

IDENTITY = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # GDAL order (c, a, b, f, d, e)


def _gdal(transform) -> tuple[float, ...]:
    return tuple(float(v) for v in transform.to_gdal())


@dataclass(frozen=True)
class LabelSource:
    """How labels of a scene are read: 'raster' (direct or warped), 'vector' or 'none'."""

    kind: str
    path: str | None = None
    warp: bool = False
    nodata: float | None = None


@dataclass(frozen=True)
class SceneInfo:
    """What the headers of a scene say; everything a worker needs to read it."""

    id: str
    image: str
    height: int
    width: int
    bands: tuple[int, ...]
    dtype: str
    nodata: float | None
    crs: str
    transform: tuple[float, ...]
    georeferenced: bool
    labels: LabelSource = field(default_factory=lambda: LabelSource("none"))

    @property
    def num_bands(self) -> int:
        return len(self.bands)


def fingerprint_file(path: str | Path) -> str:
    """Cheap content fingerprint: size, version (mtime on a disk; ETag or generation on object
    storage) and SHA-256 of the first and last MiB."""
    size, version = storage.stat(path)
    h = hashlib.sha256(f"{size}:{version}".encode())
    h.update(storage.read_range(path, 0, min(size, 1 << 20)))
    if size > 2 << 20:
        h.update(storage.read_range(path, size - (1 << 20), size))
    return h.hexdigest()[:16]


def scene_files(spec: SceneSpec) -> list[str]:
    """Every file a scene is read from (for fingerprints)."""
    files = [spec.image]
    if spec.labels:
        files.append(spec.labels)
    if spec.vector:
        stem = storage.path(spec.vector.path)
        files.append(str(stem))
        if stem.suffix.lower() == ".shp":  # attributes and projection live beside the .shp
            files += [
                str(stem.with_suffix(s)) for s in (".dbf", ".prj") if stem.with_suffix(s).exists()
            ]
    return files


def _open(path: str, what: str):
    storage.check_input(path, what)  # s3:// and gs:// are read by GDAL through its cloud paths
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(storage.gdal_path(path))
    except RasterioError as e:
        raise InputError(f"{path}: cannot open {what} raster: {e}") from None


def _georeferenced(ds) -> bool:
    return ds.crs is not None and not ds.transform.is_identity


def inspect_scene(spec: SceneSpec, data: DataConfig) -> SceneInfo:
    """Check a scene's headers against the config; raise InputError naming the file."""
    with _open(spec.image, "image") as img:
        dtype = img.dtypes[0]
        if len(set(img.dtypes)) > 1:
            raise InputError(f"{spec.image}: bands have different dtypes {sorted(set(img.dtypes))}")
        if dtype not in IMAGE_DTYPES:
            raise InputError(
                f"{spec.image}: image dtype {dtype} is not supported; use one of {IMAGE_DTYPES}"
            )
        bands = tuple(data.bands) if data.bands else tuple(range(1, img.count + 1))
        if max(bands) > img.count:
            raise InputError(
                f"{spec.image}: config asks for bands {list(bands)} but the image has {img.count}"
            )
        georef = _georeferenced(img)
        if not georef:
            log.warning(
                "%s: not georeferenced; using the pixel grid (identity transform)", spec.image
            )
        nodata = data.nodata if data.nodata is not None else img.nodata
        info = dict(
            id=spec.scene_id,
            image=spec.image,
            height=img.height,
            width=img.width,
            bands=bands,
            dtype=dtype,
            nodata=None if nodata is None else float(nodata),
            crs=img.crs.to_wkt() if georef else "",
            transform=_gdal(img.transform) if georef else IDENTITY,
            georeferenced=georef,
        )
        if spec.labels:
            info["labels"] = _inspect_label_raster(spec.labels, img, georef, data)
        elif spec.vector:
            info["labels"] = _inspect_vector(spec, img, georef)
    return SceneInfo(**info)


def _inspect_label_raster(path: str, img, img_georef: bool, data: DataConfig) -> LabelSource:
    with _open(path, "label") as lab:
        nodata = data.label_nodata if data.label_nodata is not None else lab.nodata
        nodata = None if nodata is None else float(nodata)
        if lab.count < 1:
            raise InputError(f"{path}: label raster has no band")
        same_size = (lab.height, lab.width) == (img.height, img.width)
        if not (img_georef and _georeferenced(lab)):
            if not same_size:
                raise InputError(
                    f"{path}: label raster is {lab.height}x{lab.width} pixels but image {img.name} is "
                    f"{img.height}x{img.width}; without georeferencing they must be the same size"
                )
            return LabelSource("raster", path, warp=False, nodata=nodata)
        same_transform = lab.transform.almost_equals(img.transform)
        if data.label_grid == "same_as_image":
            if not (same_size and same_transform):
                raise InputError(
                    f"{path}: config says label_grid: same_as_image, but the label grid "
                    f"({lab.height}x{lab.width}, {tuple(lab.transform)[:6]}) differs from the image's "
                    f"({img.height}x{img.width}, {tuple(img.transform)[:6]})"
                )
            if lab.crs != img.crs:
                log.info(
                    "%s: label CRS (%s) differs from the image CRS (%s) by name; config declares "
                    "label_grid: same_as_image, so labels are read pixel for pixel",
                    path,
                    lab.crs.to_string()[:60],
                    img.crs.to_string()[:60],
                )
            return LabelSource("raster", path, warp=False, nodata=nodata)
        _check_overlap(path, lab, img)
        if data.label_grid == "auto" and same_size and same_transform and lab.crs == img.crs:
            return LabelSource("raster", path, warp=False, nodata=nodata)
        log.warning(
            "%s: label grid (%s, %dx%d) differs from the image grid (%s, %dx%d); "
            "resampling labels onto the image grid with nearest neighbour",
            path,
            lab.crs.to_string()[:40],
            lab.height,
            lab.width,
            img.crs.to_string()[:40],
            img.height,
            img.width,
        )
        return LabelSource("raster", path, warp=True, nodata=nodata)


def _check_overlap(path: str, lab, img) -> None:
    from rasterio.warp import transform_bounds

    try:
        lb = transform_bounds(lab.crs, img.crs, *lab.bounds)
    except Exception as e:  # a CRS pair PROJ cannot relate
        raise InputError(f"{path}: cannot relate label CRS to image CRS: {e}") from None
    ib = img.bounds
    if lb[0] >= ib[2] or lb[2] <= ib[0] or lb[1] >= ib[3] or lb[3] <= ib[1]:
        raise InputError(
            f"{path}: label raster does not overlap image {img.name} "
            f"(label bounds in image CRS {tuple(round(v, 1) for v in lb)}, image bounds {tuple(ib)})"
        )


def _inspect_vector(spec: SceneSpec, img, img_georef: bool) -> LabelSource:
    import fiona

    vec = spec.vector
    assert vec is not None
    if not storage.path(vec.path).exists():
        raise InputError(f"{vec.path}: label vector file not found")
    try:
        with fiona.open(storage.gdal_path(vec.path), layer=vec.layer, encoding=vec.encoding) as src:
            n = len(src)
            props = src.schema["properties"]
    except Exception as e:
        raise InputError(f"{vec.path}: cannot open label vector file: {e}") from None
    if n == 0:
        raise InputError(f"{vec.path}: label vector file has no features")
    if vec.attribute is not None and vec.attribute not in props:
        raise InputError(
            f"{vec.path}: no attribute {vec.attribute!r}; attributes are {sorted(props)}"
        )
    if not img_georef:
        raise InputError(f"{spec.image}: vector labels need a georeferenced image")
    shapes = VectorShapes(vec, img.crs)
    if shapes.repaired:
        ids = ", ".join(map(str, shapes.repaired[:10])) + (
            ", ..." if len(shapes.repaired) > 10 else ""
        )
        log.warning(
            "%s: %d invalid (self-intersecting) polygon(s) repaired with shapely.make_valid "
            "before rasterising: feature(s) %s",
            vec.path,
            len(shapes.repaired),
            ids,
        )
    share = shapes.coverage(img.bounds)
    if share == 0:
        raise InputError(
            f"{vec.path}: no polygon overlaps image {spec.image} (polygon bounds in the image CRS "
            f"{tuple(round(float(v), 1) for v in shapes.bounds())}, image bounds "
            f"{tuple(round(v, 1) for v in img.bounds)})"
        )
    if share < vec.min_coverage:
        log.warning(
            "%s: polygons cover %.2f%% of image %s, less than min_coverage %.2f%%; "
            "check the file and its CRS",
            vec.path,
            100 * share,
            spec.image,
            100 * vec.min_coverage,
        )
    return LabelSource("vector", vec.path)


def check_consistent(scenes: list[SceneInfo]) -> None:
    """Scenes of one data set share band count and dtype."""
    first = scenes[0]
    for s in scenes[1:]:
        if s.num_bands != first.num_bands:
            raise InputError(
                f"{s.image}: has {s.num_bands} bands but {first.image} has {first.num_bands}; "
                "scenes of one data set need the same bands"
            )
        if s.dtype != first.dtype:
            raise InputError(
                f"{s.image}: dtype {s.dtype} but {first.image} is {first.dtype}; "
                "scenes of one data set need the same dtype"
            )


class LabelMapper:
    """Maps raw label values to class ids; records values outside the map."""

    def __init__(self, data: DataConfig):
        table = data.value_to_class()
        self.keys = np.array(sorted(table), dtype=np.float64)
        self.classes = np.array([table[k] for k in sorted(table)], dtype=np.uint8)
        self.ignore_unknown = data.unknown_labels == "ignore"

    def __call__(self, raw: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, set[float]]:
        """Class ids (uint8, 255 where not `known` or unmapped) and the unmapped values seen."""
        vals = raw.astype(np.float64)
        idx = np.clip(np.searchsorted(self.keys, vals), 0, len(self.keys) - 1)
        hit = (self.keys[idx] == vals) & known
        out = np.where(hit, self.classes[idx], IGNORE).astype(np.uint8)
        miss = known & ~hit
        unknown = set(np.unique(vals[miss]).tolist()) if miss.any() else set()
        return out, unknown


@dataclass
class WindowData:
    """Pixels of one window. image (H, W, B) in the scene dtype, label/valid (H, W) uint8."""

    image: np.ndarray
    label: np.ndarray
    valid: np.ndarray
    nan_pixels: int = 0
    unknown_labels: set[float] = field(default_factory=set)


class SceneReader:
    """Reads windows of one scene. Open it in a worker, not in the launcher; close it after."""

    def __init__(self, info: SceneInfo, data: DataConfig):
        self.info = info
        self.data = data
        self.mapper = LabelMapper(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._img = rasterio.open(storage.gdal_path(info.image))
            self._lab = None
            self._vrt = None
            self._shapes = None
            if info.labels.kind == "raster":
                self._lab = rasterio.open(storage.gdal_path(info.labels.path))
                if info.labels.warp:
                    self._vrt = WarpedVRT(
                        self._lab,
                        crs=self._img.crs,
                        transform=self._img.transform,
                        width=info.width,
                        height=info.height,
                        resampling=rasterio.enums.Resampling.nearest,
                        nodata=info.labels.nodata if info.labels.nodata is not None else IGNORE_RAW,
                    )
            elif info.labels.kind == "vector":
                self._shapes = VectorShapes(data.scenes_by_id()[info.id].vector, self._img.crs)  # type: ignore[union-attr]

    def close(self) -> None:
        for ds in (self._vrt, self._lab, self._img):
            if ds is not None:
                ds.close()

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, window: Window) -> WindowData:
        """Read `window` (which may run past the scene), padded outside it."""
        info = self.info
        h, w = window.height, window.width
        image = np.zeros((h, w, info.num_bands), dtype=info.dtype)
        valid = np.zeros((h, w), dtype=bool)
        label = np.full((h, w), IGNORE, dtype=np.uint8)
        inside = window.intersection(Window(0, 0, info.height, info.width))
        if inside is None:
            return WindowData(image, label, valid.astype(np.uint8))
        rio_win = RioWindow(inside.col_off, inside.row_off, inside.width, inside.height)
        sl = inside.relative_to(window)
        try:
            px = self._img.read(list(info.bands), window=rio_win)  # (B, h, w)
        except RasterioError as e:
            raise InputError(f"{info.image}: cannot read pixels at window {inside}: {e}") from None
        px = np.moveaxis(px, 0, -1)
        ok = np.ones(px.shape[:2], dtype=bool)
        nan_pixels = 0
        if px.dtype.kind == "f":
            nan = np.isnan(px).any(axis=-1)
            nan_pixels = int(nan.sum())
            ok &= ~nan
        if info.nodata is not None:
            ok &= ~(px == np.asarray(info.nodata, dtype=px.dtype)).any(axis=-1)
        image[sl] = px
        valid[sl] = ok
        unknown: set[float] = set()
        if info.labels.kind != "none":
            cls, unknown = self._read_labels(rio_win, inside, ok)
            label[sl] = cls
        return WindowData(image, label, valid.astype(np.uint8), nan_pixels, unknown)

    def _read_labels(
        self, rio_win: RioWindow, inside: Window, ok: np.ndarray
    ) -> tuple[np.ndarray, set[float]]:
        info = self.info
        if self._shapes is not None:
            return self._shapes.rasterize(self._img.window_transform(rio_win), ok.shape, ok)
        src = self._vrt if self._vrt is not None else self._lab
        try:
            raw = src.read(1, window=rio_win)  # type: ignore[union-attr]
        except RasterioError as e:
            raise InputError(
                f"{info.labels.path}: cannot read labels at window {inside}: {e}"
            ) from None
        known = ok.copy()
        nodata = info.labels.nodata
        if self._vrt is not None and nodata is None:
            nodata = IGNORE_RAW
        if nodata is not None:
            known &= raw != np.asarray(nodata, dtype=raw.dtype)
        if raw.dtype.kind == "f":
            known &= ~np.isnan(raw)
        return self.mapper(raw, known)


IGNORE_RAW = -2147483647.0
"""Fill of warped label pixels outside the label raster when it declares no nodata."""


class VectorShapes:
    """Polygons of a vector label file in the image CRS, rasterised window by window.

    Invalid polygons (self-intersecting rings, bow ties) are repaired with
    `shapely.make_valid` (its polygonal parts are kept) before rasterising; their
    feature ids are in `repaired`.
    """

    def __init__(self, spec, dst_crs):
        import fiona
        from fiona.transform import transform_geom

        self.spec = spec
        self.items: list[tuple[dict, int]] = []
        self.unknown: set = set()
        self.repaired: list = []
        boxes = []
        with fiona.open(
            storage.gdal_path(spec.path), layer=spec.layer, encoding=spec.encoding
        ) as src:
            src_crs = src.crs
            for feat in src:
                if feat.geometry is None:
                    continue
                if spec.attribute is None:
                    cls = spec.burn_class
                else:
                    value = str(feat.properties[spec.attribute])
                    if value not in spec.values:
                        self.unknown.add(value)
                        continue
                    cls = spec.values[value]
                geom = dict(feat.geometry.__geo_interface__)
                if src_crs and dst_crs and rasterio.crs.CRS.from_user_input(src_crs) != dst_crs:
                    try:
                        geom = transform_geom(src_crs, dst_crs.to_wkt(), geom)
                    except Exception as e:  # fiona's TransformError: PROJ cannot map it
                        xs, ys = _coords(geom)
                        hint = ""
                        if rasterio.crs.CRS.from_user_input(src_crs).is_geographic and (
                            np.abs(xs).max() > 360 or np.abs(ys).max() > 90
                        ):
                            hint = (
                                "; its coordinates are not longitudes and latitudes: a file "
                                "in a projected CRS without its CRS (a shapefile without its "
                                ".prj, GeoJSON without 'crs')? Save it with its CRS"
                            )
                        raise InputError(
                            f"{spec.path}: feature {feat.id} cannot be transformed from "
                            f"{src_crs} to the image CRS ({e}){hint}"
                        ) from None
                geom, fixed = _valid(geom)
                if fixed:
                    self.repaired.append(feat.id)
                if geom is None:
                    continue
                xs, ys = _coords(geom)
                boxes.append((xs.min(), ys.min(), xs.max(), ys.max()))
                self.items.append((geom, int(cls)))
        self.boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of all polygons in the image CRS."""
        b = self.boxes
        if not len(b):
            return (np.nan,) * 4  # type: ignore[return-value]
        return b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()

    def coverage(self, bounds) -> float:
        """Share of the rectangle `bounds` (left, bottom, right, top) inside any polygon."""
        import shapely
        from shapely.geometry import box, shape

        area = box(*bounds)
        b = self.boxes
        hit = (b[:, 0] <= bounds[2]) & (b[:, 2] >= bounds[0])
        hit &= (b[:, 1] <= bounds[3]) & (b[:, 3] >= bounds[1])
        geoms = [shape(self.items[i][0]) for i in np.flatnonzero(hit)]
        if not geoms or area.area == 0:
            return 0.0
        return float(shapely.union_all(geoms).intersection(area).area / area.area)

    def rasterize(
        self, transform, shape: tuple[int, int], ok: np.ndarray
    ) -> tuple[np.ndarray, set]:
        from rasterio.features import rasterize

        h, w = shape
        x0, y0 = transform * (0, 0)
        x1, y1 = transform * (w, h)
        bx0, bx1 = min(x0, x1), max(x0, x1)
        by0, by1 = min(y0, y1), max(y0, y1)
        b = self.boxes
        hit = (b[:, 0] <= bx1) & (b[:, 2] >= bx0) & (b[:, 1] <= by1) & (b[:, 3] >= by0)
        fill = IGNORE if self.spec.background is None else self.spec.background
        shapes = [self.items[i] for i in np.flatnonzero(hit)]
        if shapes:
            out = rasterize(
                shapes,
                out_shape=shape,
                transform=transform,
                fill=fill,
                dtype="uint8",
                all_touched=self.spec.all_touched,
            )
        else:
            out = np.full(shape, fill, np.uint8)
        out = np.where(ok, out, IGNORE).astype(np.uint8)
        unknown = {f"attribute value {v!r}" for v in self.unknown}
        return out, unknown  # type: ignore[return-value]


def _valid(geom: dict) -> tuple[dict | None, bool]:
    """(`geom`, False) when valid; else its repair by `shapely.make_valid` (polygonal parts
    only, None when nothing polygonal is left) and True."""
    import shapely
    from shapely.geometry import mapping, shape

    g = shape(geom)
    if g.is_valid:
        return geom, False
    fixed = shapely.make_valid(g)
    parts = [
        p for p in getattr(fixed, "geoms", [fixed]) if p.geom_type in ("Polygon", "MultiPolygon")
    ]
    if not parts:
        return None, True
    return dict(mapping(shapely.union_all(parts))), True


def _coords(geom: dict) -> tuple[np.ndarray, np.ndarray]:
    pts: list = []

    def walk(c):
        if isinstance(c[0], (int, float)):
            pts.append(c[:2])
        else:
            for x in c:
                walk(x)

    if geom["type"] == "GeometryCollection":
        for g in geom["geometries"]:
            walk(g["coordinates"])
    else:
        walk(geom["coordinates"])
    a = np.asarray(pts, dtype=np.float64)
    return a[:, 0], a[:, 1]
