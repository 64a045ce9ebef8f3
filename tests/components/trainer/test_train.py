"""`train` in-process: every registry model, the model directory, MLflow, weights, stopping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reseg import artifacts, layout
from reseg.artifacts import ModelInfo
from reseg.errors import ConfigError
from tests.components.roots import train
from tests.components.trainer.tiles import config, write_tiles

# tiny parameters of every registry model (32 x 32 tiles, 3 bands, 3 classes)
TINY = {
    "cnn": {"filters": 4, "depth": 2},
    "alexnet_fcn": {"width": 0.0625, "fc_filters": 8},
    "fcn32s": {"base_filters": 4, "fc_filters": 8, "fc_kernel": 1},
    "fcn16s": {"base_filters": 4, "fc_filters": 8, "fc_kernel": 1},
    "fcn8s": {"base_filters": 4, "fc_filters": 8, "fc_kernel": 1},
    "unet": {"depth": 2, "base_filters": 4},
    "segnet": {"base_filters": 4},
    "pspnet": {
        "encoder_widths": [4, 8, 8, 8],
        "encoder_blocks": [1, 1, 1, 1],
        "head_filters": 8,
        "bins": [1, 2],
    },
    "deeplabv3plus": {
        "encoder_widths": [4, 8, 8, 8],
        "encoder_blocks": [1, 1, 1, 1],
        "aspp_filters": 8,
        "low_level_filters": 4,
        "decoder_filters": 8,
    },
    "segformer": {"decoder_dim": 8},
}
UNET = {"name": "unet", "params": TINY["unet"]}
OFF = {"enabled": False}


def _client(root):
    from mlflow import MlflowClient

    return MlflowClient(layout.tracking_uri(root))


def test_tiny_parameters_cover_the_whole_registry():
    import reseg.models

    assert set(TINY) == set(reseg.models.names())


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_registry_model_trains(root, name):
    import keras

    import reseg.models  # noqa: F401

    cfg = config(
        root, model={"name": name, "params": TINY[name]}, train={"steps_per_epoch": 1}, tracking=OFF
    )
    out = train(cfg, root, fold=None)
    assert out.path == layout.model_dir(root, 0, None)
    manifest = artifacts.read_manifest(out)
    assert manifest["loss_weights"] == (
        [1.0, 0.4] if name == "pspnet" else [1.0]
    )  # PSPNet's auxiliary loss
    assert np.isfinite(manifest["metrics"]["final_loss"])
    model = keras.models.load_model(out / "model.keras", safe_mode=True)
    probs = np.asarray(model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0))
    assert probs.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-4)
    assert ModelInfo.load(out).architecture == name


def test_fold_training_writes_the_model_directory_and_an_mlflow_run(root, tiled):
    cfg = config(
        root,
        model=UNET,
        train={"epochs": 2, "augment": {"enabled": True, "rotation": 30, "noise_std": 0.05}},
    )
    out = train(cfg, root, fold=1)
    assert out.path == layout.model_dir(root, 0, 1)
    assert {p.name for p in out.path.iterdir()} == {
        "model.keras", "model.json", "history.json", "curves.png", "manifest.json", "config.json",
    }  # fmt: skip
    assert not list(out.path.parent.glob("model.tmp-*"))  # staging dir (and its checkpoints) gone
    info = ModelInfo.load(out)
    stats = json.loads((root / "stats" / "stats.json").read_text())
    assert info.bands == 3 and info.image_dtype == "uint16" and info.tile_size == 32
    assert info.output_stride == 4 and info.architecture == "unet"
    np.testing.assert_allclose(info.mean, [b["mean"] for b in stats["bands"]], rtol=1e-6)
    assert info.class_names == ("c0", "c1", "c2") and info.label_values == {"0": 0, "1": 1, "2": 2}
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 <= h["val_miou"] <= 1 and h["val_loss"] > 0 for h in history)
    manifest = artifacts.read_manifest(out)
    # fold 1 evaluates, fold 2 validates, fold 0 trains (reseg.folds)
    assert manifest["validation_fold"] == 2
    assert manifest["counts"]["train_tiles"] == sum(t.fold == 0 for t in tiled[2])
    assert manifest["counts"]["val_tiles"] == sum(t.fold == 2 for t in tiled[2])

    client = _client(root)
    run = client.get_run(manifest["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.name"] == "unet"
    assert run.data.params["run.fold"] == "fold1"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_miou")] == [1, 2]
    artifacts_logged = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.keras", "model/model.json", "model/curves.png"} <= artifacts_logged

    # same inputs, same config: skipped, nothing rewritten, no new run
    stamp = manifest["published_at"], (out / "model.keras").stat().st_mtime_ns
    assert train(cfg, root, fold=1).path == out.path
    assert (
        artifacts.read_manifest(out)["published_at"],
        (out / "model.keras").stat().st_mtime_ns,
    ) == stamp
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_zero_weights_from_a_selection_leave_the_initial_model_unchanged(root, tiled, tmp_path):
    import keras

    import reseg.models as models

    # a round-0 model without batch norm (no moving statistics), saved as the initial model
    init = tmp_path / "init"
    init.mkdir()
    models.build_model("unet", 3, 3, depth=2, base_filters=4, batch_norm=False).save(
        init / "model.keras"
    )
    before = [w.copy() for w in keras.models.load_model(init / "model.keras").get_weights()]
    selection = layout.selection_dir(root, 0, 0)
    write_tiles([t.with_weight(np.zeros(t.label.shape)) for t in tiled[2]], selection, shards=2)

    cfg = config(root, model=UNET, train={"epochs": 1}, tracking=OFF)
    out = train(cfg, root, fold=0, round=1, tile_files=[selection], init_model=init)
    assert out.path == layout.model_dir(root, 1, 0)
    history = json.loads((out / "history.json").read_text())
    assert history[0]["loss"] == 0.0
    after = keras.models.load_model(out / "model.keras").get_weights()
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert artifacts.read_manifest(out)["inputs"]["files"] == [
        str(p) for p in sorted(selection.glob("*.gz"))
    ]


def test_early_stopping_on_validation_miou(root):
    no_bn = {
        "name": "unet",
        "params": {**TINY["unet"], "batch_norm": False},
    }  # no moving statistics
    cfg = config(
        root,
        model=no_bn,
        train={
            "epochs": 6,
            "steps_per_epoch": 1,
            "learning_rate": 1e-12,  # nothing changes, so validation mIoU never improves
            "optimizer": "sgd",
            "schedule": "cosine",
            "warmup_epochs": 1,
            "loss": "crossentropy+dice",
            "class_weights": "inverse",
            "early_stopping": 2,
        },
        tracking=OFF,
    )
    out = train(cfg, root, fold=2)
    manifest = artifacts.read_manifest(out)
    assert manifest["stopped_early"] is True
    assert manifest["best_epoch"] == 1 and manifest["counts"]["epochs"] == 3


def test_a_failing_training_ends_its_mlflow_run_failed(root):
    cfg = config(root, model=UNET, train={"class_weights": [1.0, 2.0]})  # 3 classes
    with pytest.raises(ConfigError, match="one weight per class"):
        train(cfg, root, fold=0)
    client = _client(root)
    (run,) = client.search_runs([client.get_experiment_by_name("trainer-test").experiment_id])
    assert run.info.status == "FAILED"
    assert not layout.model_dir(root, 0, 0).exists()


def test_bad_fold_and_model_parameters_are_config_errors(root):
    with pytest.raises(ConfigError, match="depht"):
        train(
            config(root, model={"name": "unet", "params": {"depht": 2}}, tracking=OFF), root, fold=0
        )
    with pytest.raises(ConfigError, match=r"fold must be in 0\.\.2"):
        train(config(root, model=UNET, tracking=OFF), root, fold=3)


def test_a_class_never_learnt_is_warned_about_and_its_iou_kept_per_epoch(root, caplog):
    from reseg.components.trainer.loop import classes_not_learnt

    cfg = config(
        root,
        model=UNET,
        train={
            "epochs": 4,
            "steps_per_epoch": 3,
            "learning_rate": 0.1,
            "class_weights": [1.0, 0.0, 0.0],
        },
        tracking=OFF,
    )  # only class 0 has loss weight: the model learns to predict it everywhere
    with caplog.at_level("WARNING", logger="reseg.components.trainer.loop"):
        out = train(cfg, root, fold=0)
    history = json.loads((out / "history.json").read_text())
    assert all(len(h["val_iou"]) == 3 and min(h["val_support"]) > 0 for h in history)
    assert [h["val_iou"][1:] for h in history[2:]] == [[0.0, 0.0], [0.0, 0.0]]
    assert history[-1]["val_iou"][0] > 0
    assert classes_not_learnt(history, 2) == [1, 2]
    names = f"classes {cfg.data.classes[1].name}, {cfg.data.classes[2].name} "
    warnings = [r.getMessage() for r in caplog.records if "validation IoU 0" in r.getMessage()]
    assert len(warnings) == 2  # after the warm-up (epoch 3), and at the end (epoch 4)
    assert all(names in w and "class_weights" in w for w in warnings), warnings
