"""DenseCRF and SLIC refinement, per tile and through a whole scene."""

from __future__ import annotations

import numpy as np
import rasterio

from reseg.artifacts import ModelInfo
from reseg.components.predictor import predict_scene
from reseg.components.predictor.refine import crf, rgb_indexes, slic, to_uint8
from reseg.config import PredictConfig
from reseg.config.predict import CrfConfig, SlicConfig
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
    q = crf(probs, rgb, CrfConfig(iterations=5))
    assert q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(-1), 1, atol=1e-4)
    before = (probs.argmax(-1) == truth).mean()
    after = (q.argmax(-1) == truth).mean()
    assert before < 0.75 and after > 0.97


def test_slic_averages_probabilities_within_superpixels():
    truth, rgb, probs = _two_halves(1)
    out = slic(probs, rgb, SlicConfig(n_segments=12, compactness=10))
    np.testing.assert_allclose(out.sum(-1), 1, atol=1e-5)
    from skimage.segmentation import slic as sk_slic

    seg = sk_slic(rgb, n_segments=12, compactness=10, sigma=1.0, start_label=0, channel_axis=-1)
    for s in np.unique(seg):
        inside = out[seg == s]
        np.testing.assert_allclose(inside, inside[:1].repeat(len(inside), 0), atol=1e-6)
        np.testing.assert_allclose(inside[0], probs[seg == s].mean(0), atol=1e-6)
    assert (out.argmax(-1) == truth).mean() > 0.95


def test_uint8_picture_for_refinement():
    assert rgb_indexes(INFO, None) == (0, 1, 2) and rgb_indexes(INFO, [4, 3, 2]) == (3, 2, 1)
    raw = np.array([[[500, 1000, 1500, 9]]], np.uint16)  # mean - 2.5 std, mean, mean + 2.5 std
    np.testing.assert_array_equal(to_uint8(raw, INFO, (0, 1, 2)), [[[0, 127, 255]]])
    u8 = np.array([[[1, 2, 3, 4]]], np.uint8)
    np.testing.assert_array_equal(to_uint8(u8, INFO, (3, 2, 1)), [[[4, 3, 2]]])


def test_refinement_runs_through_a_scene_window_by_window(cnn, tmp_path):
    from tests.components.predictor.helpers import smooth_image
    from tests.rasters import write_raster

    image = write_raster(tmp_path / "s.tif", smooth_image(4, 90, 100, seed=9))
    maps = {}
    for method in ("none", "crf", "slic"):
        cfg = PredictConfig.model_validate(
            {**CFG.model_dump(), "refine": method, "preview": False, "slic": {"n_segments": 30}}
        )
        result = predict_scene(cnn, image, tmp_path / method, cfg)
        with rasterio.open(result.outputs["classes"]) as ds:
            maps[method] = ds.read(1)
    for method in ("crf", "slic"):
        changed = (maps[method] != maps["none"]).mean()
        assert 0.001 < changed < 0.5, (method, changed)
