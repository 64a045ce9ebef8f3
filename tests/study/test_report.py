"""The study report from synthetic cell results: every section, the best x, the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from reseg import layout
from reseg.metrics import scores
from reseg.study import tilecm
from reseg.study.config import load_study
from reseg.study.plan import build_plan
from reseg.study.report import SECTIONS, write_study_report

REPO = Path(__file__).resolve().parents[2]
NAMES = ["developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment"]
# accuracy of each cell's merged prediction (round 0: 0.6); top20 is clearly better
ACC = {
    "top5": 0.6,
    "top20": 0.8,
    "all_pixels": 0.61,
    "bottom20": 0.45,
    "cbst20-5-50": 0.6,
    "tta3": 0.62,
}


def _cms(acc: float, seed: int, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """n tiles x 200 pixels; the same labels for every seed offset of one fold."""
    rng = np.random.default_rng(seed)
    labels = np.random.default_rng(1000).integers(0, 7, (n, 200))
    right = rng.random((n, 200)) < acc
    pred = np.where(right, labels, (labels + 1) % 7)
    cms = np.zeros((n, 7, 7), np.int64)
    for i in range(n):
        np.add.at(cms[i], (labels[i], pred[i]), 1)
    return np.array([f"t{i}" for i in range(n)]), cms


def _write_eval(d: Path, cms: np.ndarray) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(scores(cms.sum(0), NAMES)))


def _write_selection(d: Path, r: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    per = {n: {"selected": 10, "jaccard_previous": None if r == 0 else 0.5} for n in NAMES}
    (d / "selection.json").write_text(json.dumps({"selected": 70, "per_class": per}))
    hist = {"edges": np.linspace(0, 1, 11).tolist(), "counts": {n: list(range(10)) for n in NAMES}}
    (d / "score_hist.json").write_text(json.dumps(hist))


@pytest.fixture
def study_root(landsat, tmp_path):
    doc = {
        "name": "fake",
        "base": str(REPO / "examples" / "demo_landsat.yaml"),
        "grid": {"percent": [5, 20], "resolution": [1, 2]},
        "folds": [0, 1],
        "bootstrap": {"samples": 300},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    study, base = load_study(tmp_path / "s.yaml")
    plan = build_plan(study, base, tmp_path / "root")
    for g in plan.groups:
        for k in plan.folds:
            keys, cms = _cms(0.6, 10 * k)
            _write_eval(layout.eval_dir(g.root, 0, k), cms)
            tilecm.save(Path(g.root) / "study" / f"r0_fold{k}.npz", keys, cms)
    for c in plan.cells:
        short = c.id.split(".")[-1]
        for k in plan.folds:
            keys, cms = _cms(ACC[short], 10 * k + 1 + len(short))
            tilecm.save(Path(c.root) / "study" / f"merged_fold{k}.npz", keys, cms)
            if c.kind == "tta":
                _write_eval(Path(c.root) / f"fold{k}" / "eval", cms)
                continue
            tilecm.save(Path(c.root) / "study" / f"last_fold{k}.npz", keys, cms)
            _write_eval(layout.merged_dir(c.root, k) / "eval", cms)
            for r in range(plan.rounds + 1):
                if r > 0:
                    _write_eval(layout.eval_dir(c.root, r, k), cms)
                _write_selection(layout.selection_dir(c.root, r, k), r)
    return plan


def test_report_has_every_section_and_names_the_best_x(study_root):
    plan = study_root
    md_path = write_study_report(plan)
    md = md_path.read_text()
    for section in SECTIONS:
        assert f"## {section}" in md
    out = md_path.parent
    for png in (
        "rounds_res1-unet.png",
        "x_res2-unet.png",
        "three_res1-unet.png",
        "paired_differences.png",
        "jaccard_res2-unet.png",
        "hist_res1-unet_true_class.png",
    ):
        assert (out / png).is_file() and png in md
    best_res = md.split("Best grid setting per resolution")[1].split("Best grid setting per model")[
        0
    ]
    assert (
        "| res1 | res1-unet.true_class.top20 |" in best_res
        and "| res2 | res2-unet.true_class.top20 |" in best_res
    )
    verdict = md.split("## Where the rounds help")[1]
    helped = verdict.split("\n- ")[1]
    assert "res1-unet.true_class.top20" in helped and "res1-unet.true_class.top5" not in helped
    assert "res1-unet.bottom20" in verdict.split("\n- ")[2]  # worse than round 0
    rows = {r["cell"]: r for r in json.loads((out / "results.json").read_text())}
    top = rows["res1-unet.true_class.top20"]
    assert top["complete"] and top["delta_merged_tiles"]["low"] > 0.15
    assert top["merged"][0] == pytest.approx(top["r0"][0] + top["delta_merged_tiles"]["mean"])
    assert rows["res1-unet.tta3"]["kind"] == "tta" and rows["res1-unet.tta3"]["last"] == [
        None,
        None,
    ]
    res = (out / "results.md").read_text()
    lines = res.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| res1-unet | round 0 |"))
    assert lines[first + 1].startswith("| res1-unet | top 20%, true_class | 0.6")  # best first
    assert "| res1-unet | TTA of round 0 (3 transforms) |" in res
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 8 and "<h2>Best x</h2>" in html
    base = md.split("## Baselines")[1].split("## ")[0]
    assert "| res1-unet | top 20%, true_class | 0.6" in base  # merged − all pixels > 0 follows


def test_a_partial_study_still_gets_a_report(study_root):
    plan = study_root
    for c in plan.cells[:3]:
        for p in Path(c.root).rglob("metrics.json"):
            if "merged" in str(p) or "fold1/eval" in str(p):
                p.unlink()
    md = write_study_report(plan).read_text()
    assert "of 12 cells complete" in md and "## Summary" in md


def test_study_report_html_references_only_files_that_exist(study_root):
    from tests.htmlcheck import html_problems

    md = write_study_report(study_root)
    problems, local = html_problems(md.with_suffix(".html"))
    assert problems == []
    assert local >= 8  # the plots of every section
