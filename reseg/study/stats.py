"""Paired differences over (seed, fold) runs, and their bootstrap intervals.

Every cell trains once per seed s and evaluation fold k. For a comparison of A
with B (a cell with round 0, with the all-pixels baseline, with the TTA of round 0;
a cell's merged rounds with its last round), the unit is the paired difference on
one run, d_{s,k} = mIoU_{s,k}(A) - mIoU_{s,k}(B): the same evaluation pixels, the
same seed. The study reports the mean over folds of the fold means,
d = (1/K) sum_k (1/S_k) sum_s d_{s,k} (the plain mean over pairs when every run
finished), with three figures (`seed_fold_interval`):

- the interval, a two-stage paired bootstrap: resample the K folds with
  replacement, then within each drawn fold its S_k seeds with replacement, and
  average; seeds are nested in folds (seed s of fold 0 and of fold 1 are
  different trainings on different data), so this is the resampling that matches
  how the runs were made, and it includes both the training-run (seed) and the
  fold variation. A bootstrap of a mean over K units is too narrow by the factor
  sqrt((K - 1) / K), so the replicates' deviations from d are expanded by
  sqrt(K / (K - 1)) before taking the percentile interval (Hesterberg 2015's
  narrowness correction; sqrt(S / (S - 1)) over seeds when K = 1). In simulations
  with 3 seeds (tests/study/test_stats.py) a zero difference is called
  distinguishable in 2-10% of draws with K >= 3 folds; with K = 2 up to 17%
  when folds disagree, so studies should use at least 3 folds;
- SE, the standard deviation of the (expanded) replicates;
- the smallest difference the design could detect,
  MDE = (z_{1 - alpha/2} + z_{power}) * SE, i.e. 2.80 SE at 95% and 80% power:
  a true difference this large would give an interval excluding 0 four times in
  five. An interval that contains 0 with an MDE of 0.04 says "no difference of
  0.04 or more", not "no difference".

The secondary view, for the comparisons with round 0, resamples evaluation tiles
instead of runs (`tile_interval`): within each (seed, fold) the evaluation tiles
with replacement (the same tiles for the cell and round 0), summing their core
confusion matrices, recomputing both mIoUs and d_{s,k}; averaged over runs. Tile
cores partition the scene, so this resamples evaluation pixels in spatially
coherent blocks of one tile core. mIoU averages over the run's fixed class set
(the classes in the labels of all its evaluation tiles, `reseg.metrics`), the
same set in every replicate; a replicate that drew no pixel of a class leaves it
out of its mean, so the replicates can be biased against the estimate; the interval
is the bias-corrected percentile interval (Efron 1981): with z0 = Phi^-1(share
of replicates below the estimate) it takes the replicates' quantiles
Phi(2 z0 +- z_{1 - alpha/2}) instead of alpha/2 and 1 - alpha/2. It holds the
trained models fixed: it says how sure we are of the difference on these
evaluation pixels for these trainings, not for another training run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from reseg.metrics import class_set, mean_iou_of


def miou(cm: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Mean IoU of confusion matrices (..., C, C) (rows labels, columns predictions) over
    the class set `classes` ((C,) bool, default each matrix's labelled classes), as in
    `reseg.metrics.mean_iou_of`. Returns (...) float64, NaN where no class counts."""
    return mean_iou_of(cm, classes)


@dataclass(frozen=True)
class Interval:
    """A mean (difference) with a bootstrap interval; None fields when not computable.

    `n` counts the units averaged (runs, or tiles for the tile view); `se` and `mde` are
    set by `seed_fold_interval` (module docstring).
    """

    mean: float | None
    low: float | None
    high: float | None
    n: int
    se: float | None = None
    mde: float | None = None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        """'better', 'worse' (interval above / below 0), 'no clear difference' or 'unknown'."""
        if self.low is None or self.high is None:
            return "unknown"
        if self.excludes_zero:
            return "better" if self.low > 0 else "worse"
        return "no clear difference"

    def as_dict(self) -> dict:
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "se": self.se,
            "mde": self.mde,
        }


NONE = Interval(None, None, None, 0)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.nanpercentile(values, [100 * a, 100 * (1 - a)])
    return float(lo), float(hi)


def mde_factor(level: float, power: float) -> float:
    """z_{1 - alpha/2} + z_{power}, alpha = 1 - level: 2.80 at 95% and 80% power."""
    nd = NormalDist()
    return nd.inv_cdf(1 - (1 - level) / 2) + nd.inv_cdf(power)


