"""Refinement as a study factor: the plan's refine cells, and the cells' results from round 0's
scores on the demo (tuned on the validation fold, evaluated on the fold, intervals vs round 0)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reseg import artifacts, layout
from reseg.pipeline import steps
from reseg.study import tilecm
from reseg.study.cells import seed_root
from reseg.study.config import load_study
from reseg.study.plan import build_plan, config_of
from reseg.study.refine import run_refine
from reseg.study.report import write_study_report
from reseg.study.results import collect

REPO = Path(__file__).resolve().parents[2]
TUNE = {
    "crf": {"bilateral_sxy": ["300 m"], "bilateral_sstd": [0.5], "bilateral_compat": [3]},
    "slic": {"size": ["150 m", 3], "compactness": [0.5]},
    "bootstrap": 200,
}


def _plan(tmp_path, refine=True, tune=TUNE, name="s"):
    doc = {
        "name": "r",
        "base": str(REPO / "examples" / "demo_landsat.yaml"),
        "overrides": {"predict": {"tune": tune}},
        "grid": {"percent": [5]},
        "baselines": {"refine": refine, "tta": False, "bottom": None, "cbst": None},
        "folds": [0],
        "bootstrap": {"samples": 300},
    }
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    study, base = load_study(tmp_path / f"{name}.yaml")
    return build_plan(study, base, tmp_path / "root")


def test_refine_cells_and_their_round_zero_jobs(landsat, tmp_path):
    plan = _plan(tmp_path)
    cells = {c.id: c for c in plan.cells}
    for m in ("crf", "slic"):
        c = cells[f"res1-unet.refine-{m}"]
        assert (c.kind, c.x, c.config) == ("refine", m, None)
    r0 = plan.job("r0.res1-unet.seed0.fold0")
    assert r0.params["refine_cells"] == ["res1-unet.refine-crf", "res1-unet.refine-slic"]
    assert r0.params["refine"]["tune"]["slic"]["size"] == ["150 m", 3]
    # the grid is part of round 0's fingerprint; without refine the job is as before
    other = _plan(tmp_path, name="b", tune={**TUNE, "slic": {"size": [5], "compactness": [1]}})
    assert other.job(r0.id).fingerprint != r0.fingerprint
    off = _plan(tmp_path, name="c", refine=False)
    assert not any(c.kind == "refine" for c in off.cells)
    assert "refine_cells" not in off.job(r0.id).params


@pytest.mark.slow  # the demo's rounds (shared fixture)
def test_refine_cells_are_compared_with_round_zero_like_every_cell(demo_rounds, tmp_path):
    ref_root, _, _ = demo_rounds
    plan = _plan(tmp_path)
    g = plan.groups[0]
    groot = seed_root(g.root, 0)
    groot.mkdir(parents=True)
    for name in ("tiles", "stats", "rounds"):  # the demo's round 0 stands in for the group's
        (groot / name).symlink_to(ref_root / name, target_is_directory=True)
    tilecm.save(
        groot / "study" / "r0_fold0.npz",
        *tilecm.tile_confusions(layout.scores_dir(groot, 0, 0), 0, len(plan.class_names)),
    )
    cfg = config_of(g.config, g.id)
    cells = {c.x: seed_root(c.root, 0) for c in plan.cells if c.kind == "refine"}
    run_refine(steps.Context(cfg, groot), 0, cells)

    tuning = artifacts.RefineTuning.load(layout.refine_dir(groot, 0))
    assert tuning.record["source"]["label"] == "r0" and tuning.record["validation_fold"] == 1
    results = {r.cell.id: r for r in collect(plan)}
    r0 = artifacts.Metrics.load(layout.eval_dir(groot, 0, 0)).mean_iou
    for m in ("crf", "slic"):
        res = results[f"res1-unet.refine-{m}"]
        held = tuning.method(m)["evaluation"]["mean_iou"]
        assert res.over_runs("merged")[0] == pytest.approx(held)
        assert res.over_runs("r0")[0] == pytest.approx(r0)
        iv = res.d_merged
        assert iv.mean == pytest.approx(held - tuning.record["none"]["evaluation"]["mean_iou"])
        assert iv.low is not None and iv.low <= iv.mean <= iv.high
        assert res.over_runs("last")[0] is None
    md = write_study_report(plan).read_text()
    assert "round 0 + DenseCRF tuned on validation" in md and "refine-slic" in md
