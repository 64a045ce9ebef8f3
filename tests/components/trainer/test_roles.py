"""The three pixel roles in training, by experiment: deterministic trainings on scenes that
differ only in the labels of one fold's pixels.

Evaluation fold 0 of K = 3: fold 1 validates, fold 2 trains (`reseg.folds`). Changing every
label of fold 0's pixels must leave the trained weights, the history (validation metrics per
epoch) and the chosen epoch bit-identical; changing fold 1's labels must change the validation
metrics and the chosen weights; changing fold 2's labels changes the weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from reseg import artifacts
from tests.components.roots import train
from tests.components.trainer.tiles import Scene, config, make_scene, scene_tiles, write_root

FOLD = 0
OFF = {"enabled": False}
TRAIN = {
    "epochs": 4,
    "deterministic": True,
    # pinned: which epoch the changed validation labels pick is an exact outcome, and `auto`
    # trains in bfloat16 on some machines and float32 on others
    "precision": "float32",
    "restore_best": True,
    "learning_rate": 0.01,
    "batch_size": 2,
    "class_weights": "inverse",  # computed from the training folds' counts only
}


def _owner(scene: Scene) -> np.ndarray:
    """The fold of the core owning each scene pixel."""
    out = np.full(scene.label.shape, 255, np.uint8)
    for t in scene_tiles(scene, "synth", 32, 8, 3):
        r, c, h, w = t.core
        out[r : r + h, c : c + w] = t.fold
    return out


def _relabelled(scene: Scene, fold: int) -> Scene:
    """The scene with every labelled pixel of `fold` given another class."""
    owner = _owner(scene)
    label = scene.label.copy()
    change = (owner == fold) & (label != 255)
    label[change] = (label[change] + 1) % 3
    assert change.sum() > 100
    return Scene(scene.image, label, scene.valid)


def _train(tmp_path, name: str, scene: Scene):
    root = tmp_path / name
    write_root(root, scene=scene)
    cfg = config(root, model={"name": "unet", "params": {"depth": 2, "base_filters": 4}},
                 train=TRAIN, tracking=OFF)  # fmt: skip
    out = train(cfg, root, fold=FOLD)
    m = artifacts.read_manifest(out)
    history = [
        {k: v for k, v in h.items() if k not in ("seconds", "tiles_per_second")}
        for h in json.loads((out.path / "history.json").read_text())
    ]
    return m, history


@pytest.fixture(scope="module")
def trainings(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roles")
    base = make_scene(72, 72, 3, 3, "uint16", 0)
    return {
        "base": _train(tmp, "base", base),
        "evaluation": _train(tmp, "evaluation", _relabelled(base, FOLD)),
        "validation": _train(tmp, "validation", _relabelled(base, (FOLD + 1) % 3)),
        "training": _train(tmp, "training", _relabelled(base, (FOLD + 2) % 3)),
    }


def test_evaluation_fold_labels_influence_nothing_in_training(trainings):
    base, changed = trainings["base"], trainings["evaluation"]
    assert base[0]["validation_fold"] == 1
    assert changed[0]["weights_digest"] == base[0]["weights_digest"]
    assert changed[0]["best_epoch"] == base[0]["best_epoch"]
    assert changed[1] == base[1]  # loss, training and validation mIoU of every epoch


def test_validation_fold_labels_choose_the_epoch_and_never_train(trainings):
    base, changed = trainings["base"], trainings["validation"]
    assert [h["val_miou"] for h in changed[1]] != [h["val_miou"] for h in base[1]]
    # the training loss of every epoch is the same: validation pixels never train ...
    assert [h["loss"] for h in changed[1]] == [h["loss"] for h in base[1]]
    # ... but they choose which epoch's weights are kept
    assert changed[0]["best_epoch"] != base[0]["best_epoch"]
    assert changed[0]["weights_digest"] != base[0]["weights_digest"]


def test_training_fold_labels_train(trainings):
    """The experiment can fail: labels of the training fold do change the weights."""
    base, changed = trainings["base"], trainings["training"]
    assert [h["loss"] for h in changed[1]] != [h["loss"] for h in base[1]]
    assert changed[0]["weights_digest"] != base[0]["weights_digest"]
