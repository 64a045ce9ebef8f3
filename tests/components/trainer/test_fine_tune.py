"""Fine-tuning a pretrained encoder: frozen epochs (batch norm kept) and the learning-rate multiplier.

The "pretrained" encoder is a randomly initialised ResNet-18 saved here; tiles are the
session's synthetic 32-pixel tiles (3 bands).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reseg.errors import ConfigError
from reseg.models import backbones
from tests.components.roots import train
from tests.components.trainer.tiles import config

OFF = {"enabled": False}


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> tuple[str, keras.Model]:
    keras.utils.set_random_seed(7)
    encoder = backbones.build_backbone("resnet18", 3)
    path = str(tmp_path_factory.mktemp("weights") / "resnet18.weights.h5")
    encoder.save_weights(path)
    return path, encoder


def _unet(path: str) -> dict:
    return {
        "name": "unet",
        "params": {"encoder": "resnet18", "encoder_weights": path, "base_filters": 4},
    }


def _trained_encoder(root, path, **train_options) -> keras.Model:
    cfg = config(
        root,
        model=_unet(path),
        train={"steps_per_epoch": 1, "deterministic": True, "seed": 3, **train_options},
        tracking=OFF,
    )
    out = train(cfg, root, fold=None)
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    return model.get_layer("encoder")


def _fresh_root(tmp_path, tiled, name: str):
    root = tmp_path / name
    root.mkdir()
    for part in ("tiles", "stats"):
        (root / part).symlink_to(tiled[0] / part, target_is_directory=True)
    return root


def test_a_frozen_encoder_keeps_its_weights_and_batch_norm_statistics(
    tmp_path, tiled, encoder_file
):
    path, initial = encoder_file
    frozen = _trained_encoder(
        _fresh_root(tmp_path, tiled, "frozen"), path, epochs=1, freeze_encoder_epochs=1
    )
    for layer in initial.layers:
        for got, want in zip(
            frozen.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want)  # kernels, moving means and variances
    assert frozen.trainable  # saved trainable, so a later round fine-tunes it
    # frozen for the first epoch only: the second trains it, batch norm statistics included
    thawed = _trained_encoder(
        _fresh_root(tmp_path, tiled, "thawed"), path, epochs=2, freeze_encoder_epochs=1
    )
    for name in ("conv1", "bn1", "layer4_1_conv2"):
        for got, want in zip(
            thawed.get_layer(name).get_weights(), initial.get_layer(name).get_weights(), strict=True
        ):
            assert np.abs(got - want).max() > 1e-6, name


def test_the_encoder_learning_rate_multiplier_scales_its_update_exactly(
    tmp_path, tiled, encoder_file
):
    path, initial = encoder_file
    deltas = {}
    for m in (1.0, 0.1):
        root = _fresh_root(tmp_path, tiled, str(m))
        encoder = _trained_encoder(root, path, epochs=1, encoder_lr_multiplier=m)
        deltas[m] = {
            v.path: np.asarray(v) - np.asarray(w)
            for v, w in zip(encoder.trainable_weights, initial.trainable_weights, strict=True)
        }
    moved = 0
    for key, full in deltas[1.0].items():
        np.testing.assert_allclose(deltas[0.1][key], 0.1 * full, atol=1e-6, err_msg=key)
        moved += bool(np.abs(full).max() > 1e-4)
    assert moved > len(deltas[1.0]) // 2  # Adam moved (nearly) every encoder weight


def test_fine_tuning_options_need_a_model_with_an_encoder(root):
    cfg = config(
        root,
        model={"name": "unet", "params": {"depth": 2, "base_filters": 4}},
        train={"freeze_encoder_epochs": 1},
        tracking=OFF,
    )
    with pytest.raises(ConfigError, match="model.params.encoder"):
        train(cfg, root, fold=None)
