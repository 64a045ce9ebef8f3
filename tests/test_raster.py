"""`reseg.raster`: scene headers, windows read with padding, label values, polygons.

Every scene is a seeded GeoTIFF written here with an explicit CRS and transform
(`tests.rasters`); expected arrays are built from the arrays that were written, so
every comparison is exact.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS as RioCRS
from rasterio.transform import from_origin

from reseg.config.data import DataConfig
from reseg.errors import InputError
from reseg.raster import (
    IDENTITY,
    LabelSource,
    SceneReader,
    check_consistent,
    fingerprint_file,
    inspect_scene,
)
from reseg.windows import Window
from tests.rasters import CRS, TRANSFORM, write_raster

H, W, B = 20, 24, 3
X0, Y0, PX = 500_000.0, 6_200_000.0, 10.0  # TRANSFORM: origin and pixel size (metres)


def _data(scene: dict, **kw) -> DataConfig:
    classes = kw.pop("classes", 3)
    return DataConfig(scenes=[scene], classes=[{"name": f"c{i}"} for i in range(classes)], **kw)


def _image(seed: int = 0, dtype: str = "uint16") -> np.ndarray:
    """(B, H, W) values 1..999, with nodata (0) in band 2 on a 3 x 2 block at rows 4-6, cols 5-6."""
    rng = np.random.default_rng(seed)
    img = rng.integers(1, 1000, (B, H, W)).astype(dtype)
    img[1, 4:7, 5:7] = 0
    return img


def _labels(seed: int = 1) -> np.ndarray:
    """(H, W) raw label values 10/20/30 with a 0 (mapped to ignore) and a 40 (unknown) patch."""
    rng = np.random.default_rng(seed)
    lab = rng.choice(np.array([10, 20, 30], np.uint8), (H, W))
    lab[0, :3] = 0
    lab[15, 10] = 40
    return lab


LABEL_VALUES = {10: 0, 20: 1, 30: 2, 0: None}


def _mapped(raw: np.ndarray) -> np.ndarray:
    out = np.full(raw.shape, 255, np.uint8)
    for v, c in LABEL_VALUES.items():
        if c is not None:
            out[raw == v] = c
    return out


@pytest.fixture
def scene(tmp_path):
    img, lab = _image(), _labels()
    ip = write_raster(tmp_path / "img.tif", img, nodata=0)
    lp = write_raster(tmp_path / "lab.tif", lab)
    spec = {"image": str(ip), "labels": str(lp)}
    data = _data(spec, label_values=LABEL_VALUES)
    return img, lab, data


# --- headers ----------------------------------------------------------------------------


def test_inspect_scene_reports_the_headers(scene):
    img, _, data = scene
    info = inspect_scene(data.scenes[0], data)
    assert info.id == "img"
    assert (info.height, info.width, info.bands, info.dtype) == (H, W, (1, 2, 3), "uint16")
    assert info.nodata == 0.0
    assert info.georeferenced
    assert RioCRS.from_wkt(info.crs) == RioCRS.from_user_input(CRS)
    assert info.transform == (X0, PX, 0.0, Y0, 0.0, -PX)  # GDAL order (c, a, b, f, d, e)
    assert info.labels == LabelSource("raster", data.scenes[0].labels, warp=False, nodata=None)


def test_config_bands_and_nodata_override_the_file(tmp_path):
    ip = write_raster(tmp_path / "img.tif", _image(), nodata=0)
    data = _data({"image": str(ip)}, bands=[3, 1], nodata=5)
    info = inspect_scene(data.scenes[0], data)
    assert info.bands == (3, 1) and info.num_bands == 2 and info.nodata == 5.0
    assert info.labels.kind == "none"


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_an_image_without_georeferencing_uses_the_pixel_grid(tmp_path):
    ip = write_raster(tmp_path / "plain.tif", _image(), crs=None)
    lp = write_raster(tmp_path / "plain_lab.tif", _labels(), crs=None)
    data = _data({"image": str(ip), "labels": str(lp)}, label_values=LABEL_VALUES)
    info = inspect_scene(data.scenes[0], data)
    assert not info.georeferenced
    assert (info.crs, info.transform) == ("", IDENTITY)
    assert info.labels.kind == "raster" and not info.labels.warp


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(
    "case, match",
    [
        ("missing", "img.tif: image file not found"),
        ("bands", "config asks for bands [1, 4] but the image has 3"),
        ("dtype", "image dtype int32 is not supported"),
        ("size", "label raster is 10x24 pixels but image"),
    ],
)
def test_inspect_scene_errors_name_the_file(tmp_path, case, match):
    img = _image()
    ip = tmp_path / "img.tif"
    kw: dict = {}
    spec = {"image": str(ip)}
    if case == "bands":
        write_raster(ip, img)
        kw["bands"] = [1, 4]
    elif case == "dtype":
        write_raster(ip, img.astype("int32"))
    elif case == "size":  # not georeferenced, so the grids must match pixel for pixel
        write_raster(ip, img, crs=None)
        spec["labels"] = str(write_raster(tmp_path / "lab.tif", _labels()[:10], crs=None))
    data = _data(spec, **kw)
    with pytest.raises(InputError, match=re.escape(match)) as e:
        inspect_scene(data.scenes[0], data)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(spec["labels"] if case == "size" else str(ip))


def test_a_label_raster_that_does_not_overlap_the_image_is_refused(tmp_path):
    ip = write_raster(tmp_path / "img.tif", _image())
    far = from_origin(X0 + 10_000, Y0, PX, PX)
    lp = write_raster(tmp_path / "lab.tif", _labels(), transform=far)
    data = _data({"image": str(ip), "labels": str(lp)})
    with pytest.raises(InputError, match="lab.tif: label raster does not overlap image"):
        inspect_scene(data.scenes[0], data)


def test_scenes_of_one_data_set_must_agree_in_bands_and_dtype(tmp_path):
    a = write_raster(tmp_path / "a.tif", _image())
    b = write_raster(tmp_path / "b.tif", _image()[:2])
    c = write_raster(tmp_path / "c.tif", _image(dtype="uint8"))
    infos = []
    for p in (a, b, c):
        data = _data({"image": str(p)})
        infos.append(inspect_scene(data.scenes[0], data))
    check_consistent([infos[0], infos[0]])
    with pytest.raises(InputError, match=f"{b}: has 2 bands but {a} has 3"):
        check_consistent(infos[:2])
    with pytest.raises(InputError, match=f"{c}: dtype uint8 but {a} is uint16"):
        check_consistent([infos[0], infos[2]])


def test_fingerprint_file_follows_content(tmp_path):
    p = write_raster(tmp_path / "img.tif", _image())
    fp = fingerprint_file(p)
    assert fingerprint_file(p) == fp and len(fp) == 16
    write_raster(p, _image(seed=9))
    assert fingerprint_file(p) != fp


# --- windows ----------------------------------------------------------------------------


def test_a_window_inside_the_scene_is_read_exactly(scene):
    img, lab, data = scene
    info = inspect_scene(data.scenes[0], data)
    win = Window(3, 4, 8, 10)
    with SceneReader(info, data) as reader:
        wd = reader.read(win)
    sl = (slice(3, 11), slice(4, 14))
    np.testing.assert_array_equal(wd.image, np.moveaxis(img, 0, -1)[sl])
    assert wd.image.dtype == np.uint16 and wd.image.shape == (8, 10, B)
    valid = np.ones((H, W), np.uint8)
    valid[4:7, 5:7] = 0  # nodata in one band makes the pixel invalid
    np.testing.assert_array_equal(wd.valid, valid[sl])
    expected = _mapped(lab)
    expected[valid == 0] = 255  # no label where the image has no data
    np.testing.assert_array_equal(wd.label, expected[sl])
    assert wd.nan_pixels == 0 and wd.unknown_labels == set()


def test_a_window_crossing_the_edge_is_padded(scene):
    img, lab, data = scene
    info = inspect_scene(data.scenes[0], data)
    win = Window(-3, 18, 10, 9)  # rows -3..6, cols 18..26: runs past the top and the right
    with SceneReader(info, data) as reader:
        wd = reader.read(win)
    image = np.zeros((10, 9, B), np.uint16)
    image[3:, :6] = np.moveaxis(img, 0, -1)[0:7, 18:24]
    np.testing.assert_array_equal(wd.image, image)
    valid = np.zeros((10, 9), np.uint8)
    valid[3:, :6] = 1
    np.testing.assert_array_equal(wd.valid, valid)
    label = np.full((10, 9), 255, np.uint8)
    label[3:, :6] = _mapped(lab)[0:7, 18:24]
    np.testing.assert_array_equal(wd.label, label)


def test_a_window_outside_the_scene_is_all_padding(scene):
    _, _, data = scene
    info = inspect_scene(data.scenes[0], data)
    with SceneReader(info, data) as reader:
        wd = reader.read(Window(H + 5, -20, 4, 6))
    assert wd.image.shape == (4, 6, B) and not wd.image.any()
    assert not wd.valid.any() and (wd.label == 255).all()


def test_label_values_are_mapped_and_unknown_values_reported(scene):
    _, lab, data = scene
    info = inspect_scene(data.scenes[0], data)
    with SceneReader(info, data) as reader:
        wd = reader.read(Window(0, 0, H, W))
    assert wd.unknown_labels == {40.0}
    assert wd.label[15, 10] == 255  # the unknown value is never a class
    assert (wd.label[0, :3] == 255).all()  # value 0 maps to null: ignored, not unknown
    for value, cls in ((10, 0), (20, 1), (30, 2)):
        inside = (lab == value) & (wd.valid == 1)
        assert inside.any() and (wd.label[inside] == cls).all()
    # a window without the unknown pixel reports nothing
    with SceneReader(info, data) as reader:
        assert reader.read(Window(0, 0, 10, 10)).unknown_labels == set()


def test_default_label_values_are_class_ids_and_label_nodata_is_ignored(tmp_path):
    lab = np.random.default_rng(3).integers(0, 3, (H, W)).astype(np.uint8)
    lab[2:4, 2:4] = 9  # the label raster's nodata
    lab[10, 10] = 3  # outside 0..2: unknown
    ip = write_raster(tmp_path / "img.tif", _image(), nodata=0)
    lp = write_raster(tmp_path / "lab.tif", lab, nodata=9)
    data = _data({"image": str(ip), "labels": str(lp)})
    info = inspect_scene(data.scenes[0], data)
    assert info.labels.nodata == 9.0
    with SceneReader(info, data) as reader:
        wd = reader.read(Window(0, 0, H, W))
    expected = np.where(lab < 3, lab, 255).astype(np.uint8)
    expected[wd.valid == 0] = 255
    np.testing.assert_array_equal(wd.label, expected)
    assert wd.unknown_labels == {3.0}  # nodata 9 is not reported


def test_nan_pixels_of_a_float_image_are_invalid_and_counted(tmp_path):
    img = np.random.default_rng(4).normal(100, 10, (2, H, W)).astype(np.float32)
    img[0, 1, 1] = np.nan
    img[1, 5, 7:10] = np.nan
    ip = write_raster(tmp_path / "f.tif", img)
    data = _data({"image": str(ip)})
    info = inspect_scene(data.scenes[0], data)
    assert info.dtype == "float32" and info.nodata is None
    with SceneReader(info, data) as reader:
        wd = reader.read(Window(0, 0, 8, 12))
    assert wd.nan_pixels == 4
    valid = np.ones((8, 12), np.uint8)
    valid[1, 1] = 0
    valid[5, 7:10] = 0
    np.testing.assert_array_equal(wd.valid, valid)
    np.testing.assert_array_equal(wd.image, np.moveaxis(img, 0, -1)[:8, :12])  # NaN kept


def test_a_coarser_label_grid_is_resampled_onto_the_image_grid(tmp_path):
    """Labels at 20 m over a 10 m image, shifted by one label pixel: nearest neighbour gives
    each label pixel to the 2 x 2 image pixels it covers; outside the label raster, 255."""
    coarse = np.random.default_rng(5).integers(0, 3, (H // 2, W // 2)).astype(np.uint8)
    ip = write_raster(tmp_path / "img.tif", _image())
    shifted = from_origin(X0 + 20.0, Y0, 2 * PX, 2 * PX)
    lp = write_raster(tmp_path / "coarse.tif", coarse, transform=shifted)
    data = _data({"image": str(ip), "labels": str(lp)})
    info = inspect_scene(data.scenes[0], data)
    assert info.labels.warp
    with SceneReader(info, data) as reader:
        wd = reader.read(Window(0, 0, H, W))
        part = reader.read(Window(6, 5, 7, 9))
    fine = np.kron(coarse, np.ones((2, 2), np.uint8))
    expected = np.full((H, W), 255, np.uint8)
    expected[:, 2:] = fine[:, : W - 2]
    np.testing.assert_array_equal(wd.label, expected)
    np.testing.assert_array_equal(part.label, expected[6:13, 5:14])
    assert wd.unknown_labels == set()


def test_same_as_image_reads_a_label_raster_with_another_crs_name_pixel_for_pixel(tmp_path):
    ip = write_raster(tmp_path / "img.tif", _image())
    lab = np.random.default_rng(6).integers(0, 3, (H, W)).astype(np.uint8)
    lp = write_raster(tmp_path / "lab.tif", lab, crs="EPSG:25832")  # same grid, other CRS name
    auto = _data({"image": str(ip), "labels": str(lp)})
    assert inspect_scene(auto.scenes[0], auto).labels.warp  # auto: resampled
    data = _data({"image": str(ip), "labels": str(lp)}, label_grid="same_as_image")
    info = inspect_scene(data.scenes[0], data)
    assert not info.labels.warp
    with SceneReader(info, data) as reader:
        np.testing.assert_array_equal(reader.read(Window(0, 0, H, W)).label, lab)


# --- polygons ---------------------------------------------------------------------------


def _box(r0: int, c0: int, r1: int, c1: int) -> dict:
    """A polygon along pixel edges covering rows r0..r1-1 and cols c0..c1-1 of TRANSFORM."""
    x0, x1 = X0 + PX * c0, X0 + PX * c1
    y0, y1 = Y0 - PX * r0, Y0 - PX * r1
    return {"type": "Polygon", "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]}


def _write_polygons(path, features, crs=CRS) -> str:
    import fiona

    schema = {"geometry": "Polygon", "properties": {"kind": "str"}}
    # a Shapefile: writing a GeoPackage needs SQLite's rtree module, which the SQLite
    # library loaded first into the process (by TensorFlow or Beam in a full run) may lack
    with fiona.open(path, "w", driver="ESRI Shapefile", crs=crs, schema=schema) as dst:
        for geom, kind in features:
            dst.write({"geometry": geom, "properties": {"kind": kind}})
    return str(path)


def test_polygons_are_rasterised_onto_the_image_grid(tmp_path):
    ip = write_raster(tmp_path / "img.tif", _image(), nodata=0)
    vp = _write_polygons(
        tmp_path / "fields.shp",
        [
            (_box(1, 1, 4, 6), "wheat"),
            (_box(10, 12, 18, 20), "forest"),
            (_box(12, 2, 14, 4), "quarry"),  # not in `values`: reported, not burnt
        ],
    )
    vector = {
        "path": vp,
        "attribute": "kind",
        "values": {"wheat": 1, "forest": 2},
        "background": 0,
    }
    data = _data({"image": str(ip), "vector": vector})
    info = inspect_scene(data.scenes[0], data)
    assert info.labels == LabelSource("vector", vp)
    expected = np.zeros((H, W), np.uint8)
    expected[1:4, 1:6] = 1
    expected[10:18, 12:20] = 2
    expected[4:7, 5:7] = 255  # image nodata
    with SceneReader(info, data) as reader:
        wd = reader.read(Window(0, 0, H, W))
        part = reader.read(Window(8, 10, 8, 16))  # crosses the right edge
    np.testing.assert_array_equal(wd.label, expected)
    assert wd.unknown_labels == {"attribute value 'quarry'"}
    pad = np.full((8, 16), 255, np.uint8)
    pad[:, :14] = expected[8:16, 10:24]
    np.testing.assert_array_equal(part.label, pad)


def test_polygons_in_another_crs_are_reprojected_and_burnt_without_background(tmp_path):
    """The same boxes in WGS 84: their edges lie on pixel edges, 5 m from the nearest pixel
    centre, far more than the reprojection's error, so the burnt pixels are exact."""
    from fiona.transform import transform_geom

    ip = write_raster(tmp_path / "img.tif", _image(seed=2).clip(1))
    boxes = [_box(2, 3, 9, 8), _box(15, 20, 20, 24)]
    geoms = [transform_geom(CRS, "EPSG:4326", b) for b in boxes]
    vp = _write_polygons(tmp_path / "wgs84.shp", [(g, "x") for g in geoms], crs="EPSG:4326")
    data = _data({"image": str(ip), "vector": {"path": vp, "burn_class": 2}})
    info = inspect_scene(data.scenes[0], data)
    with SceneReader(info, data) as reader:
        wd = reader.read(Window(0, 0, H, W))
    expected = np.full((H, W), 255, np.uint8)
    expected[2:9, 3:8] = 2
    expected[15:20, 20:24] = 2
    np.testing.assert_array_equal(wd.label, expected)


def test_a_vector_label_file_without_the_attribute_is_refused(tmp_path):
    ip = write_raster(tmp_path / "img.tif", _image())
    vp = _write_polygons(tmp_path / "f.shp", [(_box(0, 0, 2, 2), "a")])
    data = _data({"image": str(ip), "vector": {"path": vp, "attribute": "class", "values": {}}})
    with pytest.raises(InputError, match=r"f.shp: no attribute 'class'; attributes are \['kind'\]"):
        inspect_scene(data.scenes[0], data)


def test_reading_the_written_raster_back_matches(tmp_path):
    """The fixture itself: what `write_raster` writes is what rasterio reads, CRS included."""
    img = _image()
    p = write_raster(tmp_path / "img.tif", img, nodata=0)
    with rasterio.open(p) as src:
        np.testing.assert_array_equal(src.read(), img)
        assert src.crs == RioCRS.from_user_input(CRS) and src.transform == TRANSFORM
        assert TRANSFORM == from_origin(X0, Y0, PX, PX)  # what the expected arrays assume
        assert src.nodata == 0
