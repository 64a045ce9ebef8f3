"""Refinement as a study factor: round 0 with CRF or SLIC, each tuned on the inner validation set.

With `baselines.refine`, every group gets two cells of kind `refine`,
`<group>.refine-crf` and `<group>.refine-slic`. After round 0 of fold k (in the same
job), `reseg.pipeline.steps.tune_refine` tunes both on round 0's scores of the
validation fold (k + 1) mod K (`predict.tune`'s grid) into `<group>/refine/fold<k>`;
each cell takes its method's best setting as evaluated on fold k, written where the
TTA baseline writes its results (`<cell>/fold<k>/eval/metrics.json` and the per-tile
confusions `<cell>/study/merged_fold<k>.npz`), so the report sets it against round 0
with the same paired comparisons (seeds × folds, then tiles) as every other cell. The cell shows the
tuned refinement applied; whether prediction would apply it (`predict.tune.only_if_better`)
is in the tuning's `refine.json`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from reseg import artifacts, layout, storage
from reseg.metrics import scores
from reseg.pipeline import steps
from reseg.study import tilecm

KIND = "refine"
METHODS = ("crf", "slic")
NAMES = {"crf": "DenseCRF", "slic": "SLIC"}


def cell_specs(gid: str, root: Path) -> list[dict[str, Any]]:
    """The refine cells of group `gid` as `Cell` fields (id, kind, label, root, x)."""
    return [
        {
            "id": f"{gid}.refine-{m}",
            "kind": KIND,
            "label": label(m),
            "x": m,
            "root": str(root / "cells" / f"{gid}.refine-{m}"),
        }
        for m in METHODS
    ]


def label(method: str) -> str:
    return f"round 0 + {NAMES[method]} tuned on validation"


def predict_key(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the tuning depends on in a group's raw config (for the r0 job's fingerprint)."""
    p = cfg.get("predict", {})
    return {k: p.get(k) for k in ("crf", "slic", "tune", "rgb_bands")}


def run_refine(ctx: steps.Context, fold: int, cells: dict[str, Path]) -> None:
    """Tune CRF and SLIC on round 0 of `fold` (root `ctx.root`, the group's) and write each
    cell's held-out metrics and per-tile confusions. `cells`: method -> cell root."""
    tuning = steps.tune_refine(ctx, fold, source="r0")
    with np.load(io.BytesIO((tuning / layout.REFINE_TILES_NPZ).read_bytes())) as z:
        keys, per_tile = z["keys"], {m: z[m] for m in METHODS}
    for method, root in cells.items():
        cms = per_tile[method]
        out = storage.path(root) / layout.fold_name(fold) / layout.EVAL
        fp = artifacts.fingerprint("study-refine", tuning.fingerprint, method)
        if not artifacts.is_current(out, fp):
            with artifacts.stage(out, fp, "study-refine") as st:
                m = scores(cms.sum(0), ctx.class_names)
                m["fold"] = fold
                m["refine"] = {
                    "method": method,
                    "setting": tuning.method(method)["best"],
                    "applied_by_prediction": tuning.method(method)["better"],
                    "tuning": str(tuning.path),
                }
                artifacts.write_json(st.dir / layout.METRICS_JSON, m)
        tilecm.save(storage.path(root) / "study" / f"merged_fold{fold}.npz", keys, cms)