def seed_fold_interval(
    values: Mapping[tuple[int, int], float | None],
    samples: int,
    level: float,
    seed: int,
    power: float = 0.8,
) -> Interval:
    """Mean of per-run values over folds and seeds, with the two-stage bootstrap interval.

    Args:
        values: (seed, fold) -> a paired difference d_{s,k} (or any per-run figure, such as
            one round's mIoU); None or NaN for runs without a value.
        samples: bootstrap replicates B.
        level: confidence level, e.g. 0.95.
        seed: seed of the resampling.
        power: power of the MDE.

    Returns:
        The mean over folds of the fold means, its expanded percentile interval, SE and MDE
        (module docstring); n = the number of runs. One run gives the mean alone.
    """
    by_fold: dict[int, list[float]] = {}
    for (_, fold), v in sorted(values.items()):
        if v is not None and np.isfinite(v):
            by_fold.setdefault(fold, []).append(float(v))
    vals = [np.asarray(v, np.float64) for v in by_fold.values()]
    n = sum(v.size for v in vals)
    if n == 0:
        return NONE
    estimate = float(np.mean([v.mean() for v in vals]))
    k = len(vals)
    units = k if k > 1 else vals[0].size
    if units < 2:
        return Interval(estimate, None, None, n)
    rng = np.random.default_rng(seed)
    reps = _two_stage(vals, samples, rng) if k > 1 else _one_stage(vals[0], samples, rng)
    reps = estimate + np.sqrt(units / (units - 1)) * (reps - estimate)
    lo, hi = _percentiles(reps, level)
    se = float(reps.std(ddof=1))
    return Interval(estimate, lo, hi, n, se, mde_factor(level, power) * se)


def _one_stage(v: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    return v[rng.integers(0, v.size, size=(samples, v.size))].mean(1)


def _two_stage(vals: list[np.ndarray], samples: int, rng: np.random.Generator) -> np.ndarray:
    """(B,) means of K folds drawn with replacement, each the mean of its seeds redrawn."""
    k = len(vals)
    # m[f, b, j]: fold f's seeds redrawn, for replicate b and draw position j
    m = np.stack([v[rng.integers(0, v.size, size=(samples, k, v.size))].mean(-1) for v in vals])
    drawn = rng.integers(0, k, size=(samples, k))
    return m[drawn, np.arange(samples)[:, None], np.arange(k)[None, :]].mean(1)


def spread(
    values: Mapping[tuple[int, int], float | None],
) -> dict[int, tuple[float | None, float | None, int]]:
    """Per fold: mean, sd over seeds (ddof 1) and count of per-run values (seed, fold) -> v."""
    by_fold: dict[int, list[float | None]] = {}
    for (_, fold), v in sorted(values.items()):
        by_fold.setdefault(fold, []).append(v)
    return {k: mean_sd(v) for k, v in by_fold.items()}


def tile_interval(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], samples: int, level: float, seed: int
) -> Interval:
    """Mean over runs of mIoU(cell) - mIoU(round 0), with a paired, run-stratified tile bootstrap.

    Args:
        pairs: per (seed, fold) run, (round 0 confusions, cell confusions) of the same
            evaluation tiles, each (n_k, C, C).
        samples: bootstrap replicates B.
        level: confidence level, e.g. 0.95.
        seed: seed of the resampling.
    """
    pairs = [(a, b) for a, b in pairs if len(a) and len(a) == len(b)]
    if not pairs:
        return NONE
    rng = np.random.default_rng(seed)
    point, reps = [], []
    for a, b in pairs:
        n, c = a.shape[0], a.shape[-1]
        classes = class_set(a.sum(0))  # the fold's labels: the same for the cell and round 0
        point.append(miou(b.sum(0), classes) - miou(a.sum(0), classes))
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=samples).astype(np.float64)  # (B, n)
        ca = (w @ a.reshape(n, c * c)).reshape(samples, c, c)
        cb = (w @ b.reshape(n, c * c)).reshape(samples, c, c)
        reps.append(miou(cb, classes) - miou(ca, classes))
    mean_reps = np.nanmean(np.stack(reps), 0)
    estimate = float(np.nanmean(point))
    lo, hi = _bias_corrected(mean_reps, estimate, level)
    return Interval(estimate, lo, hi, int(sum(len(a) for a, _ in pairs)))


def _bias_corrected(reps: np.ndarray, estimate: float, level: float) -> tuple[float, float]:
    """Bias-corrected percentile interval of bootstrap replicates `reps` around `estimate`."""
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return estimate, estimate
    nd = NormalDist()
    below = (np.sum(reps < estimate) + 0.5 * np.sum(reps == estimate)) / reps.size
    if below <= 0 or below >= 1:  # every replicate on one side: no correction possible
        return _percentiles(reps, level)
    z0 = nd.inv_cdf(float(below))
    z = nd.inv_cdf(1 - (1 - level) / 2)
    qs = [100 * nd.cdf(2 * z0 - z), 100 * nd.cdf(2 * z0 + z)]
    lo, hi = np.percentile(reps, qs)
    return float(lo), float(hi)


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (None for one value) and count of the non-None values."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)
