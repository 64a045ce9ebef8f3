"""The registry's contract: names, parameter checks, strides, training models, config."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from reseg.config import parse_config
from reseg.config.model import ModelConfig
from reseg.errors import ConfigError
from reseg.models import (
    build_model,
    names,
    output_stride,
    parameters,
    params_class,
    training_model,
    unet,
    validate_params,
)
from reseg.models.segnet import Params as SegNetParams
from tests.models.tiny import TINY, batch, tiny_model


def test_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match=r"'vgg'.*'unet'"):
        build_model("vgg", 3, 4)
    with pytest.raises(ValueError, match=r"'vgg'.*'segnet'"):
        validate_params("vgg", {})


def test_unknown_parameter_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"\['widht'\].*'unet'.*Allowed: .*'base_filters'"):
        validate_params("unet", {"widht": 3})


@pytest.mark.parametrize(
    ("name", "params", "error", "message"),
    [
        ("unet", {"depth": 0}, ValueError, "Received: depth=0"),
        ("unet", {"depth": 2.5}, TypeError, "Received: depth=2.5"),
        ("unet", {"batch_norm": 1}, TypeError, "Received: batch_norm=1"),
        ("unet", {"dropout": 1.0}, ValueError, "Received: dropout=1.0"),
        ("cnn", {"kernel_size": 4}, ValueError, "Received: kernel_size=4"),
        ("fcn8s", {"base_filters": True}, TypeError, "Received: base_filters=True"),
        ("alexnet_fcn", {"width": -1}, ValueError, "Received: width=-1"),
        ("segnet", {"base_filters": "64"}, TypeError, "Received: base_filters='64'"),
        ("pspnet", {"output_stride": 32}, ValueError, r"\[8, 16\]. Received: output_stride=32"),
        ("pspnet", {"bins": []}, ValueError, r"must not be empty. Received: bins=\[\]"),
        ("pspnet", {"encoder": "vgg"}, ValueError, "Received: encoder='vgg'"),
        ("pspnet", {"encoder_weights": "w.h5"}, ValueError, "encoder='small'"),
        ("deeplabv3plus", {"encoder_widths": [8, 8]}, ValueError, "4 entries"),
        ("deeplabv3plus", {"atrous_rates": [6, 0]}, ValueError, r"atrous_rates=\[6, 0\]"),
        ("deeplabv3plus", {"hdc": [[1, 2], [1, 2]]}, ValueError, "2 patterns.*1 dilated"),
        ("deeplabv3plus", {"hdc": [1, "2"]}, ValueError, r"Received: hdc=\[1, '2'\]"),
    ],
)
def test_bad_values_say_what_was_received(name, params, error, message):
    with pytest.raises(error, match=message):
        validate_params(name, params)
    with pytest.raises(error, match=message):
        build_model(name, 3, 4, **params)


@pytest.mark.parametrize(
    ("num_classes", "bands", "message"),
    [(1, 4, "num_classes=1"), (3, 0, "bands=0"), (3, "4", "bands='4'")],
)
def test_bad_class_or_band_counts(num_classes, bands, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build_model("cnn", num_classes, bands)


def test_output_strides():
    assert output_stride("cnn") == 1
    assert output_stride("unet") == 16
    assert output_stride("unet", depth=3) == 8
    assert output_stride("segnet") == output_stride("fcn8s") == output_stride("alexnet_fcn") == 32
    assert output_stride("pspnet") == 8
    assert output_stride("deeplabv3plus") == 16
    assert output_stride("deeplabv3plus", output_stride=8) == 8


def test_parameters_are_the_builder_defaults():
    assert parameters("unet") == {
        "depth": 4,
        "base_filters": 32,
        "batch_norm": True,
        "dropout": 0.0,
        "encoder": "none",
        "encoder_weights": None,
        "encoder_bands": None,
        "encoder_depth": 5,
    }
    assert parameters("fcn8s") == parameters("fcn32s")
    assert "variant" not in parameters("fcn16s")


def test_training_model_of_pspnet_adds_the_auxiliary_head():
    model = tiny_model("pspnet", 3)
    train, weights = training_model(model)
    assert weights == [1.0, 0.4]
    assert training_model(model)[0] is train
    assert len(model.outputs) == 1 and len(train.outputs) == 2
    assert not any(la.name.startswith("aux_") for la in model.layers)
    aux = [la for la in train.layers if la.name.startswith("aux_")]
    assert aux and {la.name for la in train.layers} - {la.name for la in aux} == {
        la.name for la in model.layers
    }
    x, _ = batch(3, 32, 64)
    main, aux_probs = (np.asarray(t) for t in train(x))
    np.testing.assert_allclose(main, np.asarray(model(x)), atol=1e-6)
    assert aux_probs.shape == main.shape


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus"])
def test_training_model_of_other_models_is_the_model(name):
    model = tiny_model(name, 3)
    assert training_model(model) == (model, [1.0])


def _feature_size(model: keras.Model, layer: str, x: np.ndarray) -> tuple[int, int]:
    return tuple(keras.Model(model.input, model.get_layer(layer).output)(x).shape[1:3])


def test_dilated_encoders_keep_the_output_stride():
    x, _ = batch(3, 64, 32, n=1)
    psp = tiny_model("pspnet", 3)
    assert _feature_size(psp, "encoder_c2", x) == (16, 8)
    assert _feature_size(psp, "encoder_c5", x) == (8, 4)
    deeplab = tiny_model("deeplabv3plus", 3)
    assert _feature_size(deeplab, "encoder_c4", x) == (4, 2)
    assert _feature_size(deeplab, "encoder_c5", x) == (4, 2)


def test_hdc_cycles_rates_through_the_dilated_stages():
    model = build_model(
        "deeplabv3plus", 3, 4, **{**TINY["deeplabv3plus"], "output_stride": 8, "hdc": [1, 2, 5]}
    )
    rates = {
        la.name: la.dilation_rate[0]
        for la in model.layers
        if la.name.startswith("encoder_c") and la.name.endswith("_conv")
        and la.kernel_size == (3, 3)
    }  # fmt: skip
    assert rates["encoder_c3_block1_1_conv"] == 1
    assert [rates[f"encoder_c4_block1_{i}_conv"] for i in (1, 2)] == [1, 2]
    assert [rates[f"encoder_c5_block1_{i}_conv"] for i in (1, 2)] == [1, 2]
    nominal = build_model("deeplabv3plus", 3, 4, **{**TINY["deeplabv3plus"], "output_stride": 8})
    assert nominal.get_layer("encoder_c4_block1_2_conv").dilation_rate == (2, 2)
    assert nominal.get_layer("encoder_c5_block1_2_conv").dilation_rate == (4, 4)
    assert nominal.get_layer("aspp_rate24_conv").dilation_rate == (24, 24)


def test_model_config_checks_name_and_params():
    assert ModelConfig().name == "unet"
    assert ModelConfig().params == unet.Params()
    segnet = ModelConfig(name="segnet", params={"base_filters": 16})
    assert segnet.params == SegNetParams(base_filters=16) and segnet.params.dropout == 0.0
    with pytest.raises(ValidationError, match="unknown model 'vgg'"):
        ModelConfig(name="vgg")
    with pytest.raises(ValidationError, match=r"params\.depth\s+must be >= 1"):
        ModelConfig(name="unet", params={"depth": 0})
    with pytest.raises(ValidationError, match=r"must be a bool"):
        ModelConfig(name="unet", params={"batch_norm": "yes"})


def test_pipeline_config_reports_a_bad_model_parameter(tmp_path):
    raw = {
        "data": {
            "scenes": [{"image": str(tmp_path / "a.tif")}],
            "classes": [{"name": "a"}, {"name": "b"}],
        },
        "model": {"name": "pspnet", "params": {"pyramid": [1, 2]}},
    }
    with pytest.raises(ConfigError, match=r"model\.params\.pyramid: unknown parameter.*'bins'"):
        parse_config(raw)


@pytest.mark.parametrize("name", names())
def test_the_default_params_of_every_entry_build_its_model(name):
    params = params_class(name)()
    model = build_model(name, 3, 4, params)
    assert model.name == name
    assert model.get_layer("stride_check").multiple == params.output_stride == output_stride(name)
    size = max(params.output_stride, 32)
    probs = np.asarray(model(np.zeros((1, size, size, 4), "float32")))
    assert probs.shape == (1, size, size, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_a_model_built_from_config_params_saves_and_reloads(tmp_path):
    params = {**TINY["deeplabv3plus"], "output_stride": 8, "hdc": [1, 2]}
    cfg = parse_config(
        {
            "data": {"scenes": [{"image": "a.tif"}], "classes": [{"name": "a"}, {"name": "b"}]},
            "model": {"name": "deeplabv3plus", "params": params},
        }
    )
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model.name, 3, 4, cfg.model.params)
    keras.utils.set_random_seed(0)
    as_kwargs = build_model(cfg.model.name, 3, 4, **cfg.model.params)  # as the trainer calls it
    assert [la.get_config() for la in as_kwargs.layers] == [la.get_config() for la in model.layers]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True, compile=False)
    x, _ = batch(4, 32, 64)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    assert loaded.get_layer("stride_check").multiple == output_stride(
        cfg.model.name, cfg.model.params
    )
    assert loaded.get_layer("encoder_c5_block1_2_conv").dilation_rate == (2, 2)
    assert loaded.get_layer("aspp_rate24_conv").dilation_rate == (24, 24)
