"""The study report: `<study>/report/report.md`, `report.html`, `results.md`, `results.json`, PNGs.

Sections: summary table; the seed spread of round 0; mIoU per round (mean over
(seed, fold) runs with its interval) per cell; per-class IoU; the best x per class,
resolution and model; merged vs last round vs round 0; baselines (selection vs more
training, merging vs averaging); score histograms and selection Jaccard; the
comparisons over seeds and folds (t-intervals, p and Holm p, SE, df, MDE; method in
`reseg.study.stats`);
the per-tile view against round 0; where the rounds help, in words.
"""

from __future__ import annotations

import json
from pathlib import Path

from reseg import artifacts, storage
from reseg.report import to_html
from reseg.study import plots
from reseg.study.cells import ROUND0_KINDS
from reseg.study.plan import Plan
from reseg.study.results import collect, to_json
from reseg.study.tables import (
    SUMMARY_HEAD,
    baselines_section,
    best_x_section,
    cells_by_group,
    comparisons_section,
    fmt,
    interval_text,
    markdown_table,
    results_table,
    seed_spread_section,
    summary_rows,
    verdict_section,
)
from reseg.study.target import target_data, target_section

SECTIONS = (
    "Summary",
    "Seed spread",
    "mIoU per round",
    "Per-class IoU",
    "Best x",
    "Merged vs last round vs round 0",
    "Baselines",
    "Score histograms and selection Jaccard",
    "Comparisons over seeds and folds",
    "Paired differences against round 0",
    "Where the rounds help",
)


def _mi(iv) -> str:
    """A mean with its interval: 0.512 [0.498, 0.530]."""
    if iv.mean is None:
        return "–"
    if iv.low is None:
        return f"{iv.mean:.3f}"
    return f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]"


def _rel(p: Path, start: Path) -> str:
    import os

    return os.path.relpath(p, start)


def _intro(plan: Plan, results: list, elapsed: float | None) -> list[str]:
    """The header: what the study ran, how its figures are made, the summary."""
    md: list[str] = []
    s = plan.study
    done = sum(r.complete for r in results)
    md += [
        f"# reseg study: {s['name']}" + (f" (profile {s['profile']})" if s.get("profile") else ""),
        "",
        f"{len(results)} cells in {len(plan.groups)} groups (resolution × model), "
        f"seeds {plan.seeds}, evaluation folds {plan.folds}, {plan.rounds} round(s) after "
        f"round 0; {done} of {len(results)} cells complete"
        + (f"; {elapsed / 60:.1f} min this run" if elapsed else "")
        + ".",
        "",
        "Grid: " + json.dumps(s["grid"]) + ". Baselines: " + json.dumps(s["baselines"]) + ".",
        "",
        "A run is one (seed, evaluation fold): every cell and baseline trains once per seed and "
        "fold (`train.seed`, deterministic ops"
        + ("" if s.get("deterministic", True) else " off")
        + "). mIoU figures are mean ± sd over runs. Differences are paired per run (the same "
        "seed and evaluation pixels) and averaged over folds and seeds; their intervals "
        f"([low, high], {100 * s['bootstrap']['level']:g}%) are t-intervals from a crossed seed × "
        "fold model, so they include the variation between training runs, seeds and folds, "
        "and their p-values are Holm-adjusted over the study. 'Comparisons over seeds and "
        "folds' gives every comparison with its smallest detectable difference; 'Where the "
        "rounds help' says in words which are distinguishable from zero.",
        "",
        "## Summary",
        "",
        *markdown_table(SUMMARY_HEAD, summary_rows(results)),
        *seed_spread_section(plan, results),
        "## mIoU per round",
        "",
        "mIoU per round, mean over (seed, fold) runs with its seeds × folds t-interval.",
        "",
    ]
    return md


def _rounds_section(plan: Plan, results: list, out: Path) -> list[str]:
    """mIoU per round of every cell (table and a plot per group)."""
    md: list[str] = []
    head = ["cell", *[f"r{k}" for k in range(plan.rounds + 1)], "merged"]
    rows = [
        [
            r.cell.id,
            *[_mi(r.interval("round", k)) for k in range(plan.rounds + 1)],
            _mi(r.interval("merged")),
        ]
        for r in results
    ]
    md += markdown_table(head, rows)
    for gid, rs in cells_by_group(plan, results):
        p = plots.rounds_plot(rs, plan.rounds, out / f"rounds_{gid}.png", f"mIoU per round, {gid}")
        if p:
            md += [f"![mIoU per round {gid}]({p.name})", ""]
    return md


def _class_iou_section(plan: Plan, results: list) -> list[str]:
    """Merged IoU per class, per group."""
    md: list[str] = []
    md += ["## Per-class IoU", "", "Merged IoU per class, mean over runs (round 0 first).", ""]
    for gid, rs in cells_by_group(plan, results):
        rows = (
            [["round 0", *[fmt(rs[0].class_iou("r0", n)) for n in plan.class_names]]] if rs else []
        )
        rows += [
            [r.cell.label, *[fmt(r.class_iou("merged", n)) for n in plan.class_names]] for r in rs
        ]
        md += [f"### {gid}", "", *markdown_table(["cell", *plan.class_names], rows)]
    return md


