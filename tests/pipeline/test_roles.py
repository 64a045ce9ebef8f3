"""The three pixel roles after training: merge weights and the stopping rule read the
validation fold, the reported metrics the evaluation fold, checked pixel by pixel.

A synthetic root (9 tiles of 32 px, K = 3) with two rounds' scores of evaluation fold 0;
fold 1 validates. The same scores with other labels on fold 0's pixels must give the same
validation metrics, merge weights and stopping decision (and other reported metrics); other
labels on fold 1's pixels must change them.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest

from reseg import folds, layout
from reseg.artifacts import Metrics
from reseg.pipeline import steps
from reseg.tfrecords_schema import Tile
from tests.components.scores import random_probs, write_scores
from tests.components.trainer.tiles import config, write_root

FOLD = 0


def _relabel(t: Tile, fold: int | None) -> Tile:
    """Every labelled pixel of `fold` (by `fold_map`) given another class; None: unchanged."""
    if fold is None:
        return t
    change = (t.fold_map == fold) & (t.label != 255)
    label = np.where(change, (t.label.astype(np.int64) + 1) % 3, t.label).astype(np.uint8)
    return replace(t, label=label)


def _root(base, name: str, relabel: int | None, k: int = 3):
    """A root with tiles and two rounds' scores of fold 0; labels of fold `relabel` changed."""
    root = base / name
    _, tiles = write_root(root, folds=k)
    rng = np.random.default_rng(5)
    for r in (0, 1):
        scored = [
            _relabel(t, relabel).with_scores(random_probs(t.label.shape, rng), r) for t in tiles
        ]
        write_scores(scored, layout.scores_dir(root, r, FOLD), f"scores-{name}-{r}")
    ctx = steps.Context(config(root, folds=k, tracking={"enabled": False}), root)
    result = steps.FoldResult(FOLD)
    for r in (0, 1):
        m = steps.evaluate(ctx, r, FOLD)
        v = steps.validate(ctx, r, FOLD)
        result.rounds.append(steps.RoundResult(r, FOLD, None, None, m, None, v))  # type: ignore[arg-type]
    return root, tiles, ctx, result


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("roles")
    return {
        name: _root(base, name, relabel)
        for name, relabel in (("base", None), ("evaluation", 0), ("validation", 1))
    }


def _weights(result) -> list[float]:
    return steps.merge_weights([r.validation for r in result.rounds])


def test_validation_metrics_count_the_validation_folds_core_pixels_once(roots):
    root, tiles, _, result = roots["base"]
    v = result.rounds[0].validation
    assert v.path == layout.val_dir(root, 0, FOLD) and v.values["fold"] == 1
    expected = sum(int((t.label[t.core_slice()] != 255).sum()) for t in tiles if t.fold == 1)
    assert v.values["pixels"] == expected > 0
    evaluated = sum(int((t.label[t.core_slice()] != 255).sum()) for t in tiles if t.fold == FOLD)
    assert result.rounds[0].metrics.values["pixels"] == evaluated > 0
    # published like every artifact, and read back by the report's round rows
    assert (
        Metrics.load(layout.val_dir(root, 1, FOLD)).mean_iou == result.rounds[1].validation.mean_iou
    )


def test_evaluation_labels_change_the_reported_metrics_and_nothing_else(roots):
    base, changed = roots["base"][3], roots["evaluation"][3]
    for a, b in zip(base.rounds, changed.rounds, strict=True):
        assert b.metrics.values["confusion"] != a.metrics.values["confusion"]
        assert b.validation.values == a.validation.values
    assert _weights(changed) == _weights(base)
    cfg = roots["base"][2].cfg.model_copy(
        update={
            "rounds": roots["base"][2].cfg.rounds.model_copy(update={"stop_when_no_gain": True})
        }
    )
    assert steps._no_gain(cfg, changed) == steps._no_gain(cfg, base)
    v0, v1 = (r.validation.mean_iou for r in base.rounds)
    assert steps._no_gain(cfg, base) == (v1 <= v0)


def test_validation_labels_choose_the_merge_weights(roots):
    base, changed = roots["base"][3], roots["validation"][3]
    for a, b in zip(base.rounds, changed.rounds, strict=True):
        assert b.metrics.values == a.metrics.values  # the reported figures do not move
        assert b.validation.values["confusion"] != a.validation.values["confusion"]
    assert _weights(changed) != _weights(base)
    assert _weights(base) == [r.validation.mean_iou for r in base.rounds]


def test_with_two_folds_there_is_no_validation_equal_weights_and_one_warning(tmp_path, caplog):
    folds.warn_no_validation.cache_clear()
    with caplog.at_level(logging.WARNING, logger="reseg.folds"):
        root, _, ctx, result = _root(tmp_path, "two", None, k=2)
    assert all(r.validation is None for r in result.rounds)
    assert not layout.val_dir(root, 0, FOLD).exists()
    assert _weights(result) == [1.0, 1.0]
    cfg = ctx.cfg.model_copy(
        update={"rounds": ctx.cfg.rounds.model_copy(update={"stop_when_no_gain": True})}
    )
    assert steps._no_gain(cfg, result) is False
    warnings = [r for r in caplog.records if "no validation fold" in r.getMessage()]
    assert len(warnings) == 1


def test_the_round_table_shows_both_folds_and_the_class_set(roots):
    from reseg.report import collect, convention, round_rows

    root, _, _, result = roots["base"]
    (view,) = collect(root)
    rows = round_rows(view)
    assert [r["round"] for r in rows] == ["r0", "r1"]
    for row, rr in zip(rows, result.rounds, strict=True):
        assert row["mean_iou"] == rr.metrics.mean_iou
        assert row["val_mean_iou"] == rr.validation.mean_iou
        assert row["false_positives"] == 0  # every class is in fold 0's labels
    assert "mIoU over the classes in its labels (c0, c1, c2)" in convention(view)
