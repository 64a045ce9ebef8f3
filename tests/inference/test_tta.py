"""Test-time augmentation over D4."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.config.predict import D4, PredictConfig
from reseg.errors import ConfigError
from reseg.inference.tta import forward, inverse, predict_tta
from reseg.serving import load_backend
from tests.components.predictor.helpers import smooth_image


def test_transforms_are_the_eight_distinct_elements_of_d4_and_invert():
    x = np.arange(2 * 4 * 4 * 1).reshape(2, 4, 4, 1)
    images = {t: forward(x, t) for t in D4}
    assert len({v.tobytes() for v in images.values()}) == 8
    for t in D4:
        np.testing.assert_array_equal(inverse(images[t], t), x)
    np.testing.assert_array_equal(forward(x, "rot90"), np.rot90(x, 1, axes=(1, 2)))
    np.testing.assert_array_equal(
        forward(x, "flip_rot180"), np.rot90(x[:, :, ::-1], 2, axes=(1, 2))
    )


def _batch(h=32, w=48):
    img = np.moveaxis(smooth_image(4, h, w, seed=3), 0, -1)[None]
    valid = np.ones(img.shape[:3], np.uint8)
    valid[0, :5, :7] = 0
    return img, valid


def test_tta_is_the_mean_of_back_transformed_predictions(cnn):
    img, valid = _batch()
    names = ("identity", "rot90", "flip", "flip_rot270")
    expected = np.mean([inverse(cnn(forward(img, t), forward(valid, t)), t) for t in names], axis=0)
    got = predict_tta(cnn, img, valid, names)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    # the CNN is not equivariant, so TTA changes something
    assert np.abs(got - cnn(img, valid)).max() > 1e-3


def test_tta_of_an_equivariant_model_equals_plain_prediction(px_dir):
    px = load_backend(px_dir)
    img, valid = _batch(40, 24)  # not square: rotations change the tile shape
    plain = px(img, valid)
    np.testing.assert_allclose(predict_tta(px, img, valid, D4), plain, atol=1e-6)


def test_tta_config_names_and_errors():
    assert PredictConfig().transforms == ("identity",)
    assert PredictConfig(tta="d4").transforms == D4
    assert PredictConfig(tta=["identity", "flip"]).transforms == ("identity", "flip")
    from reseg.config import parse_config

    raw = {"data": {"scenes": [{"image": "x.tif"}], "classes": [{"name": "a"}, {"name": "b"}]}}
    with pytest.raises(ConfigError, match="unknown tta transforms"):
        parse_config({**raw, "predict": {"tta": ["identity", "rot45"]}})