def _x_plots(plan: Plan, results: list, out: Path) -> list[str]:
    """Merged mIoU against x, a plot per group."""
    md: list[str] = []
    for gid, rs in cells_by_group(plan, results):
        p = plots.x_plot(rs, out / f"x_{gid}.png", f"merged mIoU against x, {gid}")
        if p:
            md += [f"![x {gid}]({p.name})", ""]
    return md


def _three_way_section(plan: Plan, results: list, out: Path) -> list[str]:
    """Merged vs last round vs round 0 (table and plots)."""
    md: list[str] = []
    md += ["## Merged vs last round vs round 0", ""]
    rows = []
    for r in (x for x in results if x.cell.kind not in ROUND0_KINDS):
        vals = {w: r.over_runs(w)[0] for w in ("r0", "last", "merged")}
        known = {k: v for k, v in vals.items() if v is not None}
        best = max(known, key=known.get) if known else "–"
        rows.append([r.cell.id, fmt(vals["r0"]), fmt(vals["last"]), fmt(vals["merged"]), best])
    md += markdown_table(["cell", "round 0", "last round", "merged", "best"], rows)
    for gid, rs in cells_by_group(plan, results):
        p = plots.three_way_plot(
            rs, out / f"three_{gid}.png", f"round 0, last round, merged: {gid}"
        )
        if p:
            md += [f"![three {gid}]({p.name})", ""]
    return md


def _selection_section(plan: Plan, results: list, out: Path) -> list[str]:
    """Score histograms and the selections' Jaccard overlaps."""
    md: list[str] = []
    md += [
        "## Score histograms and selection Jaccard",
        "",
        "Score histograms of round 0 and of each cell's last selection (first fold, density); Jaccard "
        "overlap of each selection with the previous round's (mean over classes and runs).",
        "",
    ]
    rows = []
    for r in (x for x in results if x.cell.kind not in ROUND0_KINDS):
        j = []
        for k in range(1, plan.rounds + 1):
            vals = [f.jaccard.get(k) for f in r.runs.values() if f.jaccard.get(k) is not None]
            j.append(fmt(sum(vals) / len(vals)) if vals else "–")
        sel = [f.selected.get(0) for f in r.runs.values() if f.selected.get(0) is not None]
        rows.append([r.cell.id, str(round(sum(sel) / len(sel))) if sel else "–", *j])
    md += markdown_table(
        [
            "cell",
            "selected after r0 (pixels)",
            *[f"Jaccard r{k}" for k in range(1, plan.rounds + 1)],
        ],
        rows,
    )
    for gid, rs in cells_by_group(plan, results):
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
    return md


def _paired_section(plan: Plan, results: list, out: Path) -> list[str]:
    """The forest plot and the paired differences against round 0."""
    md: list[str] = []
    p = plots.forest_plot(results, out / "paired_differences.png", "paired differences")
    if p:
        md += [f"![paired differences]({p.name})", ""]
    md += [
        "## Paired differences against round 0",
        "",
        "Secondary view. Per fold, d_k = mIoU(cell) − mIoU(round 0) on the same evaluation "
        "pixels, averaged over seeds (per-run values in results.json). CI (seeds × folds): the "
        "interval of the comparisons above; CI (tiles): paired bootstrap over evaluation tiles "
        "within each run, the trained models held fixed (no training-run variation).",
        "",
    ]
    rows = []
    for r in results:
        per_fold = []
        for k in plan.folds:
            d = [
                f.merged - f.r0
                for (_, k2), f in r.runs.items()
                if k2 == k and f.merged is not None and f.r0 is not None
            ]
            per_fold.append(f"{sum(d) / len(d):+.3f}" if d else "–")
        cmp = r.comparisons.get("vs_r0")
        rows.append(
            [
                r.cell.id,
                *per_fold,
                interval_text(cmp) if cmp else "–",
                interval_text(r.d_merged),
                interval_text(r.d_last),
            ]
        )
    md += markdown_table(
        [
            "cell",
            *[f"d fold{k}" for k in plan.folds],
            "merged: CI (seeds × folds)",
            "merged: CI (tiles)",
            "last: CI (tiles)",
        ],
        rows,
    )
    return md


def write_study_report(plan: Plan, elapsed: float | None = None) -> Path:
    """Write the report of the plan's study root from its artifacts; returns report.md."""
    root = storage.path(plan.root)
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = collect(plan)
    target = target_data(plan, results)  # adjusts the cells' comparisons with the target ones
    md = [
        *_intro(plan, results, elapsed),
        *_rounds_section(plan, results, out),
        *_class_iou_section(plan, results),
        *best_x_section(plan, results),
        *_x_plots(plan, results, out),
        *_three_way_section(plan, results, out),
        *baselines_section(plan, results),
        *_selection_section(plan, results, out),
        *comparisons_section(plan, results),
        *_paired_section(plan, results, out),
        *target_section(plan, target),
        *verdict_section(plan, results),
    ]
    text = "\n".join(md)
    s = plan.study
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(to_html(text, f"reseg study {s['name']}"))
    artifacts.write_json(out / "results.json", to_json(results))
    (out / "results.md").write_text(results_table(plan, results))
    return out / "report.md"
