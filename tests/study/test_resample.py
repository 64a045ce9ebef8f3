"""Coarser scenes: area-averaged images, mode-resampled labels, scaled tiling."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

from reseg.config import DataConfig
from reseg.study.resample import area_average, mode_labels, resample_scenes, scaled_tiling
from tests.rasters import TRANSFORM, write_raster


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 13), st.integers(1, 13), st.integers(0, 1000))
def test_area_average_is_the_block_mean_of_valid_pixels(f, h, w, seed):
    rng = np.random.default_rng(seed)
    px = rng.integers(1, 200, (h, w, 2)).astype(np.float32)
    valid = rng.random((h, w)) < 0.8
    out, ok = area_average(px, valid, f, nodata=-1.0)
    assert out.shape == (-(-h // f), -(-w // f), 2)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            blk = (slice(i * f, i * f + f), slice(j * f, j * f + f))
            v = valid[blk]
            if 2 * v.sum() >= v.size and v.any():
                assert ok[i, j]
                np.testing.assert_allclose(out[i, j], px[blk][v].mean(0), rtol=1e-5)
            else:
                assert not ok[i, j] and (out[i, j] == -1).all()


def test_area_average_rounds_integers_and_steps_off_nodata():
    px = np.array([[[0], [1]], [[0], [0]]], np.uint8)  # mean 0.25 -> 0 == nodata
    out, ok = area_average(px, np.ones((2, 2), bool), 2, nodata=0)
    assert ok[0, 0] and out[0, 0, 0] == 1 and out.dtype == np.uint8


def test_mode_labels_prefers_counted_values_and_keeps_ignored_blocks():
    raw = np.array(
        [
            [1, 1, 0, 0],
            [2, 0, 0, 0],
        ],
        np.uint8,
    )  # value 0 is ignored
    countable = raw != 0
    out = mode_labels(raw, countable, 2, np.uint8(0))
    assert out.tolist() == [[1, 0]]
    tie = np.array([[2, 1], [0, 0]], np.uint8)
    assert mode_labels(tie, tie != 0, 2, np.uint8(0)).tolist() == [[1]]  # ties: lowest value


def test_resample_scenes_writes_coarser_rasters_on_the_same_ground(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(1, 1000, (2, 10, 13)).astype(np.uint16)
    img[:, :4, :4] = 0  # nodata corner
    lab = np.ones((10, 13), np.uint8) * 2
    lab[5:, :] = 3
    lab[9, 12] = 9  # an unknown value is never the mode of a mixed block
    write_raster(tmp_path / "img.tif", img, nodata=0)
    write_raster(tmp_path / "lab.tif", lab)
    data = DataConfig.model_validate(
        {
            "scenes": [
                {"id": "s", "image": str(tmp_path / "img.tif"), "labels": str(tmp_path / "lab.tif")}
            ],
            "classes": [{"name": "a"}, {"name": "b"}],
            "label_values": {2: 0, 3: 1},
            "unknown_labels": "ignore",
        }
    )
    specs = resample_scenes(data, 2, tmp_path / "res2")
    assert specs[0].scene_id == "s"
    with rasterio.open(specs[0].image) as ds:
        assert (ds.height, ds.width, ds.count, ds.dtypes[0]) == (5, 7, 2, "uint16")
        assert ds.nodata == 0 and ds.crs is not None
        assert ds.transform.a == pytest.approx(2 * TRANSFORM.a)
        assert (ds.transform.c, ds.transform.f) == (TRANSFORM.c, TRANSFORM.f)
        out = ds.read()
    assert (out[:, :2, :2] == 0).all()
    np.testing.assert_allclose(out[:, 3, 3], np.rint(img[:, 6:8, 6:8].reshape(2, -1).mean(1)))
    with rasterio.open(specs[0].labels) as ds:
        lab2 = ds.read(1)
    assert lab2.shape == (5, 7)
    assert (lab2[:2] == 2).all() and (lab2[3:] == 3).all() and lab2[4, 6] == 3
    manifest = (tmp_path / "res2" / "manifest.json").stat().st_mtime_ns
    resample_scenes(data, 2, tmp_path / "res2")  # current: not written again
    assert (tmp_path / "res2" / "manifest.json").stat().st_mtime_ns == manifest


def test_resample_scenes_into_a_bucket_equals_the_local_ones(tmp_path, s3_bucket):
    """A study root in a bucket: GDAL writes a local stage, published into the bucket."""
    from reseg import storage

    rng = np.random.default_rng(1)
    write_raster(tmp_path / "img.tif", rng.integers(1, 1000, (2, 10, 13)).astype(np.uint16))
    write_raster(tmp_path / "lab.tif", np.where(rng.random((10, 13)) < 0.5, 2, 3).astype(np.uint8))
    data = DataConfig.model_validate(
        {
            "scenes": [
                {"id": "s", "image": str(tmp_path / "img.tif"), "labels": str(tmp_path / "lab.tif")}
            ],
            "classes": [{"name": "a"}, {"name": "b"}],
            "label_values": {2: 0, 3: 1},
        }
    )
    local = resample_scenes(data, 2, tmp_path / "res2")[0]
    remote = resample_scenes(data, 2, storage.path(f"{s3_bucket}/study/data/res2/scenes"))[0]
    assert remote.image.startswith(s3_bucket) and remote.labels.startswith(s3_bucket)
    for a, b in ((local.image, remote.image), (local.labels, remote.labels)):
        with rasterio.open(a) as x, rasterio.open(storage.gdal_path(b)) as y:
            np.testing.assert_array_equal(x.read(), y.read())
            assert x.transform == y.transform


def test_scaled_tiling_keeps_the_ground_and_the_stride_rules():
    assert scaled_tiling(64, 16, 96, 1, 8) == {"tile_size": 64, "overlap": 16, "block_size": 96}
    t = scaled_tiling(256, 32, None, 4, 16)
    assert t["tile_size"] == 64 and t["overlap"] == 8 and t["block_size"] == 2 * 224 // 4
    small = scaled_tiling(64, 16, 96, 4, 8)
    assert small["tile_size"] == 32 and small["tile_size"] % 8 == 0 and small["overlap"] % 2 == 0
    assert small["overlap"] < small["tile_size"]
