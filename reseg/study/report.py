"""The study report: `<study>/report/report.md`, `report.html`, `results.md`, `results.json`, PNGs.

Sections: summary table; mIoU per round (mean ± sd over folds) per cell;
per-class IoU; the best x per class, resolution and model; merged vs last round
vs round 0; baselines (selection vs more training, merging vs averaging);
score histograms and selection Jaccard; paired differences against round 0
with bootstrap intervals (method in `reseg.study.stats`); where the rounds help.
"""

from __future__ import annotations

import json
from pathlib import Path

from reseg import artifacts
from reseg.report import to_html
from reseg.study import plots
from reseg.study.plan import Plan
from reseg.study.results import collect, to_json
from reseg.study.tables import (
    SUMMARY_HEAD,
    _f,
    _groups,
    _iv,
    _ms,
    _table,
    baselines_section,
    best_x_section,
    results_table,
    summary_rows,
    verdict_section,
)
from reseg.study.target import target_section

SECTIONS = (
    "Summary",
    "mIoU per round",
    "Per-class IoU",
    "Best x",
    "Merged vs last round vs round 0",
    "Baselines",
    "Score histograms and selection Jaccard",
    "Paired differences against round 0",
    "Where the rounds help",
)


def _rel(p: Path, start: Path) -> str:
    import os

    return os.path.relpath(p, start)


