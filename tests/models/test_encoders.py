"""keras.applications encoders: dilation, stage taps and local weights for any band count."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reseg.models import build_model, training_model
from tests.models.tiny import batch

HEAD = dict(aspp_filters=8, low_level_filters=4, decoder_filters=8)


def _size(model: keras.Model, layer: str, x: np.ndarray) -> tuple[int, int]:
    return tuple(keras.Model(model.input, model.get_layer(layer).output)(x).shape[1:3])


@pytest.mark.parametrize(("encoder", "output_stride"), [("resnet50", 8), ("efficientnetb0", 16)])
def test_application_encoder_is_dilated_to_the_output_stride(encoder, output_stride):
    model = build_model(
        "deeplabv3plus", 3, 4, encoder=encoder, output_stride=output_stride, hdc=[1, 2, 5], **HEAD
    )
    x, _ = batch(4, 64, 32, n=1)
    assert np.asarray(model(x)).shape == (1, 64, 32, 3)
    assert _size(model, "encoder_c2", x) == (16, 8)
    assert _size(model, "encoder_c5", x) == (64 // output_stride, 32 // output_stride)
    assert all(la.name.startswith(("encoder_", "aspp_", "decoder_")) for la in model.layers[2:-3])
    rates = {la.dilation_rate[0] for la in model.layers if hasattr(la, "dilation_rate")}
    assert {1, 2, 5} <= rates


def test_local_weights_load_and_first_convolution_adapts_to_five_bands(tmp_path):
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(None, None, 3)
    )
    path = str(tmp_path / "mobilenetv2.weights.h5")
    source.save_weights(path)
    model = build_model("pspnet", 3, 5, encoder="mobilenetv2", encoder_weights=path)
    kernel = source.get_layer("Conv1").get_weights()[0]
    adapted = model.get_layer("encoder_Conv1").get_weights()[0]
    assert adapted.shape == (3, 3, 5, kernel.shape[-1])
    np.testing.assert_allclose(adapted, kernel[:, :, [0, 1, 2, 0, 1], :] * 3 / 5, rtol=1e-6)
    for name in ("block_16_project", "block_6_depthwise", "Conv_1_bn"):
        for got, want in zip(
            model.get_layer(f"encoder_{name}").get_weights(),
            source.get_layer(name).get_weights(),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)
    # output stride 8: the strided depthwise convolutions of c4 and c5 are dilated instead
    assert model.get_layer("encoder_block_6_depthwise").strides == (1, 1)
    assert model.get_layer("encoder_block_13_depthwise").dilation_rate == (4, 4)
    train, weights = training_model(model)
    x, _ = batch(5, 32, 32, n=1)
    assert [tuple(o.shape) for o in train(x)] == [(1, 32, 32, 3)] * 2 and weights == [1.0, 0.4]


def test_missing_weights_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        build_model("pspnet", 3, 4, encoder="mobilenetv2", encoder_weights=missing)
