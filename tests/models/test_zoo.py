"""Every registry entry: shapes, a training step, save/load, size errors, layer names."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from reseg.models import build_model, names, output_stride, training_model
from tests.models.tiny import NUM_CLASSES, TINY, batch, tiny_model

NAMES = names()


def test_every_entry_has_a_tiny_config():
    assert sorted(TINY) == sorted(NAMES)
    assert len(NAMES) == 10


@pytest.mark.parametrize("bands", [3, 5])
@pytest.mark.parametrize("name", NAMES)
def test_output_is_softmax_at_input_resolution(name, bands):
    model = tiny_model(name, bands)
    assert model.name == name
    assert model.input.shape == (None, None, None, bands)
    for height, width in [(32, 32), (64, 96)]:
        x, _ = batch(bands, height, width)
        probs = np.asarray(model(x, training=False))
        assert probs.shape == (2, height, width, NUM_CLASSES)
        assert probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_traces_with_unknown_height_and_width(name):
    """The serving signature has no sizes: every layer must trace with None H and W,
    and a size that is not a multiple of the output stride fails at run time."""
    model = tiny_model(name, 5)
    fn = tf.function(model, input_signature=[tf.TensorSpec([None, None, None, 5], tf.float32)])
    x, _ = batch(5, 64, 32, n=1)
    np.testing.assert_allclose(fn(x).numpy(), np.asarray(model(x)), atol=1e-5)
    stride = output_stride(name, **TINY[name])
    if stride > 1:
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"output stride {stride}"):
            fn(x[:, : stride + 2])


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_lowers_the_loss(name):
    model = tiny_model(name, 3)
    train, weights = training_model(model)
    train.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=[keras.losses.SparseCategoricalCrossentropy()] * len(weights),
        loss_weights=weights,
        run_eagerly=True,  # tracing the train step costs 10-30 s per model here
    )
    x, y = batch(3, 32, 32, n=4, seed=1)
    targets = [y] * len(weights)
    # train_on_batch returns the loss of the forward pass before its update, so the
    # second call reports the loss after exactly one step, on the same batch.
    before = train.train_on_batch(x, targets)
    after = train.train_on_batch(x, targets)
    before, after = np.ravel(before)[0], np.ravel(after)[0]
    assert np.isfinite(before) and after < before


@pytest.mark.parametrize("name", NAMES)
def test_save_and_reload_give_identical_outputs(name, tmp_path):
    model = tiny_model(name, 5)
    x, _ = batch(5, 64, 64, seed=2)
    expected = np.asarray(model(x, training=False))
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert reloaded.name == name
    np.testing.assert_array_equal(np.asarray(reloaded(x, training=False)), expected)
    _, weights = training_model(reloaded)
    assert weights == training_model(model)[1]


@pytest.mark.parametrize("name", [n for n in NAMES if output_stride(n, **TINY[n]) > 1])
def test_size_not_multiple_of_stride_is_refused_naming_both(name):
    model = tiny_model(name, 3)
    stride = output_stride(name, **TINY[name])
    x, _ = batch(3, stride + 2, stride, n=1)
    with pytest.raises(ValueError, match=rf"output stride {stride}\b.*height={stride + 2}"):
        model(x)


def _auto_name(layer: keras.layers.Layer) -> bool:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()
    return re.fullmatch(rf"{snake}(_\d+)?", layer.name) is not None


@pytest.mark.parametrize("name", NAMES)
def test_every_layer_is_named(name):
    train, _ = training_model(tiny_model(name, 3))
    unnamed = [la.name for la in train.layers if _auto_name(la)]
    assert not unnamed
    assert len({la.name for la in train.layers}) == len(train.layers)


BAD_ARGUMENT = {
    "cnn": ({"depth": -2}, "Received: depth=-2"),
    "alexnet_fcn": ({"fc_filters": 0}, "Received: fc_filters=0"),
    "fcn32s": ({"fc_kernel": "7"}, "Received: fc_kernel='7'"),
    "fcn16s": ({"dropout": 1.5}, "Received: dropout=1.5"),
    "fcn8s": ({"batch_norm": None}, "Received: batch_norm=None"),
    "unet": ({"base_filters": 0}, "Received: base_filters=0"),
    "segnet": ({"base_filters": 8.0}, "Received: base_filters=8.0"),
    "pspnet": ({"bins": [1, 0]}, r"Received: bins=\[1, 0\]"),
    "deeplabv3plus": ({"output_stride": 4}, "Received: output_stride=4"),
    "segformer": ({"encoder": "mit_b9"}, "Received: encoder='mit_b9'"),
}


@pytest.mark.parametrize("name", NAMES)
def test_bad_argument_says_what_was_received(name):
    params, message = BAD_ARGUMENT[name]
    with pytest.raises((ValueError, TypeError), match=message):
        build_model(name, NUM_CLASSES, 3, **params)
    with pytest.raises(ValueError, match=rf"\['colour'\].*{name}"):
        build_model(name, NUM_CLASSES, 3, colour=1)
