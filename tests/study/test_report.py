"""The study report from synthetic cell results over seeds and folds: every section, the best x,
the comparisons and the verdict in words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from reseg import layout
from reseg.metrics import scores
from reseg.study import tilecm
from reseg.study.cells import seed_root
from reseg.study.config import load_study
from reseg.study.plan import build_plan
from reseg.study.report import SECTIONS, write_study_report

REPO = Path(__file__).resolve().parents[2]
NAMES = ["developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment"]
# accuracy of each cell's merged prediction (round 0: 0.6), each run (seed, fold) off by a
# seeded N(0, 0.003): top20 is clearly better, bottom20 clearly worse (both by far more than
# the Holm-adjusted family of about 60 comparisons needs), top5 and cbst the same as round 0
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
        "folds": [0, 1, 2],
        "seeds": [0, 1, 2],
        "bootstrap": {"samples": 300},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    study, base = load_study(tmp_path / "s.yaml")
    plan = build_plan(study, base, tmp_path / "root")
    noise = np.random.default_rng(7)
    for g in plan.groups:
        for s in plan.seeds:
            root = seed_root(g.root, s)
            for k in plan.folds:
                keys, cms = _cms(0.6 + noise.normal(0, 0.003), 10 * k + 100 * s)
                _write_eval(layout.eval_dir(root, 0, k), cms)
                tilecm.save(root / "study" / f"r0_fold{k}.npz", keys, cms)
    for c in plan.cells:
        short = c.id.split(".")[-1]
        for s in plan.seeds:
            root = seed_root(c.root, s)
            for k in plan.folds:
                acc = ACC[short] + noise.normal(0, 0.003)
                keys, cms = _cms(acc, 10 * k + 100 * s + 1 + len(short))
                tilecm.save(root / "study" / f"merged_fold{k}.npz", keys, cms)
                if c.kind == "tta":
                    _write_eval(root / f"fold{k}" / "eval", cms)
                    continue
                tilecm.save(root / "study" / f"last_fold{k}.npz", keys, cms)
                _write_eval(layout.merged_dir(root, k) / "eval", cms)
                for r in range(plan.rounds + 1):
                    if r > 0:
                        _write_eval(layout.eval_dir(root, r, k), cms)
                    _write_selection(layout.selection_dir(root, r, k), r)
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
    vs_r0 = next(x for x in verdict.split("\n- ") if x.startswith("**merged − round 0**"))
    above, below = vs_r0.split("above: ")[1].split("; below: ")
    assert "res1-unet.true_class.top20" in above and "res1-unet.true_class.top5" not in above
    assert "res1-unet.bottom20" in below.split("Not distinguishable")[0]  # worse than round 0
    assert "`res1-unet.true_class.top5`" in vs_r0.split("Not distinguishable: ")[1]
    rows = {r["cell"]: r for r in json.loads((out / "results.json").read_text())}
    top = rows["res1-unet.true_class.top20"]
    assert top["complete"] and top["delta_merged_tiles"]["low"] > 0.15
    assert top["merged"][0] == pytest.approx(top["r0"][0] + top["comparisons"]["vs_r0"]["mean"])
    assert len(top["per_run"]) == 9 and top["per_run"]["seed1.fold2"]["merged"] is not None
    c = top["comparisons"]
    assert c["vs_r0"]["low"] > 0.15 and c["vs_all_pixels"]["low"] > 0.1 and c["vs_tta"]["low"] > 0
    assert 0 < c["vs_r0"]["mde"] < 0.1 and c["vs_r0"]["n"] == 9
    assert c["vs_r0"]["p_adj"] < 0.05 <= c["vs_r0"]["p_adj"] * 0 + 0.05  # adjusted, and below
    assert c["vs_r0"]["p_adj"] >= c["vs_r0"]["p"] and c["vs_r0"]["verdict"] == "better"
    assert (c["vs_r0"]["seeds"], c["vs_r0"]["folds"]) == (3, 3)
    # merged and last round are the same predictions here: a zero difference, not distinguishable
    assert c["merged_vs_last"]["mean"] == 0 and c["merged_vs_last"]["low"] == 0
    assert "vs_all_pixels" not in rows["res1-unet.all_pixels"]["comparisons"]
    assert set(rows["res1-unet.tta3"]["comparisons"]) == {"vs_r0"}
    per_round = md.split("## mIoU per round")[1].split("## ")[0]
    row = next(x for x in per_round.splitlines() if x.startswith("| res1-unet.true_class.top20 |"))
    r0, r1 = row.split(" | ")[1:3]  # mean over runs [interval], never one run's value
    lo, hi = (float(v) for v in r1.split("[")[1].rstrip("]").split(", "))
    assert r0.count("[") == 1 and lo < float(r1.split(" ")[0]) < hi
    spread = md.split("## Seed spread")[1].split("## ")[0]
    assert "| res2-unet | 2 |" in spread and "| 2 |" in spread
    comparisons = md.split("## Comparisons over seeds and folds")[1].split("## ")[0]
    assert "Holm p" in comparisons and "Satterthwaite" in comparisons
    assert "Design: 3 seed(s) × 3 evaluation fold(s) of K = 5" in md
    assert "| res1-unet.true_class.top20 | merged − all pixels (same rounds and epochs) |" in (
        comparisons
    )
    assert rows["res1-unet.tta3"]["kind"] == "tta" and rows["res1-unet.tta3"]["last"] == [
        None,
        None,
    ]
    res = (out / "results.md").read_text()
    lines = res.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| res1-unet | round 0 |"))
    assert lines[first + 1].startswith("| res1-unet | top 20%, true_class | 0.")  # best first
    assert "| res1-unet | TTA of round 0 (3 transforms) |" in res
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 8 and "<h2>Best x</h2>" in html
    base = md.split("## Baselines")[1].split("## ")[0]
    row = next(x for x in base.splitlines() if x.startswith("| res1-unet | top 20%, true_class |"))
    assert row.split(" | ")[3].startswith("+0.")  # merged − all pixels > 0


def test_a_partial_study_still_gets_a_report(study_root):
    plan = study_root
    for c in plan.cells[:3]:
        for p in Path(c.root).rglob("metrics.json"):
            if "merged" in str(p) or "fold1/eval" in str(p):
                p.unlink()
    md = write_study_report(plan).read_text()
    assert "of 12 cells complete" in md and "## Summary" in md
    assert "seeds [0, 1, 2], evaluation folds [0, 1, 2]" in md


def test_study_report_html_references_only_files_that_exist(study_root):
    from tests.htmlcheck import html_problems

    md = write_study_report(study_root)
    problems, local = html_problems(md.with_suffix(".html"))
    assert problems == []
    assert local >= 8  # the plots of every section
