"""U-Net on a backbone: feature pyramid, local weights, band adaptation, clear weight errors.

Weights files are made here by saving randomly initialised backbones (nothing is downloaded).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from reseg.errors import ConfigError
from reseg.model_params import validate_params
from reseg.models import backbones, build_model, output_stride, resnet
from tests.models.tiny import batch

TINY = dict(base_filters=4)


def _weights_file(tmp_path, name: str, bands: int = 3) -> tuple[str, keras.Model]:
    keras.utils.set_random_seed(1)
    source = backbones.build_backbone(name, bands)
    path = str(tmp_path / f"{name}_{bands}.weights.h5")
    source.save_weights(path)
    return path, source


@pytest.mark.parametrize(("name", "channels"), [("resnet18", 512), ("resnet50_torchvision", 2048)])
def test_torchvision_resnet_pyramid_has_strides_2_to_32(name, channels):
    encoder = resnet.build(name, 4)
    x, _ = batch(4, 64, 32, n=1)
    shapes = [tuple(f.shape) for f in encoder(x)]
    assert [s[1:3] for s in shapes] == [(32, 16), (16, 8), (8, 4), (4, 2), (2, 1)]
    assert shapes[-1][-1] == channels and shapes[0][-1] == 64
    # torchvision's state-dict names, "." as "_"
    assert {"conv1", "bn1", "layer1_0_conv1", "layer2_0_downsample_0"} <= {
        la.name for la in encoder.layers
    }


def test_unet_on_resnet18_decodes_every_stride_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model("unet", 3, 4, encoder="resnet18", **TINY)
    assert output_stride("unet", encoder="resnet18") == 32
    assert output_stride("unet", encoder="resnet18", encoder_depth=3) == 8
    assert output_stride("unet") == 16  # the plain U-Net stays the default
    x, _ = batch(4, 64, 32, n=2)
    y = np.asarray(model(x))
    assert y.shape == (2, 64, 32, 3)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    assert isinstance(model.get_layer("encoder"), keras.Model)
    # one decoder level per stride 32 -> 1, widths base_filters * 2**level
    assert [model.get_layer(f"dec{i}_2_conv").filters for i in (5, 4, 3, 2, 1)] == [
        64,
        32,
        16,
        8,
        4,
    ]
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(again(x)), y)


def test_a_three_band_weights_file_adapts_the_first_convolution_to_five_bands(tmp_path, caplog):
    path, source = _weights_file(tmp_path, "resnet18")
    with caplog.at_level(logging.INFO, logger="reseg.models.backbones"):
        model = build_model("unet", 3, 5, encoder="resnet18", encoder_weights=path, **TINY)
    encoder = model.get_layer("encoder")
    kernel = source.get_layer("conv1").get_weights()[0]
    adapted = encoder.get_layer("conv1").get_weights()[0]
    assert adapted.shape == (7, 7, 5, 64)
    np.testing.assert_allclose(adapted, kernel[:, :, [0, 1, 2, 0, 1], :] * 3 / 5, rtol=1e-6)
    for name in ("layer4_1_conv2", "layer3_0_downsample_1", "bn1"):
        for got, want in zip(
            encoder.get_layer(name).get_weights(), source.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want)
    assert "conv1 adapted from 3 to 5 bands" in caplog.text


def test_a_weights_file_of_the_scenes_band_count_loads_as_is(tmp_path):
    path, source = _weights_file(tmp_path, "resnet18", bands=4)
    encoder = backbones.build_backbone("resnet18", 4, path)
    x, _ = batch(4, 32, 32, n=1)
    for got, want in zip(encoder(x), source(x), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_adapt_input_conv_follows_timm():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 2)).astype("float32")
    grey = backbones.adapt_input_conv(kernel, 1)
    np.testing.assert_allclose(grey[:, :, 0], kernel.sum(2), rtol=1e-6)
    six = backbones.adapt_input_conv(kernel, 6)
    # a constant image over six bands gives the activation of the constant RGB image
    np.testing.assert_allclose(six.sum(2), kernel.sum(2), rtol=1e-5)
    assert backbones.adapt_input_conv(kernel, 3) is kernel
    assert six.dtype == kernel.dtype


def test_keras_applications_resnet50_loads_a_local_file_for_four_bands(tmp_path):
    app = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    path = str(tmp_path / "resnet50.weights.h5")
    app.save_weights(path)
    model = build_model("unet", 3, 4, encoder="resnet50", encoder_weights=path, **TINY)
    encoder = model.get_layer("encoder")
    kernel = app.get_layer("conv1_conv").get_weights()[0]
    got = encoder.get_layer("conv1_conv").get_weights()[0]
    np.testing.assert_allclose(got, kernel[:, :, [0, 1, 2, 0], :] * 3 / 4, rtol=1e-6)
    np.testing.assert_array_equal(
        encoder.get_layer("conv5_block3_3_conv").get_weights()[0],
        app.get_layer("conv5_block3_3_conv").get_weights()[0],
    )
    x, _ = batch(4, 32, 32, n=1)
    assert np.asarray(model(x)).shape == (1, 32, 32, 3)


def test_a_missing_or_foreign_weights_file_is_one_config_error_line_naming_it(tmp_path):
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(ConfigError, match=r"nope\.weights\.h5: no such file"):
        build_model("unet", 3, 4, encoder="resnet18", encoder_weights=missing)
    other, _ = _weights_file(tmp_path, "resnet34")
    for bands in (3, 4):
        with pytest.raises(ConfigError) as err:
            build_model("unet", 3, bands, encoder="resnet18", encoder_weights=other)
        message = str(err.value)
        assert "resnet34_3.weights.h5 is not a weights file of encoder resnet18" in message
        assert "\n" not in message


def test_weights_rules_are_checked_with_the_config():
    with pytest.raises(ValueError, match="encoder_weights needs an encoder"):
        validate_params("unet", {"encoder_weights": "w.h5"})
    with pytest.raises(ValueError, match="reseg weights convert"):
        validate_params("unet", {"encoder": "resnet18", "encoder_weights": "imagenet"})
    assert validate_params("unet", {"encoder": "resnet50", "encoder_weights": "imagenet"})


def test_bfloat16_reaches_the_nested_encoder():
    from reseg.models.precision import model_policy, with_precision

    keras.utils.set_random_seed(0)
    model = build_model("unet", 3, 4, encoder="resnet18", encoder_depth=3, **TINY)
    fast = with_precision(model, "bfloat16")
    assert model_policy(fast) == "mixed_bfloat16"
    assert fast.get_layer("encoder").get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("encoder").get_layer("conv1").dtype_policy.name == "float32"
    x, _ = batch(4, 32, 32, n=1)
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(model(x)), atol=0.03)


def _with_band_order(path: str, order: list[str]) -> None:
    import json

    with open(backbones.sidecar(path), "w", encoding="utf-8") as f:
        json.dump({"encoder": "resnet18", "bands": len(order), "band_order": order}, f)


def test_multispectral_weights_meet_the_scenes_bands_by_name(tmp_path, caplog):
    """Weights made for B02, B03, B04, B08 on a scene of B08, b04 and B11: each scene band takes
    its own channel (case-insensitive), B11 the mean; every other layer loads as saved."""
    path, source = _weights_file(tmp_path, "resnet18", bands=4)
    _with_band_order(path, ["B02", "B03", "B04", "B08"])
    with caplog.at_level(logging.INFO, logger="reseg.models.backbones"):
        model = build_model(
            "unet", 3, 3, encoder="resnet18", encoder_weights=path,
            encoder_bands=["B08", "b04", "B11"], **TINY,
        )  # fmt: skip
    kernel = source.get_layer("conv1").get_weights()[0]
    got = model.get_layer("encoder").get_layer("conv1").get_weights()[0]
    np.testing.assert_array_equal(got[:, :, 0], kernel[:, :, 3])
    np.testing.assert_array_equal(got[:, :, 1], kernel[:, :, 2])
    np.testing.assert_allclose(got[:, :, 2], kernel.mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(
        model.get_layer("encoder").get_layer("layer4_1_conv2").get_weights()[0],
        source.get_layer("layer4_1_conv2").get_weights()[0],
    )
    assert "mapped by band name: B08<-B08, b04<-B04, B11<-mean" in caplog.text


def test_band_names_need_a_recorded_order_and_the_scenes_count(tmp_path):
    path, _ = _weights_file(tmp_path, "resnet18", bands=4)
    with pytest.raises(ConfigError, match="records no band order") as err:
        backbones.build_backbone("resnet18", 2, path, ["B04", "B08"])
    assert "\n" not in str(err.value)
    _with_band_order(path, ["B02", "B03", "B04", "B08"])
    with pytest.raises(ConfigError, match="names 2 bands but the scenes have 3"):
        backbones.build_backbone("resnet18", 3, path, ["B04", "B08"])
    with pytest.raises(ValueError, match="set encoder_weights too"):
        validate_params("unet", {"encoder": "resnet18", "encoder_bands": ["B04"]})


def test_map_input_conv_keeps_matched_channels_unscaled():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 2)).astype("float32")
    out, notes = backbones.map_input_conv(kernel, ["a", "b", "c", "d"], ["d", "a"])
    np.testing.assert_array_equal(out, kernel[:, :, [3, 0], :])
    assert notes == ["d<-d", "a<-a"] and out.dtype == kernel.dtype
