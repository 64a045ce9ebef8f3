"""`train.precision`: mixed bfloat16 / float16 training, loss scaling, a float32 saved model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reseg import layout
from reseg.components.trainer.loop import make_optimizer
from reseg.config.train import TrainConfig
from tests.components.roots import train
from tests.components.trainer.test_train import OFF, TINY, UNET
from tests.components.trainer.tiles import config


def _load(out):
    import keras

    import reseg.models  # noqa: F401

    return keras.models.load_model(out / "model.keras", safe_mode=True, compile=False)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_and_saves_a_float32_model(root, precision):
    from reseg.models.precision import model_policy

    cfg = config(root, model=UNET, train={"epochs": 2, "precision": precision}, tracking=OFF)
    out = train(cfg, root, fold=1)
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and 0 <= h["val_miou"] <= 1 for h in history)
    model = _load(out)
    assert model_policy(model) == "float32"
    probs = np.asarray(model(np.zeros((1, 32, 32, 3), np.float32)))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-4)
    # the next round fine-tunes the float32 model under the mixed policy again
    cfg1 = config(
        root, model=UNET, train={"epochs": 1, "precision": "mixed_bfloat16"}, tracking=OFF
    )
    out1 = train(cfg1, root, fold=1, round=1, init_model=out)
    assert out1.path == layout.model_dir(root, 1, 1)
    assert model_policy(_load(out1)) == "float32"


def test_pspnet_trains_its_auxiliary_head_in_bfloat16(root):
    model = {"name": "pspnet", "params": TINY["pspnet"]}
    cfg = config(
        root,
        model=model,
        train={"steps_per_epoch": 2, "precision": "mixed_bfloat16"},
        tracking=OFF,
    )
    out = train(cfg, root, fold=None)
    history = json.loads((out / "history.json").read_text())
    assert np.isfinite(history[-1]["loss"])


def test_float16_training_scales_the_loss_and_bfloat16_does_not():
    import keras

    opt16 = make_optimizer(TrainConfig(precision="mixed_float16"), 10)
    assert isinstance(opt16, keras.optimizers.LossScaleOptimizer)
    assert float(opt16.scale_loss(1.0)) > 1.0
    opt_bf = make_optimizer(TrainConfig(precision="mixed_bfloat16"), 10)
    assert not isinstance(opt_bf, keras.optimizers.LossScaleOptimizer)
    assert float(opt_bf.scale_loss(1.0)) == 1.0
    assert keras.config.dtype_policy().name == "float32"  # training left the global policy


def test_the_trained_model_is_built_under_the_policy(root):
    import keras

    from reseg.components.trainer import inputs
    from reseg.models.precision import model_policy

    cfg = config(root, model=UNET, train={"precision": "mixed_bfloat16"}, tracking=OFF)
    model, train_model, _, _ = inputs.build(cfg, 3, 3, None)
    assert model_policy(model) == model_policy(train_model) == "mixed_bfloat16"
    assert model.get_layer("softmax").dtype_policy.name == "float32"
    assert keras.config.dtype_policy().name == "float32"


def test_auto_is_mixed_bfloat16_where_native_and_float32_elsewhere(monkeypatch):
    from reseg.inference import precision

    monkeypatch.setattr(precision, "resolve", lambda p: "bfloat16")
    assert precision.resolve_train("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "xla_ok", lambda p: p == "float32")  # a CPU
    assert precision.resolve_train("auto", jit_compile=True) == "float32"
    monkeypatch.setattr(precision, "resolve", lambda p: "float32")
    assert precision.resolve_train("auto") == "float32"
    assert precision.resolve_train("mixed_float16") == "mixed_float16"  # set values stay
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_train("bfloat16")
    assert TrainConfig().precision == "auto"


def test_the_default_trains_in_what_auto_resolves_to_and_fingerprints_like_it(root, caplog):
    """No precision key: the manifest names the policy that ran, and a config naming that
    policy finds the model current (a float32 user's roots stay current where auto is
    float32)."""
    from reseg.inference.precision import resolve_train
    from reseg.models.precision import model_policy

    here = resolve_train("auto")
    out = train(config(root, model=UNET, train={"epochs": 1}, tracking=OFF), root, fold=2)
    manifest = json.loads((out.path / "manifest.json").read_text())
    assert manifest["precision"] == here
    assert model_policy(_load(out)) == "float32"
    explicit = config(root, model=UNET, train={"epochs": 1, "precision": here}, tracking=OFF)
    with caplog.at_level("INFO", logger="reseg.components.trainer.component"):
        again = train(explicit, root, fold=2)
    assert "is up to date" in caplog.text
    assert again.fingerprint == out.fingerprint
