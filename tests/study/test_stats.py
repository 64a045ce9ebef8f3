"""Paired differences and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reseg.metrics import scores
from reseg.study.stats import fold_interval, mean_sd, miou, tile_interval


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10_000))
def test_miou_equals_the_metrics_module(c, seed):
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 20, size=(c, c)) * (rng.random((c, c)) < 0.6)
    ref = scores(cm, [f"c{i}" for i in range(c)])["mean_iou"]
    got = miou(cm)
    assert (ref is None and np.isnan(got)) or got == pytest.approx(ref)


def test_miou_is_vectorised_over_leading_axes():
    cms = np.array([[[5, 0], [0, 5]], [[0, 5], [5, 0]], [[0, 0], [0, 0]]])
    got = miou(cms)
    assert got[0] == 1.0 and got[1] == 0.0 and np.isnan(got[2])


def _tiles(rng, n, c, acc):
    """n tiles of 100 pixels each whose predictions are right with probability `acc`."""
    cms = np.zeros((n, c, c), np.int64)
    for i in range(n):
        labels = rng.integers(0, c, 100)
        right = rng.random(100) < acc
        pred = np.where(right, labels, (labels + 1) % c)
        np.add.at(cms[i], (labels, pred), 1)
    return cms


def test_tile_interval_of_identical_predictions_is_zero():
    rng = np.random.default_rng(0)
    a = _tiles(rng, 30, 3, 0.7)
    iv = tile_interval([(a, a.copy())], 500, 0.95, 0)
    assert iv.mean == 0 and iv.low == 0 and iv.high == 0 and not iv.excludes_zero


def test_tile_interval_finds_a_clear_improvement_and_not_a_tiny_noisy_one():
    rng = np.random.default_rng(1)
    folds = [(_tiles(rng, 40, 3, 0.5), _tiles(rng, 40, 3, 0.8)) for _ in range(2)]
    iv = tile_interval(folds, 1000, 0.95, 0)
    point = np.mean([miou(b.sum(0)) - miou(a.sum(0)) for a, b in folds])
    assert iv.mean == pytest.approx(point)
    assert iv.low > 0 and iv.excludes_zero and iv.low < iv.mean < iv.high
    same = [(_tiles(rng, 40, 3, 0.6), _tiles(rng, 40, 3, 0.6))]
    assert not tile_interval(same, 1000, 0.95, 0).excludes_zero


def test_tile_interval_is_seeded_and_narrows_with_more_tiles():
    rng = np.random.default_rng(2)
    small = [(_tiles(rng, 10, 3, 0.6), _tiles(rng, 10, 3, 0.7))]
    big = [(_tiles(rng, 200, 3, 0.6), _tiles(rng, 200, 3, 0.7))]
    a, b = tile_interval(small, 800, 0.95, 5), tile_interval(small, 800, 0.95, 5)
    assert a == b
    wide = a.high - a.low
    narrow = tile_interval(big, 800, 0.95, 5)
    assert narrow.high - narrow.low < wide


def test_fold_interval_with_few_folds():
    assert fold_interval([0.1], 100, 0.95, 0).low is None
    iv = fold_interval([0.01, 0.03, None], 1000, 0.95, 0)
    assert iv.mean == pytest.approx(0.02) and iv.n == 2
    assert iv.low == pytest.approx(0.01) and iv.high == pytest.approx(0.03)
    assert fold_interval([], 100, 0.95, 0).mean is None


def test_mean_sd():
    assert mean_sd([1.0, None, 3.0]) == (2.0, pytest.approx(np.sqrt(2)), 2)
    assert mean_sd([None]) == (None, None, 0)
    assert mean_sd([0.5]) == (0.5, None, 1)


def test_bias_corrected_interval_moves_against_the_replicates_bias():
    from reseg.study.stats import _bias_corrected

    rng = np.random.default_rng(0)
    biased = rng.normal(0.035, 0.02, 20000)  # replicates centred 0.015 above the estimate
    lo, hi = _bias_corrected(biased, 0.02, 0.95)
    plain = np.percentile(biased, [2.5, 97.5])
    assert lo < plain[0] and hi < plain[1] and lo < 0.02 < hi
    # the BC interval of a normal bootstrap is the percentile interval shifted by 2 x bias
    assert lo == pytest.approx(plain[0] - 0.03, abs=3e-3)
    sym = rng.normal(0.1, 0.01, 20000)
    lo, hi = _bias_corrected(sym, 0.1, 0.95)
    assert lo == pytest.approx(0.1 - 1.96 * 0.01, abs=2e-3)
    assert hi == pytest.approx(0.1 + 1.96 * 0.01, abs=2e-3)
