"""Losses with ignore label and per-pixel weights, class weights, the confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.components.trainer.losses import class_weights, confusion, make_loss
from reseg.errors import ConfigError


def _case(seed=0, n=2, h=4, w=5, c=3):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, c, size=(n, h, w)).astype(np.int32)
    label[0, 0, :] = 255
    logits = rng.normal(size=(n, h, w, c))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    weight = rng.uniform(0, 2, size=(n, h, w)).astype(np.float32)
    weight[label == 255] = 0
    return label, probs, weight


def test_crossentropy_is_weighted_mean_over_pixels_and_ignores_255():
    label, probs, weight = _case()
    per_example = make_loss("crossentropy", 3)(label, probs, weight).numpy()
    y = np.where(label == 255, 0, label)
    ce = -np.log(np.take_along_axis(probs, y[..., None], -1)[..., 0])
    expected = (weight * ce).mean(axis=(1, 2))
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)
    # the ignored pixels' predictions do not matter
    probs2 = probs.copy()
    probs2[0, 0] = np.roll(probs2[0, 0], 1, axis=-1)
    np.testing.assert_allclose(
        make_loss("crossentropy", 3)(label, probs2, weight).numpy(), per_example, rtol=1e-6
    )


def test_class_weights_multiply_pixel_weights():
    label, probs, weight = _case(1)
    cw = np.array([0.0, 1.0, 3.0], np.float32)
    got = make_loss("crossentropy", 3, cw)(label, probs, weight).numpy()
    y = np.where(label == 255, 0, label)
    ce = -np.log(np.take_along_axis(probs, y[..., None], -1)[..., 0])
    np.testing.assert_allclose(got, (weight * cw[y] * ce).mean(axis=(1, 2)), rtol=1e-5)


def test_focal_is_below_crossentropy_and_dice_in_0_1():
    label, probs, weight = _case(2)
    ce = make_loss("crossentropy", 3)(label, probs, weight).numpy()
    fl = make_loss("focal", 3, focal_gamma=2.0)(label, probs, weight).numpy()
    assert (fl < ce).all() and (fl > 0).all()
    dice = make_loss("dice", 3)(label, probs, weight).numpy()
    assert ((dice > 0) & (dice < 1)).all()
    both = make_loss("crossentropy+dice", 3)(label, probs, weight).numpy()
    np.testing.assert_allclose(both, ce + dice, rtol=1e-5)
    # a perfect prediction has Dice loss 0
    onehot = np.eye(3, dtype=np.float32)[np.where(label == 255, 0, label)]
    assert make_loss("dice", 3)(label, onehot, weight).numpy().max() < 1e-5


def test_lower_resolution_output_is_resized_to_the_label():
    label, probs, weight = _case(3, h=8, w=8)
    small = probs[:, ::2, ::2]
    assert make_loss("crossentropy", 3)(label, small, weight).numpy().shape == (2,)


def test_class_weight_settings():
    counts = [600, 300, 100, 0]
    w = class_weights("inverse", counts, 4)
    f = np.array(counts) / 1000
    np.testing.assert_allclose((f * w).sum(), 1.0, rtol=1e-6)
    assert w[2] > w[1] > w[0] and w[3] == 0
    ws = class_weights("inverse_sqrt", counts, 4)
    assert ws[2] / ws[0] == pytest.approx(np.sqrt(6), rel=1e-5)
    assert class_weights("none", counts, 4) is None
    np.testing.assert_array_equal(class_weights([1, 2, 3, 4], None, 4), [1, 2, 3, 4])
    with pytest.raises(ConfigError, match="one weight per class"):
        class_weights([1.0, 2.0], None, 4)
    with pytest.raises(ConfigError, match="stats.json counts 3 classes"):
        class_weights("inverse", [1, 2, 3], 4)


def test_confusion_counts_labelled_pixels_only():
    label, probs, _ = _case(4)
    cm = confusion(label, probs, 3).numpy()
    pred = probs.argmax(-1)
    keep = label != 255
    expected = np.zeros((3, 3))
    np.add.at(expected, (label[keep], pred[keep]), 1)
    np.testing.assert_array_equal(cm, expected)


def test_auto_loss_and_class_weights_follow_the_imbalance(caplog):
    from reseg.components.trainer.losses import imbalanced, resolve_auto

    assert imbalanced([96, 4])  # a 4% class
    assert not imbalanced([60, 40])  # two classes, both above 25%
    assert not imbalanced([30, 30, 25, 15])  # 15% > 0.5 / 4
    assert imbalanced([50, 0, 30, 10, 10])  # 10% < 0.5 / 4 classes with pixels
    assert not imbalanced([0, 100])  # one class only
    names = ["background", "building"]
    with caplog.at_level("INFO", logger="reseg.components.trainer.losses"):
        assert resolve_auto("auto", "auto", [960, 40], names) == ("crossentropy+dice", "inverse")
    assert "imbalanced: the rarest, building, has 4.0% of the labelled pixels" in caplog.text
    assert resolve_auto("auto", "auto", [500, 500], names) == ("crossentropy", "none")
    assert resolve_auto("focal", "auto", [960, 40]) == ("focal", "inverse")  # explicit kept
    assert resolve_auto("auto", [1.0, 2.0], [960, 40]) == ("crossentropy+dice", [1.0, 2.0])
    w = class_weights("auto", [960, 40], 2, names)
    np.testing.assert_allclose(w, class_weights("inverse", [960, 40], 2), rtol=1e-6)
    assert class_weights("auto", [50, 50], 2) is None
    with pytest.raises(ConfigError, match="stats.json"):
        resolve_auto("auto", "none", None)


def test_classes_not_learnt_only_after_the_warm_up_and_only_with_support():
    from reseg.components.trainer.loop import classes_not_learnt

    def rec(epoch, iou, support=(10, 10, 0)):
        return {"epoch": epoch, "val_iou": iou, "val_support": list(support)}

    h = [rec(1, [0.9, 0.2, None]), rec(2, [0.9, 0.0, 0.0])]
    assert classes_not_learnt(h, warmup=2) == []  # still warming up
    h.append(rec(3, [0.9, 0.004, 0.0]))  # a few stray pixels right: still not learnt
    assert classes_not_learnt(h, warmup=2) == [1]  # class 2 has no validation pixels
    h.append(rec(4, [0.9, 0.02, 0.0]))
    assert classes_not_learnt(h, warmup=2) == []  # learnt at last
    assert classes_not_learnt([{"epoch": 5, "val_miou": 0.5}], warmup=2) == []  # old history