def write_study_report(plan: Plan, elapsed: float | None = None) -> Path:
    """Write the report of the plan's study root from its artifacts; returns report.md."""
    root = Path(plan.root)
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = collect(plan)
    s = plan.study
    done = sum(r.complete for r in results)
    md = [
        f"# reseg study: {s['name']}" + (f" (profile {s['profile']})" if s.get("profile") else ""),
        "",
        f"{len(results)} cells in {len(plan.groups)} groups (resolution × model), folds {plan.folds}, "
        f"{plan.rounds} round(s) after round 0; {done} of {len(results)} cells complete"
        + (f"; {elapsed / 60:.1f} min this run" if elapsed else "")
        + ".",
        "",
        "Grid: " + json.dumps(s["grid"]) + ". Baselines: " + json.dumps(s["baselines"]) + ".",
        "",
        f"Intervals ([low, high]) are {100 * s['bootstrap']['level']:g}% bias-corrected percentile "
        "bootstraps of the mean over folds of the per-fold paired difference, resampling "
        f"validation tiles within each fold ({s['bootstrap']['samples']} resamples). They do not "
        "include the variation between training runs: every round is trained once, so an "
        "interval that excludes 0 says the two models differ on these validation pixels, not "
        "that another training run would differ the same way; the spread over folds (± sd) "
        "shows how much folds disagree.",
        "",
        "## Summary",
        "",
        *_table(SUMMARY_HEAD, summary_rows(results)),
        "## mIoU per round",
        "",
        "Validation mIoU, mean ± sd over folds.",
        "",
    ]
    head = ["cell", *[f"r{k}" for k in range(plan.rounds + 1)], "merged"]
    rows = [
        [
            r.cell.id,
            *[_ms(r.over_folds("round", k)) for k in range(plan.rounds + 1)],
            _ms(r.over_folds("merged")),
        ]
        for r in results
    ]
    md += _table(head, rows)
    for gid, rs in _groups(plan, results):
        p = plots.rounds_plot(rs, plan.rounds, out / f"rounds_{gid}.png", f"mIoU per round, {gid}")
        if p:
            md += [f"![mIoU per round {gid}]({p.name})", ""]
    md += ["## Per-class IoU", "", "Merged IoU per class, mean over folds (round 0 first).", ""]
    for gid, rs in _groups(plan, results):
        rows = (
            [["round 0", *[_f(rs[0].class_iou("r0", n)) for n in plan.class_names]]] if rs else []
        )
        rows += [
            [r.cell.label, *[_f(r.class_iou("merged", n)) for n in plan.class_names]] for r in rs
        ]
        md += [f"### {gid}", "", *_table(["cell", *plan.class_names], rows)]
    md += best_x_section(plan, results)
    for gid, rs in _groups(plan, results):
        p = plots.x_plot(rs, out / f"x_{gid}.png", f"merged mIoU against x, {gid}")
        if p:
            md += [f"![x {gid}]({p.name})", ""]
    md += ["## Merged vs last round vs round 0", ""]
    rows = []
    for r in (x for x in results if x.cell.kind != "tta"):
        vals = {w: r.over_folds(w)[0] for w in ("r0", "last", "merged")}
        known = {k: v for k, v in vals.items() if v is not None}
        best = max(known, key=known.get) if known else "–"
        rows.append([r.cell.id, _f(vals["r0"]), _f(vals["last"]), _f(vals["merged"]), best])
    md += _table(["cell", "round 0", "last round", "merged", "best"], rows)
    for gid, rs in _groups(plan, results):
        p = plots.three_way_plot(
            rs, out / f"three_{gid}.png", f"round 0, last round, merged: {gid}"
        )
        if p:
            md += [f"![three {gid}]({p.name})", ""]
    md += baselines_section(plan, results)
    md += [
        "## Score histograms and selection Jaccard",
        "",
        "Score histograms of round 0 and of each cell's last selection (first fold, density); Jaccard "
        "overlap of each selection with the previous round's (mean over classes and folds).",
        "",
    ]
    rows = []
    for r in (x for x in results if x.cell.kind != "tta"):
        j = []
        for k in range(1, plan.rounds + 1):
            vals = [f.jaccard.get(k) for f in r.folds.values() if f.jaccard.get(k) is not None]
            j.append(_f(sum(vals) / len(vals)) if vals else "–")
        sel = [f.selected.get(0) for f in r.folds.values() if f.selected.get(0) is not None]
        rows.append([r.cell.id, str(round(sum(sel) / len(sel))) if sel else "–", *j])
    md += _table(
        [
            "cell",
            "selected after r0 (pixels)",
            *[f"Jaccard r{k}" for k in range(1, plan.rounds + 1)],
        ],
        rows,
    )
    for gid, rs in _groups(plan, results):
        for score in sorted({r.cell.score for r in rs if r.cell.score}):
            sub = [r for r in rs if r.cell.score == score]
            p = plots.hist_plot(
                sub, out / f"hist_{gid}_{score}.png", f"{score} score per class, {gid}"
            )
            if p:
                md += [f"![histograms {gid} {score}]({p.name})", ""]
        p = plots.jaccard_plot(
            rs, plan.rounds, out / f"jaccard_{gid}.png", f"selection Jaccard, {gid}"
        )
        if p:
            md += [f"![jaccard {gid}]({p.name})", ""]
    md += [
        "## Paired differences against round 0",
        "",
        "Per fold: d_k = mIoU_k(cell) − mIoU_k(round 0) on the same validation pixels. CI (tiles): "
        "paired bootstrap over validation tiles within each fold; CI (folds): bootstrap over the K "
        "values d_k (crude with few folds).",
        "",
    ]
    rows = []
    for r in results:
        per_fold = [
            "–" if f.merged is None or f.r0 is None else f"{f.merged - f.r0:+.3f}"
            for f in r.folds.values()
        ]
        rows.append([r.cell.id, *per_fold, _iv(r.d_merged), _iv(r.d_merged_folds), _iv(r.d_last)])
    md += _table(
        [
            "cell",
            *[f"d fold{k}" for k in plan.folds],
            "merged: CI (tiles)",
            "merged: CI (folds)",
            "last: CI (tiles)",
        ],
        rows,
    )
    p = plots.forest_plot(results, out / "paired_differences.png", "paired difference to round 0")
    if p:
        md += [f"![paired differences]({p.name})", ""]
    md += target_section(plan, results)
    md += verdict_section(results)
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(to_html(text, f"reseg study {s['name']}"))
    artifacts.write_json(out / "results.json", to_json(results))
    (out / "results.md").write_text(results_table(plan, results))
    return out / "report.md"
