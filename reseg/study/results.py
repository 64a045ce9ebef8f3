"""What the study measured, read back from the cells' artifacts into one table.

Every number comes from files on disk (metrics.json, selection.json,
score_hist.json, the per-tile confusions of the study jobs) of every
(seed, evaluation fold) run, so the report can be written for a finished or a
partial study. `collect` also pairs each cell with round 0, the all-pixels
baseline, the TTA of round 0 and its own last round run by run (`COMPARISONS`)
and gives each comparison its seeds x folds t-interval, p-value and MDE
(`reseg.study.stats.paired_comparison`), the p-values Holm-adjusted over the study's
family of comparisons (`adjust`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reseg import layout
from reseg.study import stats, tilecm
from reseg.study.cells import ROUND0_KINDS, seed_root
from reseg.study.plan import Cell, Group, Plan


@dataclass
class FoldData:
    """One cell on one (seed, evaluation fold) run."""

    rounds: dict[int, float | None] = field(default_factory=dict)  # round -> mIoU
    rounds_pc: dict[int, dict[str, float | None]] = field(default_factory=dict)
    merged: float | None = None
    merged_pc: dict[str, float | None] = field(default_factory=dict)
    last_round: int | None = None
    jaccard: dict[int, float | None] = field(default_factory=dict)  # round -> mean over classes
    selected: dict[int, int] = field(default_factory=dict)
    hist: dict[int, dict] = field(default_factory=dict)  # round -> score_hist.json

    @property
    def r0(self) -> float | None:
        return self.rounds.get(0)

    @property
    def last(self) -> float | None:
        return None if self.last_round is None else self.rounds.get(self.last_round)

    def value(self, what: str, r: int | None = None) -> float | None:
        """`r0`, `last`, `merged`, or `round` r's mIoU."""
        return self.rounds.get(r) if what == "round" else getattr(self, what)  # type: ignore[arg-type]


Run = tuple[int, int]
"""(seed, evaluation fold)."""

COMPARISONS: tuple[tuple[str, str, str, str, str], ...] = (
    # key, words, this cell's figure, the other side (self or a baseline kind), its figure
    ("vs_r0", "merged − round 0", "merged", "self", "r0"),
    ("last_vs_r0", "last round − round 0", "last", "self", "r0"),
    (
        "vs_all_pixels",
        "merged − all pixels (same rounds and epochs)",
        "merged",
        "all_pixels",
        "merged",
    ),
    ("last_vs_all_pixels", "last round − all pixels' last round", "last", "all_pixels", "last"),
    ("vs_tta", "merged − TTA of round 0 (as many predictions)", "merged", "tta", "merged"),
    ("merged_vs_last", "merged − last round", "merged", "self", "last"),
)
"""The paired comparisons of every cell, each over the (seed, fold) runs both sides have."""


@dataclass
class CellResult:
    cell: Cell
    group: Group
    runs: dict[Run, FoldData]
    bootstrap: dict[str, Any] = field(default_factory=dict)
    d_merged: stats.Interval = stats.NONE  # tile view: merged − round 0
    d_last: stats.Interval = stats.NONE  # tile view: last round − round 0
    comparisons: dict[str, stats.Comparison] = field(default_factory=dict)  # seeds x folds
    k_total: int | None = None  # tiling.folds (the overlap correction's fold scheme)

    @property
    def complete(self) -> bool:
        return bool(self.runs) and all(f.merged is not None for f in self.runs.values())

    def values(self, what: str, r: int | None = None) -> dict[Run, float | None]:
        """Per run: `r0`, `last`, `merged` or `round` (with r) mIoU."""
        return {k: f.value(what, r) for k, f in self.runs.items()}

    def over_runs(self, what: str, r: int | None = None) -> tuple[float | None, float | None, int]:
        """Mean, sd and count over (seed, fold) runs of `r0`, `last`, `merged` or `round` r."""
        return stats.mean_sd(list(self.values(what, r).values()))

    def interval(self, what: str, r: int | None = None) -> stats.Comparison:
        """Mean over folds and seeds of a figure, with its seeds x folds t-interval."""
        return runs_comparison(self.values(what, r), self.k_total, self.bootstrap)

    def class_iou(self, what: str, name: str) -> float | None:
        """Mean over runs of class `name`'s IoU for `r0`, `last` or `merged`."""
        vals = []
        for f in self.runs.values():
            if what == "merged":
                vals.append(f.merged_pc.get(name))
            else:
                r = 0 if what == "r0" else f.last_round
                vals.append(f.rounds_pc.get(r, {}).get(name) if r is not None else None)
        return stats.mean_sd(vals)[0]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _pc(metrics: dict | None) -> dict[str, float | None]:
    return {k: v.get("iou") for k, v in (metrics or {}).get("per_class", {}).items()}


