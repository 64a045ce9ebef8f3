"""examples/vaihingen_pretrained.yaml end to end, CI-sized: a U-Net on a ResNet-18 encoder whose
"pretrained" weights file is made here (a randomly initialised encoder, saved), frozen for the
first epoch, then fine-tuned at a tenth of the learning rate, evaluated and exported."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from reseg import layout
from reseg.config import load_config
from reseg.models import backbones
from reseg.pipeline.run import run_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_pretrained_example_trains_and_evaluates(tmp_path, shared_data, monkeypatch):
    keras.utils.set_random_seed(5)
    initial = backbones.build_backbone("resnet18", 3)
    weights = tmp_path / "resnet18.weights.h5"
    initial.save_weights(str(weights))
    monkeypatch.setenv("RESEG_ENCODER_WEIGHTS", str(weights))
    cfg = load_config(REPO / "examples" / "vaihingen_pretrained.yaml")
    assert cfg.model.params.encoder_weights == str(weights)
    tiny = {
        "train": cfg.train.model_copy(
            update={"epochs": 2, "steps_per_epoch": 1, "batch_size": 2, "freeze_encoder_epochs": 1}
        ),
        "rounds": cfg.rounds.model_copy(update={"count": 0, "folds": [0]}),
        "tracking": cfg.tracking.model_copy(update={"enabled": False}),
        "beam": cfg.beam.model_validate({"args": ["--direct_num_workers=1"]}),
    }
    cfg = cfg.model_copy(update=tiny)
    root = tmp_path / "root"
    run_pipeline(cfg, root, steps=["tile", "stats", "rounds", "export"])

    model_dir = layout.model_dir(root, 0, 0)
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["loss"]) for h in history)
    model = keras.models.load_model(model_dir / "model.keras", safe_mode=True)
    encoder = model.get_layer("encoder")
    # loaded from the file, then trained in epoch 2 (frozen in epoch 1)
    start, trained = initial.get_layer("conv1").get_weights()[0], encoder.get_layer("conv1")
    assert 0 < np.abs(trained.get_weights()[0] - start).max() < 0.1
    metrics = json.loads((layout.eval_dir(root, 0, 0) / "metrics.json").read_text())
    assert 0.0 <= metrics["mean_iou"] <= 1.0
    # the nested backbone exports to TF Serving's layout (the exporter checks the SavedModel)
    assert list(layout.export_dir(root, cfg.export.model_name).glob("*/saved_model.pb"))
