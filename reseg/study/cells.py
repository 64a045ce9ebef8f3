"""The configs of groups and cells: what a resolution, a model and a rounds setting change.

`group_config` turns the base config into a group's (resampled scenes, scaled tiling,
the model, the study's tracking store, one in-process Beam worker); `selections` lists
the `rounds.selection` of every cell of a group, grid first, then the baselines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reseg import artifacts, layout, storage
from reseg.config.rounds import GrowConfig
from reseg.study.config import ModelSpec, StudyConfig, deep_merge
from reseg.study.resample import scaled_tiling

DEFAULT_BEAM = [
    "--runner=DirectRunner",
    "--direct_num_workers=1",
    "--direct_running_mode=in_memory",
]


def _xs(x: Any) -> str:
    """x in a cell id: 5 -> '5', 2.5 -> '2.5', a per-class list -> 'pc' + short hash."""
    if isinstance(x, list):
        return "pc" + artifacts.fingerprint(x)[:6]
    return f"{float(x):g}"


def _x_label(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ",".join(f"{float(v):g}" for v in x) + "]%"
    return f"{float(x):g}%"


def group_config(
    study: StudyConfig,
    base: dict[str, Any],
    root: Path,
    f: int,
    spec: ModelSpec,
    stride: int,
    folds,
) -> dict[str, Any]:
    """The base config (a mapping) at resolution factor `f` with model `spec`, for `folds`."""
    raw = json.loads(json.dumps(base))
    t = raw["tiling"]
    raw["tiling"] = {
        **t,
        **scaled_tiling(t["tile_size"], t["overlap"], t.get("block_size"), f, stride),
    }
    if f > 1:
        scenes_dir = root / "data" / f"res{f}" / "scenes"
        for s in raw["data"]["scenes"]:
            sid = s.get("id") or storage.path(s["image"]).stem
            s["id"] = sid
            s["image"] = str(scenes_dir / f"{sid}.image.tif")
            if s.get("labels"):
                s["labels"] = str(scenes_dir / f"{sid}.labels.tif")
    raw["model"] = {"name": spec.name, "params": dict(spec.params)}
    raw["train"] = {**deep_merge(raw["train"], spec.train), "progress": "log"}
    if study.precision is not None:
        raw["train"]["precision"] = study.precision
    if study.deterministic:  # XLA has no deterministic max-pooling gradient
        raw["train"].update(deterministic=True, jit_compile=False)
    else:
        raw["train"]["deterministic"] = False
    if not study.restore_best:  # fixed epochs: no epoch chosen on any held-out pixel
        raw["train"].update(restore_best=False, early_stopping=None)
    raw["rounds"] = {**raw["rounds"], "folds": list(folds)}
    raw["beam"] = {"args": list(study.beam_args or DEFAULT_BEAM)}
    raw["tracking"] = {
        **raw["tracking"],
        "uri": layout.tracking_uri(root),
        "experiment": study.name,
    }
    return raw


def seeded(raw: dict[str, Any], seed: int) -> dict[str, Any]:
    """A group's or cell's config (a mapping) with `train.seed` = `seed`; a new mapping."""
    out = json.loads(json.dumps(raw))
    out["train"]["seed"] = seed
    return out


def seed_root(root: str | Path, seed: int) -> Path:
    """The pipeline root of one seed of a group or cell: `<group or cell>/seed<s>`."""
    return storage.path(root) / f"seed{seed}"


def selections(study: StudyConfig, base_sel: dict[str, Any]) -> list[tuple[str, str, dict, Any]]:
    """(kind, short id, selection mapping, x) of every cell of a group, grid first."""
    g, b = study.grid, study.baselines
    plain = {**base_sel, "grow": None, "threshold": None}
    out = []
    for score in g.score:
        for direction in g.direction:
            if direction == "band":
                for lo, hi in g.band:
                    sel = {**plain, "score": score, "direction": "band", "band": [lo, hi]}
                    out.append(("grid", f"{score}.band{lo:g}-{hi:g}", sel, [lo, hi]))
                continue
            for x in g.percent:
                sel = {**plain, "score": score, "direction": direction, "percent": x, "band": None}
                out.append(("grid", f"{score}.{direction}{_xs(x)}", sel, x))
    if b.all_pixels:
        sel = {
            **plain,
            "direction": "top",
            "percent": 100.0,
            "band": None,
            "correct_only": False,
            "weighting": "only",
        }
        out.append(("all_pixels", "all_pixels", sel, 100.0))
    if b.bottom is not None:
        sel = {
            **plain,
            "direction": "bottom",
            "percent": b.bottom.percent,
            "band": None,
            "min_kept": b.bottom.min_kept,
        }
        out.append(("bottom", f"bottom{_xs(b.bottom.percent)}", sel, b.bottom.percent))
    if b.cbst is not None:
        c = b.cbst
        sel = {**plain, "direction": "top", "band": None, "grow": c.model_dump()}
        out.append(
            (
                "cbst",
                f"cbst{c.start:g}-{c.step:g}-{c.max:g}",
                sel,
                f"{c.start:g}+{c.step:g}/round<={c.max:g}",
            )
        )
    return out


ROUND0_KINDS = ("tta", "refine")
"""Cells made from round 0's model alone (no rounds, no last round): their result stands in
the `merged` column."""


def pseudo_cells(study: StudyConfig) -> list[tuple[str, str, dict, Any]]:
    """(kind, short id, `rounds.pseudo` mapping, x) of the pseudo-label cells of a group."""
    p = study.pseudo
    if p is None:
        return []
    common = {"score": p.score, "floor": p.floor, "weight": p.weight, "grow": None}
    out = [
        ("pseudo", f"pseudo{_xs(x)}", {**common, "percent": float(x)}, float(x)) for x in p.percent
    ]
    if p.cbst:
        c = study.baselines.cbst or GrowConfig(start=20, step=5, max=50)
        grow = c.model_dump()
        x = f"{c.start:g}+{c.step:g}/round<={c.max:g}"
        out.append(
            (
                "pseudo_cbst",
                f"pseudo_cbst{c.start:g}-{c.step:g}-{c.max:g}",
                {**common, "grow": grow},
                x,
            )
        )
    return out


def cell_label(kind: str, sel: dict, x: Any) -> str:
    """A cell's setting in words, for tables."""
    if kind == "pseudo":
        return f"pseudo-labels top {_x_label(x)}, {sel['score']}"
    if kind == "pseudo_cbst":
        return f"pseudo-labels CBST {x}%, {sel['score']}"
    if kind == "all_pixels":
        return "all pixels (more training)"
    if kind == "cbst":
        return f"CBST top {x}%"
    if kind == "tta":
        return f"TTA of round 0 ({x} transforms)"
    if sel["direction"] == "band":
        return f"band {x[0]:g}-{x[1]:g} pct, {sel['score']}"
    return f"{sel['direction']} {_x_label(x)}, {sel['score']}"