def _jaccard(sel: dict | None) -> float | None:
    vals = [
        v["jaccard_previous"]
        for v in (sel or {}).get("per_class", {}).values()
        if v.get("jaccard_previous") is not None
    ]
    return float(np.mean(vals)) if vals else None


def _fold_data(plan: Plan, cell: Cell, group: Group, seed: int, fold: int) -> FoldData:
    fd = FoldData()
    r0 = _json(layout.eval_dir(seed_root(group.root, seed), 0, fold) / layout.METRICS_JSON)
    fd.rounds[0] = (r0 or {}).get("mean_iou")
    fd.rounds_pc[0] = _pc(r0)
    root = seed_root(cell.root, seed)
    if cell.kind in ROUND0_KINDS:
        m = _json(root / layout.fold_name(fold) / "eval" / layout.METRICS_JSON)
        fd.merged, fd.merged_pc = (m or {}).get("mean_iou"), _pc(m)
        return fd
    for r in range(plan.rounds + 1):
        m = r0 if r == 0 else _json(layout.eval_dir(root, r, fold) / layout.METRICS_JSON)
        sel = _json(layout.selection_dir(root, r, fold) / layout.SELECTION_JSON)
        if m is not None and r > 0:
            fd.rounds[r], fd.rounds_pc[r] = m.get("mean_iou"), _pc(m)
        if m is not None:
            fd.last_round = r
        if sel is not None:
            fd.jaccard[r] = _jaccard(sel)
            fd.selected[r] = int(sel.get("selected", 0))
        h = _json(layout.selection_dir(root, r, fold) / layout.SCORE_HIST_JSON)
        if h is not None:
            fd.hist[r] = h
    mm = _json(layout.merged_eval_dir(root, fold) / layout.METRICS_JSON)
    fd.merged, fd.merged_pc = (mm or {}).get("mean_iou"), _pc(mm)
    return fd


def _baseline(results: list[CellResult], group: str, kind: str) -> CellResult | None:
    return next(
        (
            r
            for r in results
            if r.cell.group == group and (r.cell.kind == kind or kind in r.cell.aliases)
        ),
        None,
    )


def _paired(a: CellResult, what: str, b: CellResult, b_what: str) -> dict[Run, float | None]:
    out: dict[Run, float | None] = {}
    for run, fa in a.runs.items():
        fb = b.runs.get(run)
        va, vb = fa.value(what), (fb.value(b_what) if fb else None)
        out[run] = None if va is None or vb is None else va - vb
    return out


def runs_comparison(
    values: dict[Run, float | None], k_total: int | None, b: dict[str, Any] | None
) -> stats.Comparison:
    """`stats.compare_runs` with the study's `bootstrap` settings (level, power, share)."""
    b = b or {}
    return stats.compare_runs(
        values,
        k_total,
        b.get("level", 0.95),
        b.get("power", 0.8),
        b.get("training_share", stats.TRAINING_SHARE),
    )


