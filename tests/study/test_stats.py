"""Paired differences and bootstrap intervals: per tile, and over seeds and folds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reseg.metrics import scores
from reseg.study.stats import mde_factor, mean_sd, miou, seed_fold_interval, spread, tile_interval


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


def _runs(rng, effect, folds=4, seeds=3, fold_sd=0.01, run_sd=0.02):
    """(seed, fold) -> d: effect + a fold's shift + one training run's noise."""
    shift = rng.normal(0, fold_sd, folds)
    return {
        (s, k): effect + shift[k] + rng.normal(0, run_sd)
        for k in range(folds)
        for s in range(seeds)
    }


def test_seed_fold_interval_finds_a_known_effect_and_not_a_null_one_at_the_stated_rates():
    """3 seeds x 4 folds, fold sd 0.01, run sd 0.02 (about the demo's seed spread), 300 draws.

    Stated rates: an effect of 0.05 is distinguishable in >= 95% of draws; no effect in
    <= 10% (nominal 5%; measured about 5-6%).
    """
    rng = np.random.default_rng(18)
    draws = 300
    null = [seed_fold_interval(_runs(rng, 0.0), 1000, 0.95, i) for i in range(draws)]
    real = [seed_fold_interval(_runs(rng, 0.05), 1000, 0.95, i) for i in range(draws)]
    false_pos = np.mean([iv.excludes_zero for iv in null])
    found = np.mean([iv.verdict == "better" for iv in real])
    assert false_pos <= 0.10, false_pos
    assert found >= 0.95, found
    # the MDE is what it says: a true effect of the median MDE is found about 4 times in 5
    mde = float(np.median([iv.mde for iv in null]))
    at_mde = [seed_fold_interval(_runs(rng, mde), 1000, 0.95, i) for i in range(draws)]
    assert 0.65 <= np.mean([iv.verdict == "better" for iv in at_mde]) <= 0.95


def test_seed_fold_interval_includes_fold_variation():
    """Folds that disagree widen the interval even when each fold's seeds agree closely."""
    rng = np.random.default_rng(3)
    calm = seed_fold_interval(_runs(rng, 0.03, fold_sd=0.0, run_sd=0.005), 1000, 0.95, 0)
    rough = seed_fold_interval(_runs(rng, 0.03, fold_sd=0.04, run_sd=0.005), 1000, 0.95, 0)
    assert calm.excludes_zero and (rough.high - rough.low) > 3 * (calm.high - calm.low)


def test_seed_fold_interval_se_matches_the_design_and_mde_is_its_multiple():
    rng = np.random.default_rng(4)
    folds, seeds, fold_sd, run_sd = 20, 5, 0.02, 0.03
    iv = seed_fold_interval(_runs(rng, 0.0, folds, seeds, fold_sd, run_sd), 4000, 0.95, 0)
    expected = np.sqrt(fold_sd**2 / folds + run_sd**2 / (folds * seeds))
    assert iv.se == pytest.approx(expected, rel=0.35)
    assert mde_factor(0.95, 0.8) == pytest.approx(1.95996 + 0.84162, abs=1e-4)
    assert iv.mde == pytest.approx(mde_factor(0.95, 0.8) * iv.se)
    assert iv.n == folds * seeds and iv.low < iv.mean < iv.high


def test_seed_fold_interval_edge_cases():
    assert seed_fold_interval({}, 200, 0.95, 0).mean is None
    one = seed_fold_interval({(0, 0): 0.02, (1, 0): None}, 200, 0.95, 0)
    assert one.mean == 0.02 and one.low is None and one.verdict == "unknown" and one.n == 1
    # one fold: seeds alone are resampled
    seeds_only = seed_fold_interval({(0, 0): 0.01, (1, 0): 0.03, (2, 0): 0.02}, 500, 0.95, 0)
    assert seeds_only.mean == pytest.approx(0.02) and seeds_only.low < 0.02 < seeds_only.high
    # a missing run: the mean is over folds of the fold means, not over runs
    d = {(0, 0): 0.0, (1, 0): 0.0, (0, 1): 0.1, (1, 1): None}
    assert seed_fold_interval(d, 200, 0.95, 0).mean == pytest.approx(0.05)
    same = seed_fold_interval({(s, k): 0.01 for s in range(3) for k in range(3)}, 200, 0.95, 0)
    assert same.low == pytest.approx(0.01) and same.high == pytest.approx(0.01)
    assert same.verdict == "better" and same.as_dict()["mde"] == pytest.approx(0.0)


def test_spread_is_the_sd_over_seeds_per_fold():
    v = {(0, 0): 0.5, (1, 0): 0.6, (2, 0): 0.7, (0, 1): 0.4, (1, 1): None}
    got = spread(v)
    assert got[0] == (pytest.approx(0.6), pytest.approx(0.1), 3)
    assert got[1] == (0.4, None, 1)


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
