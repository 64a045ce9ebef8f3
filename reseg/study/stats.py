"""Paired comparisons over (seed, fold) runs, calibrated for seeds crossed with fixed folds.

Every cell trains once per seed s and evaluation fold k. For a comparison of A with B
(a cell with round 0, with the all-pixels baseline, with the TTA of round 0; a cell's
merged rounds with its last round; pseudo-label rounds with labelled-pixel rounds) the
unit is the paired difference on one run, d[s, k] = mIoU(A) - mIoU(B): the same
evaluation pixels, the same seed. `paired_comparison` takes the S x K table of these
differences (rows seeds, columns folds) and returns the estimate (the grand mean), a
t-interval, a two-sided p-value and the smallest difference the design could detect.

The model is a crossed two-way random-effects model,

    d[s, k] = delta + a[s] + u[k] + e[s, k],

because the runs are made that way: seed s starts from the same weights in every fold
(`keras.utils.set_random_seed` in the trainer), so a seed's luck a[s] is shared across
folds (seeds are crossed with folds, not nested in them); fold k's evaluation pixels and
training folds give every seed the same shift u[k]; e is what is left. The variance of
the grand mean is sigma_a^2 / S + c sigma_u^2 / K + sigma_e^2 / (S K), estimated from the
two-way ANOVA mean squares (MS_seed, MS_fold, MS_error) as

    V = (MS_seed + c MS_fold - c MS_error) / (S K),

floored at MS_seed / (S K) and c MS_fold / (S K) (each alone is a lower bound whose
expectation is the variance without one non-negative component), with Satterthwaite's
degrees of freedom for that combination of mean squares (Satterthwaite 1946; the usual
small-sample treatment of crossed designs), capped at the df of the larger of MS_seed and
c MS_fold (Satterthwaite is liberal when one mean square with few df dominates: 6.2%
false positives at 2 folds without the cap, 5.6% with it). With 3 seeds that is 2
degrees of freedom, or K - 1 where the folds dominate: 97.5% t quantiles of 4.30 (2 df),
3.18 (3), 2.78 (4), not the normal 1.96.

c >= 1 corrects for fold effects that are correlated because the folds' models share
training folds (fold k trains on every fold but k and its validation fold k + 1, so the
models of folds 0 and 1 of 5 share two training folds). Within one study a component
shared by all folds cannot be told from the effect itself (Bengio and Grandvalet 2004:
no unbiased estimator of the variance of K-fold cross-validation exists), so c comes
from a stated assumption, as in Nadeau and Bengio's (2003) corrected resampled t-test:
a share `share` (default one half) of each fold's effect is the sum of effects of its
training folds, the rest its own. For that covariance of the u[k], c is the ratio of
the variance of their mean to what their sample variance says (`overlap_inflation`):
1.0 at K = 2 and 3 (no two models share a training fold), 1.8 at K = 4, 2.67 at K = 5
when every fold is evaluated. Set `share=0` for folds assumed independent.

`tests/study/test_stats.py` simulates 2,000 studies per setting (K = 2..5, 3 seeds,
fold sd 0 to 0.03, run sd 0.005 to 0.03, a seed effect shared across folds, fold effects
half made of shared training folds): the false-positive rate at delta = 0 stays at or
below the nominal 5% within Monte Carlo error in every setting, and a true difference of
the reported MDE is found at least about 80% of the time. The method is conservative
(1-5% false positives) where one variance component is near zero.

The smallest detectable difference is MDE = m SE, m the noncentrality of Student's t at
which the two-sided test at `level` with df degrees of freedom rejects with probability
`power` (`mde_factor`: 2.80 SE with many degrees of freedom, about 4 SE at 8, 7.7 SE at 2):
a true difference this large is found with probability `power`. An interval that contains
0 with an MDE of 0.04 says "no difference of 0.04 or more could be seen", not "no
difference".

Verdicts. With fewer than `MIN_FOLDS` (3) folds the design cannot separate fold
variation from an effect (one or two fold means; at K = 2 the interval rests on one
degree of freedom for the fold part), so `Comparison.verdict` gives none. A study makes
many comparisons (six per cell and the target section's), so their p-values are
adjusted together with Holm's step-down method (`holm`), which controls the chance of
any false "distinguishable" in the family under any dependence between the comparisons
(they share round 0 and the baselines, which rules out Benjamini-Hochberg's
independence or positive-dependence condition). Holm costs power in a large study (a full
grid makes hundreds of comparisons): the report says how many were adjusted together,
and a question asked in advance is better put to a small study of its own. The words
"distinguishable from zero" follow the adjusted p.

The secondary view, for the comparisons with round 0, resamples evaluation tiles
instead of runs (`tile_interval`): within each (seed, fold) the evaluation tiles with
replacement (the same tiles for the cell and round 0), summing their core confusion
matrices, recomputing both mIoUs and d[s, k]; averaged over runs; the bias-corrected
percentile interval (Efron 1981). It holds the trained models fixed: it says how sure we
are of the difference on these evaluation pixels for these trainings, not for another
training run, and it is never the verdict.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np
from scipy import stats as sps
from scipy.optimize import brentq

from reseg.metrics import class_set, mean_iou_of

MIN_FOLDS = 3
"""Fewest evaluation folds for a verdict (module docstring)."""

TRAINING_SHARE = 0.5
"""Default share of a fold's effect assumed to come from its training folds."""


