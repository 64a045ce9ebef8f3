"""The fixed class set of mIoU, on hand-made confusion matrices."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.metrics import class_set, mean_iou_of, scores
from reseg.study.stats import miou as study_miou
from reseg.study.stats import tile_interval

NAMES = ["water", "forest", "sediment"]

# rows: labels, columns: predictions. No sediment in the labels; 5 pixels predicted as it.
WITH_FP = np.array([[40, 5, 5], [10, 40, 0], [0, 0, 0]])
# the same labels, the 5 water pixels predicted as sediment now predicted as forest
WITHOUT_FP = np.array([[40, 10, 0], [10, 40, 0], [0, 0, 0]])


def test_the_class_set_is_the_labelled_classes_and_a_predicted_absent_class_is_a_false_positive():
    v = scores(WITH_FP, NAMES)
    assert v["class_set"] == ["water", "forest"]
    iou_water, iou_forest = 40 / (50 + 50 - 40), 40 / (50 + 45 - 40)
    assert v["per_class"]["water"]["iou"] == pytest.approx(iou_water)
    assert v["per_class"]["forest"]["iou"] == pytest.approx(iou_forest)
    assert v["mean_iou"] == pytest.approx((iou_water + iou_forest) / 2)  # not / 3 with a 0
    assert v["per_class"]["sediment"]["iou"] is None
    assert v["per_class"]["sediment"]["predicted"] == 5
    assert v["false_positives"] == {"sediment": {"pixels": 5, "share": 5 / 100}}
    # mean F1 over the same set
    f1 = [2 * 40 / (50 + 50), 2 * 40 / (50 + 45)]
    assert v["mean_f1"] == pytest.approx(np.mean(f1))


def test_rounds_on_the_same_pixels_are_averaged_over_the_same_classes():
    """Round 0 predicting a few pixels of an absent class no longer loses a third of its mIoU
    to an IoU of 0: the two differ only by where those pixels went."""
    a, b = scores(WITH_FP, NAMES), scores(WITHOUT_FP, NAMES)
    assert a["class_set"] == b["class_set"]
    # the old rule (classes in labels or predictions) would have averaged a over 3 classes
    old_a = (40 / 60 + 40 / 55 + 0.0) / 3
    assert a["mean_iou"] > old_a + 0.2
    assert b["false_positives"] == {}
    assert abs(a["mean_iou"] - b["mean_iou"]) < 0.05


def test_an_explicit_class_set_and_the_vectorised_rule_agree_with_scores():
    stack = np.stack([WITH_FP, WITHOUT_FP, np.diag([3, 0, 4])])
    got = mean_iou_of(stack)
    for cm, g in zip(stack, got, strict=True):
        assert g == pytest.approx(scores(cm)["mean_iou"])
    np.testing.assert_allclose(study_miou(stack), got)
    # a replicate with no forest at all, under the evaluation set's class set: forest has a zero
    # denominator there and is left out; sediment (outside the set) never counts
    replicate = np.array([[30, 0, 2], [0, 0, 0], [0, 0, 0]])
    s = class_set(WITH_FP)
    assert s.tolist() == [True, True, False]
    assert mean_iou_of(replicate, s) == pytest.approx(30 / 32)
    assert scores(replicate, NAMES, classes=s)["mean_iou"] == pytest.approx(30 / 32)
    # forest predicted on water pixels: forest is in the set, IoU 0, and counts
    replicate[0, 1] = 8
    assert mean_iou_of(replicate, s) == pytest.approx((30 / 40 + 0.0) / 2)
    assert np.isnan(mean_iou_of(np.zeros((3, 3)), s))


def test_the_tile_bootstrap_uses_each_folds_class_set():
    """Tiles of a fold whose only difference is where an absent class's false positives went:
    the point estimate is the difference over the fold's labelled classes."""
    a = np.stack([WITH_FP, WITH_FP])  # round 0 on two tiles
    b = np.stack([WITHOUT_FP, WITHOUT_FP])  # the cell
    iv = tile_interval([(a, b)], samples=200, level=0.9, seed=0)
    expected = scores(2 * WITHOUT_FP)["mean_iou"] - scores(2 * WITH_FP)["mean_iou"]
    assert iv.mean == pytest.approx(expected)
    assert iv.low == pytest.approx(expected) and iv.high == pytest.approx(expected)


def _tile(row, fold, label, probs, target=None):
    from reseg.tfrecords_schema import Tile

    h, w = label.shape
    z = np.zeros((h, w), np.uint8)
    # the core is the tile less a 1-pixel border: the border never counts
    return Tile(
        np.zeros((h, w, 1), np.float32), label, z + 1, z, "s", row, 0, (row + 1, 1, h - 2, w - 2),
        fold, probs=probs, target=target,
    )  # fmt: skip


def test_one_confusion_loop_over_tiles_for_labels_and_target_labels():
    from reseg.metrics import confusion, tile_confusions, total

    rng = np.random.default_rng(0)
    tiles = []
    for i, fold in enumerate((0, 1, 0)):
        label = rng.integers(0, 3, (6, 6)).astype(np.uint8)
        label[0, 0] = 255
        probs = rng.random((6, 6, 3)).astype(np.float32)
        target = None if i == 0 else np.where(rng.random((6, 6)) < 0.5, label, 255).astype(np.uint8)
        tiles.append(_tile(10 * i, fold, label, probs, target))
    tiles.append(_tile(40, 0, tiles[0].label, tiles[0].probs, np.full((6, 6), 255, np.uint8)))

    per = tile_confusions(tiles, 3, fold=0)
    assert sorted(per) == ["s/0/0", "s/20/0", "s/40/0"]  # fold 0 only, every tile of it
    core = (slice(1, 5), slice(1, 5))
    want = confusion(tiles[0].label[core], tiles[0].probs[core].argmax(-1), 3)
    np.testing.assert_array_equal(per["s/0/0"], want)
    assert total(per, 3).sum() == sum(
        int((t.label[core] != 255).sum()) for t in tiles if t.fold == 0
    )
    assert total({}, 3).shape == (3, 3) and total({}, 3).sum() == 0

    on_target = tile_confusions(tiles, 3, "target")
    assert sorted(on_target) == ["s/10/0", "s/20/0"]  # tiles with target pixels, any fold
    assert total(on_target, 3).sum() == sum(int((t.target[core] != 255).sum()) for t in tiles[1:3])

    with pytest.raises(ValueError, match=r"tile s/0/0 of scores/ carries no scores"):
        tile_confusions([_tile(0, 0, tiles[0].label, None)], 3, source="scores/")
