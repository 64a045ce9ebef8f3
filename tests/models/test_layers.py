"""Custom layers against TensorFlow's reference ops, and their configs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from reseg.models.layers import (
    AdaptiveAveragePool2D,
    BilinearKernel,
    BilinearUpsample,
    InputSizeCheck,
    MaxPoolingWithArgmax2D,
    MaxUnpooling2D,
    ResizeToMatch,
)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype("float32")


@pytest.mark.parametrize("size", [(32, 48), (5, 7), (8, 12), (3, 20)])
def test_resize_matches_tf_image_resize_bilinear(images, size):
    reference = np.zeros((1, *size, 1), "float32")
    got = np.asarray(ResizeToMatch()([images, reference]))
    expected = tf.image.resize(images, size, method="bilinear").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_upsample_by_factor(images):
    got = np.asarray(BilinearUpsample(4)(images))
    expected = tf.image.resize(images, (32, 48), method="bilinear").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("bins", [1, 2, 3, 5])
def test_adaptive_pooling_averages_pytorch_style_bins(images, bins):
    got = np.asarray(AdaptiveAveragePool2D(bins)(images))
    assert got.shape == (2, bins, bins, 3)
    h, w = images.shape[1:3]
    for i in range(bins):
        for j in range(bins):
            rows = slice(i * h // bins, -(-(i + 1) * h // bins))
            cols = slice(j * w // bins, -(-(j + 1) * w // bins))
            np.testing.assert_allclose(
                got[:, i, j], images[:, rows, cols].mean(axis=(1, 2)), atol=1e-5
            )


def test_unpooling_puts_maxima_back_where_they_were(images):
    pooled, indices = MaxPoolingWithArgmax2D(2)(images)
    np.testing.assert_array_equal(
        np.asarray(pooled), tf.nn.max_pool2d(images, 2, 2, "VALID").numpy()
    )
    assert np.asarray(indices).dtype == np.int32
    assert np.asarray(indices).min() >= 0 and np.asarray(indices).max() <= 3
    unpooled = np.asarray(MaxUnpooling2D(2)([pooled, indices]))
    window_max = np.repeat(np.repeat(np.asarray(pooled), 2, axis=1), 2, axis=2)
    is_max = images == window_max
    np.testing.assert_array_equal(unpooled[is_max], images[is_max])
    np.testing.assert_array_equal(unpooled[~is_max], 0.0)
    assert (unpooled != 0).sum() == np.asarray(pooled).size


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_transposed_convolution_interpolates(factor):
    """FCN's upsampling: kernel 2f, stride f, "same" padding = bilinear resize inside."""
    x = np.random.default_rng(1).normal(size=(1, 6, 6, 2)).astype("float32")
    up = keras.layers.Conv2DTranspose(
        2, 2 * factor, strides=factor, padding="same", use_bias=False,
        kernel_initializer=BilinearKernel(),
    )  # fmt: skip
    got = np.asarray(up(x))
    expected = tf.image.resize(x, (6 * factor, 6 * factor), method="bilinear").numpy()
    inner = slice(factor, 5 * factor)  # borders differ: zero padding vs clamping
    np.testing.assert_allclose(got[:, inner, inner], expected[:, inner, inner], atol=1e-5)


def test_size_check_names_stride_and_both_sizes():
    check = InputSizeCheck(16, model_name="unet")
    assert check(np.zeros((1, 32, 48, 1), "float32")).shape == (1, 32, 48, 1)
    with pytest.raises(ValueError, match=r"'unet'.*stride 16.*height=32, width=40"):
        check(np.zeros((1, 32, 40, 1), "float32"))


@pytest.mark.parametrize(
    "layer",
    [
        InputSizeCheck(8, model_name="x", name="a"),
        BilinearUpsample(4, name="b"),
        ResizeToMatch(name="c"),
        AdaptiveAveragePool2D(6, name="d"),
        MaxPoolingWithArgmax2D(3, name="e"),
        MaxUnpooling2D(3, name="f"),
    ],
    ids=lambda la: type(la).__name__,
)
def test_config_round_trip(layer):
    config = layer.get_config()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is type(layer)
    assert again.get_config() == config


def test_initializer_is_registered():
    init = keras.initializers.get(keras.saving.serialize_keras_object(BilinearKernel()))
    assert isinstance(init, BilinearKernel)
