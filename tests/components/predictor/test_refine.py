"""DenseCRF and SLIC refinement, per tile and through a whole scene."""

from __future__ import annotations

import numpy as np
import rasterio

from reseg.artifacts import ModelInfo
from reseg.components.predictor import predict_scene
from reseg.components.predictor.refine import (
    UINT8_PER_STD,
    CrfParams,
    SlicParams,
    crf,
    ground_pixel_size,
    rgb_indexes,
    slic,
    slic_segments,
    standardize,
    to_pixels,
    to_uint8,
)
from reseg.config import PredictConfig
from reseg.config.predict import CrfConfig, SlicConfig, parse_length
from reseg.errors import ConfigError
from tests.components.predictor.test_scene import CFG

INFO = ModelInfo(
    bands=4,
    image_dtype="uint16",
    mean=(1000.0,) * 4,
    std=(200.0,) * 4,
    class_names=("a", "b"),
    class_colors=("#000000", "#ffffff"),
    output_stride=1,
    tile_size=64,
    architecture="x",
)


def _two_halves(seed=0):
    """A picture dark on the left and bright on the right; noisy probabilities 70 % right."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((48, 64), int)
    truth[:, 32:] = 1
    rgb = np.where(truth[..., None] == 1, 200, 50).astype(np.uint8) + rng.integers(
        0, 10, (48, 64, 3)
    ).astype(np.uint8)
    guess = np.where(rng.random(truth.shape) < 0.7, truth, 1 - truth)
    probs = np.where(guess[..., None] == np.arange(2), 0.6, 0.4).astype(np.float32)
    return truth, rgb, probs


def test_crf_cleans_noisy_probabilities_along_image_edges():
    truth, rgb, probs = _two_halves()
    q = crf(probs, rgb, CrfParams.of(CrfConfig(bilateral_sxy=20, bilateral_sstd=0.3), None))
    assert q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(-1), 1, atol=1e-4)
    before = (probs.argmax(-1) == truth).mean()
    after = (q.argmax(-1) == truth).mean()
    assert before < 0.75 and after > 0.97


def test_slic_averages_probabilities_within_superpixels():
    truth, rgb, probs = _two_halves(1)
    z = (rgb.astype(np.float32) - 125) / 75
    p = SlicParams.of(SlicConfig(size=16, compactness=0.5, sigma=1), None)
    out = slic(probs, z, p)
    np.testing.assert_allclose(out.sum(-1), 1, atol=1e-5)
    seg = slic_segments(z, p)
    assert 6 <= len(np.unique(seg)) <= 24  # about 48 * 64 / 16^2 = 12
    for s in np.unique(seg):
        inside = out[seg == s]
        np.testing.assert_allclose(inside, inside[:1].repeat(len(inside), 0), atol=1e-6)
        np.testing.assert_allclose(inside[0], probs[seg == s].mean(0), atol=1e-6)
    assert (out.argmax(-1) == truth).mean() > 0.95


def test_picture_for_refinement_is_standardised_by_the_model_statistics():
    assert rgb_indexes(INFO, None) == (0, 1, 2) and rgb_indexes(INFO, [4, 3, 2]) == (3, 2, 1)
    raw = np.array([[[500, 1000, 1500, 9]]], np.uint16)  # mean - 2.5 std, mean, mean + 2.5 std
    np.testing.assert_allclose(standardize(raw, INFO, (0, 1, 2)), [[[-2.5, 0, 2.5]]])
    np.testing.assert_array_equal(to_uint8(raw, INFO, (0, 1, 2)), [[[0, 128, 255]]])
    # uint8 scenes go through the same statistics: one band std is UINT8_PER_STD units
    from dataclasses import replace

    info8 = replace(INFO, image_dtype="uint8", mean=(100.0,) * 4, std=(10.0,) * 4)
    u8 = np.array([[[100, 110, 90, 4]]], np.uint8)
    np.testing.assert_allclose(
        to_uint8(u8, info8, (0, 1, 2)) - 127.5, [[[0, UINT8_PER_STD, -UINT8_PER_STD]]], atol=0.5
    )


# --- units ----------------------------------------------------------------------------------


def test_lengths_parse_as_metres_or_pixels():
    assert parse_length(3) == (3.0, "px") and parse_length("3 px") == (3.0, "px")
    assert parse_length("90 m") == (90.0, "m") and parse_length("2.5m") == (2.5, "m")
    import pytest
    from pydantic import ValidationError

    for bad in ("90 km", "m", "-3 m", 0, "0 px"):
        with pytest.raises(ValidationError):
            CrfConfig(bilateral_sxy=bad)


def test_ground_pixel_size_from_crs_and_transform():
    from affine import Affine
    from rasterio.crs import CRS

    utm = CRS.from_epsg(32633)
    assert ground_pixel_size(utm, Affine(28.5, 0, 500000, 0, -28.5, 4e6)) == 28.5
    # GDAL order (c, a, b, f, d, e), WKT: as the tiles carry them
    assert ground_pixel_size(utm.to_wkt(), (500000, 0.5, 0, 4e6, 0, -0.5)) == 0.5
    feet = CRS.from_epsg(2264)  # NAD83 / North Carolina (ftUS)
    assert abs(ground_pixel_size(feet, Affine(100, 0, 0, 0, -100, 0)) - 30.48006) < 1e-4
    deg = ground_pixel_size(CRS.from_epsg(4326), Affine(1e-4, 0, 10, 0, -1e-4, 60.0))
    assert abs(deg - 1e-4 * 111_320 * 0.5**0.5) < 0.01  # cos 60 deg = 1/2 along x
    assert ground_pixel_size(None, Affine.identity()) is None
    assert ground_pixel_size("", (0, 1, 0, 0, 0, 1)) is None


def test_crf_and_slic_lengths_convert_with_the_pixel_size():
    cfg = CrfConfig(gaussian_sxy="57 m", bilateral_sxy="285 m", bilateral_sstd=0.5)
    p = CrfParams.of(cfg, 28.5)
    assert (p.gaussian_sxy, p.bilateral_sxy) == (2.0, 10.0)
    assert p.bilateral_srgb == 0.5 * UINT8_PER_STD
    assert CrfParams.of(CrfConfig(bilateral_sxy="10 px"), 28.5).bilateral_sxy == 10.0
    s = SlicParams.of(SlicConfig(size="120 m", sigma="5 m"), 10.0)
    assert (s.size, s.sigma) == (12.0, 0.5)
    assert to_pixels(7, None, "x") == 7.0
    import pytest

    with pytest.raises(ConfigError, match="not georeferenced.*px"):
        CrfParams.of(cfg, None)


def test_refinement_runs_through_a_scene_window_by_window(cnn, tmp_path):
    from tests.components.predictor.helpers import smooth_image
    from tests.rasters import write_raster

    image = write_raster(tmp_path / "s.tif", smooth_image(4, 90, 100, seed=9))
    maps = {}
    for method in ("none", "crf", "slic"):
        cfg = PredictConfig.model_validate(
            {**CFG.model_dump(), "refine": method, "preview": False, "slic": {"size": 12}}
        )
        result = predict_scene(cnn, image, tmp_path / method, cfg)
        with rasterio.open(result.outputs["classes"]) as ds:
            maps[method] = ds.read(1)
    for method in ("crf", "slic"):
        changed = (maps[method] != maps["none"]).mean()
        assert 0.001 < changed < 0.5, (method, changed)


def test_ground_lengths_through_a_scene(cnn, tmp_path):
    """On a georeferenced scene, metres give exactly the pixels they convert to; on a scene
    without a CRS they are a one-line error and nothing is written."""
    import pytest
    from affine import Affine

    from tests.components.predictor.helpers import smooth_image
    from tests.rasters import write_raster

    img = smooth_image(4, 90, 100, seed=9)
    geo = write_raster(
        tmp_path / "geo.tif", img, crs="EPSG:32633", transform=Affine(20, 0, 4e5, 0, -20, 5e6)
    )
    maps = {}
    for name, crf_cfg in (
        ("px", {"bilateral_sxy": 8, "gaussian_sxy": 1}),
        ("m", {"bilateral_sxy": "160 m", "gaussian_sxy": "20 m"}),
    ):
        cfg = PredictConfig.model_validate(
            {**CFG.model_dump(), "refine": "crf", "preview": False, "crf": crf_cfg}
        )
        with rasterio.open(predict_scene(cnn, geo, tmp_path / name, cfg).outputs["classes"]) as ds:
            maps[name] = ds.read(1)
    np.testing.assert_array_equal(maps["px"], maps["m"])
    plain = write_raster(tmp_path / "plain.tif", img, crs=None)
    cfg = PredictConfig.model_validate(
        {**CFG.model_dump(), "refine": "slic", "preview": False, "slic": {"size": "100 m"}}
    )
    with pytest.raises(ConfigError, match="predict.slic.size = '100 m'.*not georeferenced"):
        predict_scene(cnn, plain, tmp_path / "plain", cfg)
    assert not list((tmp_path / "plain").glob("*.tif"))
