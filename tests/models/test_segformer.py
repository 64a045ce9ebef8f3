"""SegFormer's MiT encoder loads keras-hub MiT presets from a local folder (made here with
random weights, nothing downloaded), for any tile shape and band count."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from reseg.errors import ConfigError
from reseg.models import build_model, encoder_layers, mit
from reseg.models.backbones import adapt_input_conv

keras_hub = pytest.importorskip("keras_hub")

B0 = dict(
    layerwise_depths=[2, 2, 2, 2],
    num_layers=4,
    layerwise_num_heads=[1, 2, 5, 8],
    layerwise_sr_ratios=[8, 4, 2, 1],
    max_drop_path_rate=0.1,
    layerwise_patch_sizes=[7, 3, 3, 3],
    layerwise_strides=[4, 2, 2, 2],
    hidden_dims=[32, 64, 160, 256],
)


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A keras-hub MiT-B0 preset folder (random weights, 3 bands) and its backbone."""
    keras.utils.set_random_seed(3)
    hub = keras_hub.models.MiTBackbone(**B0, image_shape=(64, 64, 3))
    folder = tmp_path_factory.mktemp("mit_b0_preset")
    hub.save_to_preset(str(folder))
    return str(folder), hub


def _pyramid(hub):
    return keras.Model(hub.inputs, [hub.pyramid_outputs[f"P{i}"] for i in range(1, 5)])


def test_features_equal_keras_hub_backbone(preset):
    folder, hub = preset
    encoder = mit.build_encoder("mit_b0", 3, folder)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    want = _pyramid(hub).predict(x, verbose=0)
    got = encoder.predict(x, verbose=0)
    for w, g, stride in zip(want, got, (4, 8, 16, 32), strict=True):
        assert g.shape == (2, 64 // stride, 64 // stride, w.shape[-1])
        assert np.abs(w - g).max() <= 1e-4


def test_segformer_on_four_bands_adapts_the_first_convolution_and_takes_any_tile(preset):
    folder, hub = preset
    model = build_model("segformer", 5, 4, encoder_weights=folder, decoder_dim=16)
    kernel = hub.get_layer("patch_and_embed_0").proj.get_weights()[0]
    got = model.get_layer("encoder").get_layer("patch1_proj").get_weights()[0]
    np.testing.assert_allclose(got, adapt_input_conv(kernel, 4), rtol=1e-6)
    # keras-hub's own MiT takes square inputs of its build size only; this one does not
    y = model.predict(np.zeros((1, 96, 160, 4), "float32"), verbose=0)
    assert y.shape == (1, 96, 160, 5)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    assert [la.name for la in encoder_layers(model)] == ["encoder"]  # what the trainer freezes


def test_training_step_and_save_load(preset, tmp_path):
    folder, _ = preset
    model = build_model("segformer", 3, 3, encoder_weights=folder, decoder_dim=8, dropout=0.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 64, 64, 3)).astype("float32")
    y = (x[..., 0] > 0).astype("int32") + (x[..., 1] > 1).astype("int32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    before = [np.array(w) for w in model.get_layer("encoder").get_weights()]
    losses = [float(model.train_on_batch(x, y)) for _ in range(8)]
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < losses[0]
    after = model.get_layer("encoder").get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    path = tmp_path / "segformer.keras"
    model.save(path)
    again = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(
        again.predict(x[:1], verbose=0), model.predict(x[:1], verbose=0), atol=1e-5
    )


def test_bad_weights_are_one_line_naming_them(preset, tmp_path):
    folder, _ = preset
    missing = str(tmp_path / "no_such_preset")
    with pytest.raises(ConfigError, match=f"{missing}: no such folder"):
        build_model("segformer", 3, 3, encoder_weights=missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a keras-hub MiT preset folder") as err:
        build_model("segformer", 3, 3, encoder_weights=str(tmp_path / "empty"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"depths \[2, 2, 2, 2\] and widths .* not mit_b1"):
        build_model("segformer", 3, 3, encoder="mit_b1", encoder_weights=folder)
    other = tmp_path / "resnet"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"class_name": "ResNetBackbone", "config": {}}))
    with pytest.raises(ConfigError, match="ResNetBackbone, not of MiTBackbone"):
        build_model("segformer", 3, 3, encoder_weights=str(other))
