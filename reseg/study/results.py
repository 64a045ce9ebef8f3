"""What the study measured, read back from the cells' artifacts into one table.

Every number comes from files on disk (metrics.json, selection.json,
score_hist.json, the per-tile confusions of the study jobs), so the report can be
written for a finished or a partial study.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reseg import layout
from reseg.study import stats, tilecm
from reseg.study.cells import ROUND0_KINDS
from reseg.study.plan import Cell, Group, Plan


@dataclass
class FoldData:
    """One cell on one validation fold."""

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


@dataclass
class CellResult:
    cell: Cell
    group: Group
    folds: dict[int, FoldData]
    d_merged: stats.Interval = stats.NONE
    d_merged_folds: stats.Interval = stats.NONE
    d_last: stats.Interval = stats.NONE
    d_last_folds: stats.Interval = stats.NONE

    @property
    def complete(self) -> bool:
        return bool(self.folds) and all(f.merged is not None for f in self.folds.values())

    def over_folds(self, what: str, r: int | None = None) -> tuple[float | None, float | None, int]:
        """Mean, sd and count over folds of `r0`, `last`, `merged` or `round` (with r)."""
        vals = [
            (f.rounds.get(r) if what == "round" else getattr(f, what)) for f in self.folds.values()
        ]
        return stats.mean_sd(vals)

    def class_iou(self, what: str, name: str) -> float | None:
        """Mean over folds of class `name`'s IoU for `r0`, `last` or `merged`."""
        vals = []
        for f in self.folds.values():
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


def _fold_data(plan: Plan, cell: Cell, group: Group, fold: int) -> FoldData:
    fd = FoldData()
    r0 = _json(layout.eval_dir(group.root, 0, fold) / layout.METRICS_JSON)
    fd.rounds[0] = (r0 or {}).get("mean_iou")
    fd.rounds_pc[0] = _pc(r0)
    root = Path(cell.root)
    if cell.kind in ROUND0_KINDS:
        m = _json(root / layout.fold_name(fold) / "eval" / layout.METRICS_JSON)
        fd.merged, fd.merged_pc = (m or {}).get("mean_iou"), _pc(m)
        return fd
    for r in range(plan.rounds + 1):
        m = _json(layout.eval_dir(root, r, fold) / layout.METRICS_JSON)
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


def collect(plan: Plan) -> list[CellResult]:
    """Every cell of the plan with what is on disk, and its intervals against round 0."""
    b = plan.study["bootstrap"]
    out = []
    for i, cell in enumerate(plan.cells):
        group = plan.group(cell.group)
        folds = {k: _fold_data(plan, cell, group, k) for k in plan.folds}
        res = CellResult(cell, group, folds)
        seed = b["seed"] + i
        for what in ("merged", "last"):
            if cell.kind in ROUND0_KINDS and what == "last":
                continue
            d = [
                (getattr(f, what) - f.r0)
                if getattr(f, what) is not None and f.r0 is not None
                else None
                for f in folds.values()
            ]
            pairs = []
            for k in plan.folds:
                a = tilecm.load(Path(group.root) / "study" / f"r0_fold{k}.npz")
                c = tilecm.load(Path(cell.root) / "study" / f"{what}_fold{k}.npz")
                if a is not None and c is not None:
                    pairs.append(tilecm.aligned(a, c))
            setattr(res, f"d_{what}_folds", stats.fold_interval(d, b["samples"], b["level"], seed))
            setattr(res, f"d_{what}", stats.tile_interval(pairs, b["samples"], b["level"], seed))
        out.append(res)
    return out


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
                "r0": r.over_folds("r0")[:2],
                "last": r.over_folds("last")[:2],
                "merged": r.over_folds("merged")[:2],
                "per_fold": {
                    str(k): {
                        "rounds": f.rounds,
                        "merged": f.merged,
                        "jaccard": f.jaccard,
                        "selected": f.selected,
                    }
                    for k, f in r.folds.items()
                },
                "delta_merged_tiles": r.d_merged.as_dict(),
                "delta_merged_folds": r.d_merged_folds.as_dict(),
                "delta_last_tiles": r.d_last.as_dict(),
                "delta_last_folds": r.d_last_folds.as_dict(),
            }
        )
    return rows
