"""Pseudo-label cells of a study and the verdict of its target section."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reseg.config import parse_config
from reseg.errors import ConfigError
from reseg.study.config import load_study
from reseg.study.plan import build_plan
from reseg.study.target import verdict

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name", ["study_pseudo_landsat.yaml", "study_pseudo_loveda.yaml", "study_pseudo_sentinel2.yaml"]
)
def test_pseudo_cells_carry_rounds_pseudo_and_the_labelled_cells_do_not(name, tmp_path):
    quick = build_plan(*load_study(REPO / "examples" / name, "quick"), tmp_path / "quick")
    # quick: source only, today's labelled-pixel rounds, fixed x and CBST's schedule
    assert {c.kind for c in quick.cells} == {"grid", "pseudo", "pseudo_cbst"}
    # every fold of the tile set: at least 3, so the design can give a verdict
    k = quick.tiling_folds
    assert k >= 3 and quick.folds == list(range(k)) and quick.seeds == [0, 1, 2]
    study, base = load_study(REPO / "examples" / name)
    plan = build_plan(study, base, tmp_path / "root")
    kinds = {c.kind for c in plan.cells}
    assert {"grid", "cbst", "pseudo", "pseudo_cbst"} <= kinds
    for c in plan.cells:
        cfg = parse_config(c.config)
        assert cfg.data.has_target  # every cell is evaluated on the target pixels
        if c.kind == "pseudo_cbst":
            assert cfg.rounds.pseudo.grow.model_dump() == {"start": 20, "step": 5, "max": 50}
        elif c.kind == "pseudo":
            assert cfg.rounds.pseudo.grow is None and cfg.rounds.pseudo.percent in (20, 50)
        else:  # today's labelled-pixel rounds
            assert cfg.rounds.pseudo is None
    assert {c.x for c in plan.cells if c.kind == "pseudo"} == {20.0, 50.0}


def test_a_pseudo_study_needs_pixels_without_labels(tmp_path):
    doc = {"name": "s", "base": str(REPO / "examples" / "demo_landsat.yaml"), "pseudo": {}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    study, base = load_study(path)
    with pytest.raises(ConfigError, match="rounds.pseudo needs pixels without training labels"):
        build_plan(study, base, tmp_path / "root")


def _cmp(mean, low, high, p, p_adj=None, folds=3):
    from reseg.study.stats import Comparison

    return Comparison(mean, low, high, p, 0.03, 0.01, 4.0, 3 * folds, 3, folds, p_adj=p_adj)


def _row(kind, label, mean, low, high, p=0.01, p_adj=None, cell=None):
    d = {"mean": mean, "low": low, "high": high, "n": 10}
    c = _cmp(mean, low, high, p, p_adj)
    return {
        "cell": cell or label,
        "group": "g",
        "kind": kind,
        "label": label,
        "r0": (0.3, None, 2),
        "runs_last": c,
        "runs_merged": c,
        "d_last": d,
        "d_merged": d,
    }


def test_the_verdict_says_help_hurt_or_no_difference_after_holm():
    rows = [
        _row("pseudo", "pseudo 20%", 0.04, 0.01, 0.07, p=0.004, p_adj=0.02),
        _row("pseudo_cbst", "pseudo CBST", 0.02, -0.01, 0.05, p=0.2, p_adj=0.6),
        _row("grid", "top 20%", 0.005, -0.01, 0.02, p=0.4, p_adj=0.8),
    ]
    pairs = [
        {
            "group": "g",
            "labelled": "top 20%",
            "pseudo": "pseudo 20%",
            "runs": _cmp(0.035, 0.005, 0.065, 0.03, 0.09),
            "tiles": {"mean": 0.03, "low": 0.02, "high": 0.04, "n": 80},
        }
    ]
    (line,) = verdict(rows, pairs)
    assert "pseudo-label rounds help" in line and "pseudo 20%" in line
    assert "+0.040 [+0.010, +0.070] (p = 0.004, Holm p = 0.02)" in line and "top 20%" in line
    # raw p 0.03 but Holm p 0.09: the words follow the adjusted p
    assert "pseudo-labels minus labelled-pixel rounds: +0.035" in line
    assert "no difference we can tell (MDE 0.030)" in line
    rows[0] = _row("pseudo", "pseudo 20%", -0.04, -0.07, -0.01, p_adj=0.01)
    rows[1] = _row("pseudo_cbst", "pseudo CBST", -0.05, -0.08, -0.02, p_adj=0.01)
    assert "hurt" in verdict(rows, [])[0]
    # a cell that survives Holm is named even when another has the larger mean
    assert "pseudo CBST" in verdict(rows, [])[0]
    rows[0] = _row("pseudo", "pseudo 20%", 0.01, -0.02, 0.03, p=0.01, p_adj=0.07)
    assert "hurt" in verdict(rows, [])[0] and "pseudo CBST" in verdict(rows, [])[0]
    rows[1] = _row("pseudo_cbst", "pseudo CBST", -0.01, -0.04, 0.02, p=0.3, p_adj=0.9)
    assert "no difference" in verdict(rows, [])[0]
    rows[0]["runs_last"] = _cmp(0.04, 0.01, 0.07, 0.001, folds=2)
    assert "no verdict (K < 3)" in verdict(rows, [])[0]


def test_pseudo_minus_labelled_is_paired_over_target_tiles(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from reseg.study import tilecm
    from reseg.study.target import paired

    rng = np.random.default_rng(0)
    keys = np.array([f"t/{i}/0" for i in range(40)])
    truth = rng.integers(0, 3, (40, 200))
    worse = np.where(rng.random((40, 200)) < 0.5, truth, (truth + 1) % 3)
    better = np.where(rng.random((40, 200)) < 0.8, truth, (truth + 1) % 3)

    def cms(pred):
        out = np.zeros((40, 3, 3), np.int64)
        for i in range(40):
            np.add.at(out[i], (truth[i], pred[i]), 1)
        return out

    rows = {}
    for name, pred in (("lab", worse), ("pseudo", better)):
        root = tmp_path / name
        for k in (0, 1):
            tilecm.save(root / "seed0" / "study" / f"last_target_fold{k}.npz", keys, cms(pred))
        rows[name] = {"root": str(root)}
    plan = SimpleNamespace(
        seeds=[0], folds=[0, 1], study={"bootstrap": {"samples": 500, "level": 0.95, "seed": 0}}
    )
    d = paired(plan, rows["lab"], rows["pseudo"])
    assert d["mean"] > 0.2 and d["low"] > 0 and d["n"] == 80
    assert paired(plan, rows["pseudo"], rows["lab"])["high"] < 0


def test_pseudo_minus_labelled_is_paired_over_seeds_and_folds_on_the_last_round(tmp_path):
    """Each (seed, fold) run pairs the two cells' last-round target mIoU (a cell that stopped
    early: its last round), and a run that lacks one side drops out."""
    from types import SimpleNamespace

    from reseg import artifacts, layout
    from reseg.study.target import paired_runs

    def put(cell, seed, r, k, miou):
        d = layout.target_eval_dir(tmp_path / cell / f"seed{seed}", r, k)
        d.mkdir(parents=True)
        artifacts.write_json(d / layout.METRICS_JSON, {"mean_iou": miou})

    for s in (0, 1, 2):
        for k in (0, 1):
            put("lab", s, 2, k, 0.50 + 0.01 * s + 0.02 * k)
            v = 0.53 + 0.01 * s + 0.02 * k + 0.002 * s
            if (s, k) == (2, 1):  # this run never ran for the pseudo cell
                continue
            if (s, k) == (1, 1):  # stopped after round 1
                put("pseudo", s, 1, k, v)
            else:
                put("pseudo", s, 1, k, 0.10)  # an earlier round, not the last one
                put("pseudo", s, 2, k, v)
    plan = SimpleNamespace(
        seeds=[0, 1, 2],
        folds=[0, 1],
        rounds=2,
        tiling_folds=4,
        study={"bootstrap": {"samples": 500, "level": 0.95, "seed": 0}},
    )
    rows = {n: {"root": str(tmp_path / n)} for n in ("lab", "pseudo")}
    d = paired_runs(plan, rows["lab"], rows["pseudo"])
    # seed 2 lacks fold 1: the complete table is seeds 0, 1 x folds 0, 1, d = 0.03 + 0.002 s
    assert (d.n, d.seeds, d.folds) == (4, 2, 2)
    assert abs(d.estimate - 0.031) < 1e-9
    assert d.low <= d.estimate <= d.high and d.verdict == "no verdict (K < 3)"
    assert abs(paired_runs(plan, rows["pseudo"], rows["lab"]).estimate + 0.031) < 1e-9


def test_merged_target_difference_pairs_round_0_on_the_merged_tiles_only(tmp_path):
    """The merge covers the evaluation fold's target tiles only: its seeds x folds difference
    to round 0 is taken on those tiles, not against round 0 on every target pixel."""
    from types import SimpleNamespace

    import numpy as np

    from reseg import artifacts, layout
    from reseg.metrics import scores
    from reseg.study import tilecm
    from reseg.study.target import target_rows

    good = np.array([[50, 0], [0, 50]], np.int64)
    bad = np.array([[10, 40], [40, 10]], np.int64)
    keys = np.array(["t/0", "t/1", "t/2", "t/3"])
    r0_cms = np.stack([good, good, bad, bad])  # round 0: right on t/0, t/1 only
    g, c = tmp_path / "g" / "seed0", tmp_path / "c" / "seed0"
    tilecm.save(g / "study" / "r0_target_fold0.npz", keys, r0_cms)
    d = layout.target_eval_dir(g, 0, 0)
    d.mkdir(parents=True)
    r0_all = scores(r0_cms.sum(0))["mean_iou"]
    artifacts.write_json(d / layout.METRICS_JSON, {"mean_iou": r0_all})
    # the merge: fold 0's tiles t/0 and t/1, as right as round 0 there
    tilecm.save(c / "study" / "merged_target_fold0.npz", keys[:2], r0_cms[:2])
    d = layout.merged_target_dir(c, 0)
    d.mkdir(parents=True)
    artifacts.write_json(d / layout.METRICS_JSON, {"mean_iou": 1.0})
    cell = SimpleNamespace(kind="pseudo", id="g.p", root=str(tmp_path / "c"), group="g", label="p")
    res = SimpleNamespace(
        cell=cell,
        group=SimpleNamespace(root=str(tmp_path / "g")),
        runs={(0, 0): SimpleNamespace(last_round=None)},
        k_total=3,
    )
    plan = SimpleNamespace(study={"bootstrap": {"samples": 200, "level": 0.95, "seed": 0}})
    (row,) = target_rows(plan, [res])
    assert r0_all < 0.5 and row["merged"][0] == 1.0  # the unpaired figures differ by > 0.5
    assert abs(row["runs_merged"].estimate) < 1e-12
    assert abs(row["d_merged"]["mean"]) < 1e-12
