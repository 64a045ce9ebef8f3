"""FCN's VGG-16 loads keras.applications VGG16 weights from a local file (random weights saved
here, nothing downloaded), as the FCN paper fine-tunes a classification network."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reseg.errors import ConfigError
from reseg.models import build_model, encoder_layers
from reseg.models.backbones import adapt_input_conv

PAPER = dict(base_filters=64, batch_norm=False, fc_filters=16, fc_kernel=1, dropout=0.0)


@pytest.fixture(scope="module")
def vgg16(tmp_path_factory):
    keras.utils.set_random_seed(5)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path_factory.mktemp("vgg16") / "vgg16_notop.weights.h5"
    vgg.save_weights(path)
    return str(path), vgg


def test_pool5_equals_keras_vgg16_and_the_blocks_are_the_encoder(vgg16):
    path, vgg = vgg16
    model = build_model("fcn8s", 4, 3, encoder_weights=path, **PAPER)
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    pool5 = keras.Model(model.input, model.get_layer("pool5").output)
    got, want = pool5.predict(x, verbose=0), vgg.predict(x, verbose=0)
    assert got.shape == want.shape == (1, 2, 2, 512)
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    names = {la.name for la in encoder_layers(model)}
    assert {"conv1_1_conv", "conv5_3_conv"} <= names and "fc6_conv" not in names


def test_five_bands_adapt_conv1_1(vgg16):
    path, vgg = vgg16
    model = build_model("fcn32s", 3, 5, encoder_weights=path, **PAPER)
    kernel, bias = vgg.get_layer("block1_conv1").get_weights()
    got = model.get_layer("conv1_1_conv").get_weights()
    np.testing.assert_allclose(got[0], adapt_input_conv(kernel, 5), rtol=1e-6)
    np.testing.assert_array_equal(got[1], bias)
    assert model.predict(np.zeros((1, 32, 64, 5), "float32"), verbose=0).shape == (1, 32, 64, 3)


def test_bad_weights_and_widths_are_one_line(vgg16, tmp_path):
    path, _ = vgg16
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(ConfigError, match=f"{missing}: no such file"):
        build_model("fcn16s", 3, 3, encoder_weights=missing, **PAPER)
    other = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    wrong = str(tmp_path / "mobilenet.weights.h5")
    other.save_weights(wrong)
    with pytest.raises(ConfigError, match="not a weights file of keras.applications.VGG16") as err:
        build_model("fcn16s", 3, 3, encoder_weights=wrong, **PAPER)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="need base_filters=64 and batch_norm=false"):
        build_model("fcn8s", 3, 3, encoder_weights=path)  # the default half-width VGG
