"""Batch norm folded into convolutions: same predictions, no batch norm left, reloadable."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reseg.models import fold_batch_norm
from tests.models.tiny import batch, tiny_model


# Every builder makes its conv -> BN pairs with `blocks.conv_bn_relu`; these four cover
# plain stacks, argmax unpooling, pyramid pooling and ASPP around them.
@pytest.mark.parametrize("name", ["unet", "segnet", "pspnet", "deeplabv3plus"])
def test_folded_model_predicts_the_same(name, tmp_path):
    model = keras.models.clone_model(tiny_model(name, 3))
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial statistics, so a wrong fold shows
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, mean, var = layer.get_weights()
            layer.set_weights(
                [rng.uniform(0.5, 2, g.shape), rng.normal(size=b.shape),
                 rng.normal(size=mean.shape), rng.uniform(0.5, 2, var.shape)]
            )  # fmt: skip
    folded = fold_batch_norm(model)
    assert folded.name == model.name
    assert not [la for la in folded.layers if isinstance(la, keras.layers.BatchNormalization)]
    x, _ = batch(3, 64, 32)
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(folded(x)), expected, atol=1e-4)
    if name == "segnet":  # one round trip of a folded model is enough
        folded.save(tmp_path / "f.keras")
        reloaded = keras.models.load_model(tmp_path / "f.keras", safe_mode=True)
        np.testing.assert_array_equal(np.asarray(reloaded(x)), np.asarray(folded(x)))