def miou(cm: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Mean IoU of confusion matrices (..., C, C) (rows labels, columns predictions) over
    the class set `classes` ((C,) bool, default each matrix's labelled classes), as in
    `reseg.metrics.mean_iou_of`. Returns (...) float64, NaN where no class counts."""
    return mean_iou_of(cm, classes)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Comparison:
    """A mean over (seed, fold) runs with its t-interval, p-value and MDE.

    `estimate` is the grand mean of the S x K table actually used (`seeds`, `folds`,
    `n` = S K runs); `p_adj` is set once the comparison is adjusted with its family
    (`holm`). None fields: not computable (no run, or one run).
    """

    estimate: float | None
    low: float | None
    high: float | None
    p: float | None
    mde: float | None
    se: float | None = None
    df: float | None = None
    n: int = 0
    seeds: int = 0
    folds: int = 0
    level: float = 0.95
    inflation: float = 1.0
    p_adj: float | None = None
    family: int | None = None  # how many comparisons p_adj was adjusted over

    @property
    def mean(self) -> float | None:
        return self.estimate

    @property
    def p_final(self) -> float | None:
        """The adjusted p where the comparison was adjusted with its family, else p."""
        return self.p if self.p_adj is None else self.p_adj

    @property
    def excludes_zero(self) -> bool:
        """The (unadjusted) interval excludes 0."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def distinguishable(self) -> bool:
        """A verdict is allowed (K >= MIN_FOLDS) and the (adjusted) p is below 1 - level."""
        p = self.p_final
        return self.folds >= MIN_FOLDS and p is not None and p < 1 - self.level

    @property
    def verdict(self) -> str:
        """'better' / 'worse' (distinguishable, above / below 0), 'no clear difference',
        'no verdict (K < 3)' or 'unknown' (no interval)."""
        if self.estimate is None or self.p is None:
            return "unknown"
        if self.folds < MIN_FOLDS:
            return f"no verdict (K < {MIN_FOLDS})"
        if self.distinguishable:
            return "better" if self.estimate > 0 else "worse"
        return "no clear difference"

    def adjusted(self, p_adj: float | None, family: int | None = None) -> Comparison:
        return replace(self, p_adj=p_adj, family=family)

    def as_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "mean": self.estimate,
            "low": self.low,
            "high": self.high,
            "p": self.p,
            "p_adj": self.p_adj,
            "family": self.family,
            "se": self.se,
            "df": self.df,
            "mde": self.mde,
            "n": self.n,
            "seeds": self.seeds,
            "folds": self.folds,
            "level": self.level,
            "inflation": self.inflation,
            "verdict": self.verdict,
        }


NO_RUNS = Comparison(None, None, None, None, None)


def overlap_inflation(training: Sequence[Sequence[int]], share: float = TRAINING_SHARE) -> float:
    """c: Var(mean of fold effects) over what their sample variance / K says (docstring).

    Args:
        training: per evaluated fold, the folds its models train on.
        share: share of a fold's effect made of its training folds' effects.
    """
    k = len(training)
    if k < 2 or share <= 0:
        return 1.0
    cols = sorted({j for t in training for j in t})
    m = np.zeros((k, len(cols)))
    for i, t in enumerate(training):
        for j in t:
            m[i, cols.index(j)] = 1 / np.sqrt(len(t))
    cov = (1 - share) * np.eye(k) + share * (m @ m.T)
    total = cov.sum()
    expected_s2 = (np.trace(cov) - total / k) / (k - 1)
    if expected_s2 <= 0:
        return float("inf")
    return max(1.0, float((total / k) / expected_s2))


def crossed(d: np.ndarray, inflation: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grand mean, SE and degrees of freedom of complete tables d (..., S, K) (docstring).

    Vectorised over leading axes. S = 1: the fold means alone (K - 1 df, inflated);
    K = 1: the seeds alone (S - 1 df). SE is NaN for a single run.
    """
    d = np.asarray(d, np.float64)
    s, k = d.shape[-2:]
    g = d.mean((-2, -1))
    if s * k < 2:
        nan = np.full(g.shape, np.nan)
        return g, nan, nan
    if s == 1 or k == 1:
        v = d.reshape(*d.shape[:-2], s * k)
        c = inflation if s == 1 else 1.0
        se = np.sqrt(c * v.var(-1, ddof=1) / (s * k))
        return g, se, np.full(g.shape, s * k - 1.0)
    rows, cols = d.mean(-1), d.mean(-2)
    ms_s = k * ((rows - g[..., None]) ** 2).sum(-1) / (s - 1)
    ms_f = s * ((cols - g[..., None]) ** 2).sum(-1) / (k - 1)
    res = d - rows[..., :, None] - cols[..., None, :] + g[..., None, None]
    ms_e = (res**2).sum((-2, -1)) / ((s - 1) * (k - 1))
    c = inflation
    lin = ms_s + c * ms_f - c * ms_e
    den = ms_s**2 / (s - 1) + (c * ms_f) ** 2 / (k - 1) + (c * ms_e) ** 2 / ((s - 1) * (k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        df_lin = np.where(den > 0, lin**2 / den, np.inf)
    floor = np.maximum(ms_s, c * ms_f)
    df_floor = np.where(ms_s >= c * ms_f, s - 1.0, k - 1.0)
    use_lin = lin >= floor
    var = np.where(use_lin, lin, floor) / (s * k)
    # Satterthwaite's df is liberal when one mean square with few df dominates (2 folds,
    # fold variance >> run variance: 6.2% false positives at 95%): never more than the
    # df of the larger of MS_seed and c MS_fold (5.6% at worst in the same simulations)
    df = np.maximum(np.minimum(np.where(use_lin, df_lin, df_floor), df_floor), 1.0)
    return g, np.sqrt(var), df


def _complete(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The largest complete sub-table of d: drop the seed (row) or fold (column) with the
    most missing runs, seeds first on ties (folds carry the design), until none is
    missing. Returns the table and the kept row and column indices."""
    rows, cols = np.arange(d.shape[0]), np.arange(d.shape[1])
    while d.size and np.isnan(d).any():
        miss = np.isnan(d)
        r, c = miss.sum(1), miss.sum(0)
        if r.max() / d.shape[1] >= c.max() / d.shape[0]:
            i = int(r.argmax())
            d, rows = np.delete(d, i, 0), np.delete(rows, i)
        else:
            j = int(c.argmax())
            d, cols = np.delete(d, j, 1), np.delete(cols, j)
    return d, rows, cols


def paired_comparison(
    d,
    level: float = 0.95,
    *,
    power: float = 0.8,
    training: Sequence[Sequence[int]] | None = None,
    share: float = TRAINING_SHARE,
) -> Comparison:
    """The comparison of an S x K table of paired differences (rows seeds, columns folds).

    Args:
        d: array-like (S, K); NaN (or None) for runs without a value. Runs are reduced to
            the largest complete table (`_complete`).
        level: confidence level of the interval (alpha = 1 - level for p).
        power: power of the MDE.
        training: per column, the folds its models train on (for the overlap correction);
            default the reseg scheme over folds 0..K-1 (`reseg.folds.training_folds`).
        share: the assumed share of a fold's effect made of its training folds (docstring);
            0 assumes independent folds.

    Returns:
        `Comparison` with estimate, low, high, p, mde (and se, df, the design used).
    """
    d = np.array(d, dtype=np.float64)  # None becomes NaN
    if d.ndim == 1:
        d = d[None, :]
    if training is None:
        training = [_training_folds(k, d.shape[1]) for k in range(d.shape[1])]
    d, _, cols = _complete(d)
    if d.size == 0:
        return replace(NO_RUNS, level=level)
    s, k = d.shape
    training = [training[j] for j in cols]
    c = overlap_inflation(training, share) if k > 1 else 1.0
    g, se, df = (float(x) for x in crossed(d, c))
    base = Comparison(g, None, None, None, None, None, None, s * k, s, k, level, c)
    if not np.isfinite(se):
        return base
    alpha = 1 - level
    if se == 0:
        p = 1.0 if g == 0 else 0.0
        return replace(base, low=g, high=g, p=p, mde=0.0, se=0.0, df=df)
    t = float(sps.t.ppf(1 - alpha / 2, df))
    p = float(2 * sps.t.sf(abs(g) / se, df))
    mde = mde_factor(level, power, df) * se
    return replace(base, low=g - t * se, high=g + t * se, p=p, mde=mde, se=se, df=df)


def _training_folds(fold: int, k: int) -> list[int]:
    """reseg's scheme (`reseg.folds.training_folds`), inlined to keep this module free of
    the package's configuration imports: every fold but `fold` and (k >= 3) fold + 1."""
    held = {fold, (fold + 1) % k} if k >= 3 else {fold}
    return [f for f in range(k) if f not in held]


def table(
    values: Mapping[tuple[int, int], float | None],
    seeds: Sequence[int] | None = None,
    folds: Sequence[int] | None = None,
) -> np.ndarray:
    """(seed, fold) -> value as an S x K array (rows `seeds`, columns `folds`, default the
    sorted keys), NaN where a run has no value."""
    seeds = sorted({s for s, _ in values}) if seeds is None else list(seeds)
    folds = sorted({k for _, k in values}) if folds is None else list(folds)
    out = np.full((len(seeds), len(folds)), np.nan)
    for (s, k), v in values.items():
        if v is not None and s in seeds and k in folds and np.isfinite(v):
            out[seeds.index(s), folds.index(k)] = v
    return out


def compare_runs(
    values: Mapping[tuple[int, int], float | None],
    k_total: int | None = None,
    level: float = 0.95,
    power: float = 0.8,
    share: float = TRAINING_SHARE,
) -> Comparison:
    """`paired_comparison` of (seed, fold) -> d, with the training folds of the fold ids
    used (evaluation folds of K = `k_total` folds; default the largest fold id + 1)."""
    folds = sorted({k for _, k in values})
    if not folds:
        return replace(NO_RUNS, level=level)
    k_total = k_total or (max(folds) + 1)
    training = [_training_folds(k, k_total) for k in folds]
    d = table(values, folds=folds)
    return paired_comparison(d, level, power=power, training=training, share=share)


def holm(p: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None, and does not count)."""
    idx = [i for i, x in enumerate(p) if x is not None]
    m = len(idx)
    order = sorted(idx, key=lambda i: p[i])  # type: ignore[arg-type, return-value]
    out: list[float | None] = [None] * len(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))  # type: ignore[operator]
        out[i] = running
    return out


def adjust_family(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons with Holm-adjusted p over the family of those with a verdict
    (K >= MIN_FOLDS and a p-value); the others unchanged."""
    counted = [c.p if c.folds >= MIN_FOLDS else None for c in comparisons]
    adj = holm(counted)
    n = sum(p is not None for p in counted)
    return [c.adjusted(a, n) if a is not None else c for c, a in zip(comparisons, adj, strict=True)]


@functools.lru_cache(maxsize=4096)
def _mde_factor(level: float, power: float, df: float) -> float:
    """Solve power(ncp) = `power` for the two-sided t-test; the power is the mean over 4,000
    quantiles of the chi-square scale of the normal power (scipy's noncentral t returns NaN
    for some df, ncp pairs)."""
    crit = float(sps.t.ppf(1 - (1 - level) / 2, df))
    q = sps.chi2.ppf((np.arange(4000) + 0.5) / 4000, df)
    scale = crit * np.sqrt(q / df)

    def gap(ncp: float) -> float:
        return float(np.mean(sps.norm.cdf(ncp - scale) + sps.norm.cdf(-ncp - scale))) - power

    hi = crit + 4.0
    while gap(hi) < 0:
        hi *= 2
    return float(brentq(gap, 0.0, hi, xtol=1e-6))


def mde_factor(level: float, power: float, df: float = np.inf) -> float:
    """The MDE in SEs: the noncentrality at which a two-sided t-test at `level` with `df`
    degrees of freedom rejects with probability `power` (2.80 as df grows at 95% and 80%;
    4.0 at 8 df, 7.7 at 2 df). The shortcut t_{1-a/2} + t_{power} overstates the power
    with few degrees of freedom (about 60% instead of 80% at 2-4 df in the simulations)."""
    if not np.isfinite(df):
        nd = NormalDist()
        return nd.inv_cdf(1 - (1 - level) / 2) + nd.inv_cdf(power)
    return _mde_factor(float(level), float(power), round(float(df), 3))


def spread(
    values: Mapping[tuple[int, int], float | None],
) -> dict[int, tuple[float | None, float | None, int]]:
    """Per fold: mean, sd over seeds (ddof 1) and count of per-run values (seed, fold) -> v."""
    by_fold: dict[int, list[float | None]] = {}
    for (_, fold), v in sorted(values.items()):
        by_fold.setdefault(fold, []).append(v)
    return {k: mean_sd(v) for k, v in by_fold.items()}


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (None for one value) and count of the non-None values."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)


# --------------------------------------------------------------------------- tiles


@dataclass(frozen=True)
class Interval:
    """A mean difference with a tile-bootstrap interval (the secondary view); None fields
    when not computable. `n` counts the tiles."""

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
