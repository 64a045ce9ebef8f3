"""Paired differences against round 0 and their bootstrap confidence intervals.

For a cell and validation fold k, d_k = mIoU_k(cell) - mIoU_k(round 0): the same
validation pixels, predicted by the cell's result (merged rounds, or last round)
and by round 0. The study reports the mean over folds, d = (1/K) sum_k d_k, with
two percentile bootstrap intervals:

- over folds: resample the K values d_k with replacement (B times), take the mean.
  With few folds (K <= 3) this is crude: it has at most a handful of distinct
  values and its interval is about [min d_k, max d_k].
- over validation tiles (stratified by fold, paired): within each fold resample
  the validation tiles with replacement (the same tiles for the cell and round
  0), sum their core confusion matrices, recompute both mIoUs and d_k; average
  over folds. Tile cores partition the scene, so this resamples validation
  pixels in spatially coherent blocks of one tile core. mIoU averages over the
  fold's fixed class set (the classes in the labels of all its validation tiles,
  `reseg.metrics`), the same set in every replicate; a replicate that drew no
  pixel of a class leaves it out of its mean, so the replicates can still be
  biased against the estimate; the interval is the bias-corrected percentile
  interval (Efron 1981):
  with z0 = Phi^-1(share of replicates below the estimate) it takes the
  replicates' quantiles Phi(2 z0 +- z_{1 - alpha/2}) instead of alpha/2 and
  1 - alpha/2.

Neither interval includes the variation between training runs (seeds): every
cell trains each round once. Read them as "how sure are we of this difference on
these validation pixels", not "on any new training run".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reseg.metrics import class_set, mean_iou_of


def miou(cm: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Mean IoU of confusion matrices (..., C, C) (rows labels, columns predictions) over
    the class set `classes` ((C,) bool, default each matrix's labelled classes), as in
    `reseg.metrics.mean_iou_of`. Returns (...) float64, NaN where no class counts."""
    return mean_iou_of(cm, classes)


@dataclass(frozen=True)
class Interval:
    """A mean difference with a bootstrap interval; None fields when not computable."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


NONE = Interval(None, None, None, 0)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.nanpercentile(values, [100 * a, 100 * (1 - a)])
    return float(lo), float(hi)


def fold_interval(d: Sequence[float], samples: int, level: float, seed: int) -> Interval:
    """Mean of the per-fold differences `d` and its bootstrap interval over folds."""
    d = np.asarray([v for v in d if v is not None and np.isfinite(v)], np.float64)
    if d.size == 0:
        return NONE
    if d.size == 1:
        return Interval(float(d[0]), None, None, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(samples, d.size))
    lo, hi = _percentiles(d[idx].mean(1), level)
    return Interval(float(d.mean()), lo, hi, int(d.size))


def tile_interval(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], samples: int, level: float, seed: int
) -> Interval:
    """Mean over folds of mIoU(cell) - mIoU(round 0), with a paired, fold-stratified tile bootstrap.

    Args:
        pairs: per fold, (round 0 confusions, cell confusions) of the same validation tiles,
            each (n_k, C, C).
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
    from statistics import NormalDist

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