def compare(results: list[CellResult], b: dict[str, Any]) -> None:
    """Fill every result's `comparisons` (`COMPARISONS`) with seeds x folds comparisons
    (unadjusted: `adjust` corrects them as one family)."""
    for r in results:
        for key, _, what, other, other_what in COMPARISONS:
            if r.cell.kind in ROUND0_KINDS and key != "vs_r0":
                continue
            if other == "self":
                base = r
            else:
                base = _baseline(results, r.cell.group, other)
                if base is None or base is r:
                    continue
            r.comparisons[key] = runs_comparison(_paired(r, what, base, other_what), r.k_total, b)


def family(results: list[CellResult]) -> list[tuple[CellResult, str]]:
    """The (cell, comparison key) pairs of the study's comparisons, in report order."""
    return [(r, key) for r in results for key, *_ in COMPARISONS if key in r.comparisons]


def adjust(results: list[CellResult], extra: list[stats.Comparison] = ()) -> list[stats.Comparison]:
    """Holm-adjust every cell's comparisons and `extra` (the target section's) as one family.

    Replaces the cells' comparisons in place; returns `extra` adjusted.
    """
    keys = family(results)
    done = stats.adjust_family([r.comparisons[k] for r, k in keys] + list(extra))
    for (r, k), c in zip(keys, done, strict=False):
        r.comparisons[k] = c
    return done[len(keys) :]


def collect(plan: Plan) -> list[CellResult]:
    """Every cell of the plan with what is on disk, its comparisons and tile-view intervals."""
    b = plan.study["bootstrap"]
    runs = [(s, k) for s in plan.seeds for k in plan.folds]
    out = []
    for i, cell in enumerate(plan.cells):
        group = plan.group(cell.group)
        data = {(s, k): _fold_data(plan, cell, group, s, k) for s, k in runs}
        res = CellResult(cell, group, data, b, k_total=plan.tiling_folds)
        seed = b["seed"] + i
        for what in ("merged", "last"):
            if cell.kind in ROUND0_KINDS and what == "last":
                continue
            pairs = []
            for s, k in runs:
                a = tilecm.load(seed_root(group.root, s) / "study" / f"r0_fold{k}.npz")
                c = tilecm.load(seed_root(cell.root, s) / "study" / f"{what}_fold{k}.npz")
                if a is not None and c is not None:
                    pairs.append(tilecm.aligned(a, c))
            setattr(res, f"d_{what}", stats.tile_interval(pairs, b["samples"], b["level"], seed))
        out.append(res)
    compare(out, b)
    adjust(out)
    return out


def seed_spread(plan: Plan, results: list[CellResult]) -> list[dict[str, Any]]:
    """Per group and fold: round 0's mIoU, mean and sd over seeds (the training-run spread)."""
    rows = []
    for g in plan.groups:
        first = next((r for r in results if r.cell.group == g.id), None)
        if first is None:
            continue
        for fold, (m, sd, n) in stats.spread(first.values("r0")).items():
            rows.append({"group": g.id, "fold": fold, "mean": m, "sd": sd, "seeds": n})
    return rows


def to_json(results: list[CellResult]) -> list[dict[str, Any]]:
    """A JSON-able summary per cell (results.json)."""
    rows = []
    for r in results:
        c = r.cell
        rows.append(
            {
                "cell": c.id,
                "group": c.group,
                "resolution": r.group.resolution,
                "model": r.group.model,
                "kind": c.kind,
                "aliases": c.aliases,
                "label": c.label,
                "score": c.score,
                "direction": c.direction,
                "x": c.x,
                "complete": r.complete,
                "r0": r.over_runs("r0")[:2],
                "last": r.over_runs("last")[:2],
                "merged": r.over_runs("merged")[:2],
                "per_run": {
                    f"seed{s}.fold{k}": {
                        "seed": s,
                        "fold": k,
                        "rounds": f.rounds,
                        "merged": f.merged,
                        "jaccard": f.jaccard,
                        "selected": f.selected,
                    }
                    for (s, k), f in r.runs.items()
                },
                "comparisons": {k: iv.as_dict() for k, iv in r.comparisons.items()},
                "delta_merged_tiles": r.d_merged.as_dict(),
                "delta_last_tiles": r.d_last.as_dict(),
            }
        )
    return rows
