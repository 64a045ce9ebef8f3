"""The study report: `<study>/report/report.md`, `report.html`, `results.md`, `results.json`, PNGs.

Sections: summary table; mIoU per round (mean ± sd over folds) per cell;
per-class IoU; the best x per class, resolution and model; merged vs last round
vs round 0; baselines (selection vs more training, merging vs averaging);
score histograms and selection Jaccard; paired differences against round 0
with bootstrap intervals (method in `reseg.study.stats`); where the rounds help.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from reseg import artifacts
from reseg.report import to_html
from reseg.study import plots
from reseg.study.plan import Plan
from reseg.study.results import CellResult, collect, to_json

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


def _f(v: float | None, d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def _ms(t: tuple) -> str:
    m, sd = t[0], t[1]
    if m is None:
        return "–"
    return f"{m:.3f}" if sd is None else f"{m:.3f} ± {sd:.3f}"


def _iv(iv) -> str:
    if iv.mean is None:
        return "–"
    if iv.low is None:
        return f"{iv.mean:+.3f}"
    return f"{iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _groups(plan: Plan, results: list[CellResult]) -> list[tuple[str, list[CellResult]]]:
    return [(g.id, [r for r in results if r.cell.group == g.id]) for g in plan.groups]


def _kind(r: CellResult) -> str:
    k = r.cell.kind if r.cell.kind != "grid" else "grid"
    return k + (f" (= {', '.join(r.cell.aliases)})" if r.cell.aliases else "")


def summary_rows(results: Sequence[CellResult]) -> list[list[str]]:
    rows = []
    for r in results:
        rows.append(
            [
                r.cell.id,
                _kind(r),
                r.cell.label,
                _ms(r.over_folds("r0")),
                _ms(r.over_folds("last")) if r.cell.kind != "tta" else "–",
                _ms(r.over_folds("merged")),
                _iv(r.d_merged),
                _iv(r.d_last),
            ]
        )
    return rows


SUMMARY_HEAD = [
    "cell",
    "kind",
    "setting",
    "round 0",
    "last round",
    "merged (TTA: augmented r0)",
    "Δ merged − r0 [95% CI]",
    "Δ last − r0 [95% CI]",
]


def _best_x(plan: Plan, results: list[CellResult]) -> list[str]:
    md = ["## Best x", ""]
    grid = [r for r in results if r.cell.kind == "grid" and r.over_folds("merged")[0] is not None]
    if not grid:
        return [*md, "No finished grid cell yet.", ""]
    md += [
        "Per class and group: the grid cell with the highest merged IoU of the class (mean over folds).",
        "",
    ]
    rows = []
    for gid, rs in _groups(plan, grid):
        for name in plan.class_names:
            scored = [(r.class_iou("merged", name), r) for r in rs]
            scored = [(v, r) for v, r in scored if v is not None]
            if not scored:
                continue
            v, best = max(scored, key=lambda t: t[0])
            base = best.class_iou("r0", name)
            gain = None if base is None else v - base
            rows.append(
                [
                    gid,
                    name,
                    best.cell.label,
                    _f(v),
                    _f(base),
                    "–" if gain is None else f"{gain:+.3f}",
                ]
            )
    md += _table(["group", "class", "best setting", "IoU merged", "IoU round 0", "gain"], rows)
    for axis, key in (
        ("resolution", lambda r: f"res{r.group.resolution}"),
        ("model", lambda r: r.group.model),
    ):
        md += [f"Best grid setting per {axis} (merged mIoU, mean over folds):", ""]
        rows = []
        for value in sorted({key(r) for r in grid}):
            rs = [r for r in grid if key(r) == value]
            best = max(rs, key=lambda r: r.over_folds("merged")[0])
            rows.append(
                [
                    value,
                    best.cell.id,
                    best.cell.label,
                    _ms(best.over_folds("merged")),
                    _iv(best.d_merged),
                ]
            )
        md += _table([axis, "cell", "setting", "merged mIoU", "Δ vs r0 [95% CI]"], rows)
    return md


def _baselines(plan: Plan, results: list[CellResult]) -> list[str]:
    md = [
        "## Baselines",
        "",
        "Selection vs more training: each grid cell's merged mIoU minus that of `all_pixels` "
        "(the same rounds and epochs on every training pixel). Merging vs averaging: merged minus "
        "TTA of round 0 (about as many predictions per pixel as the merged rounds).",
        "",
    ]
    rows = []
    for gid, rs in _groups(plan, results):
        allp = next(
            (r for r in rs if r.cell.kind == "all_pixels" or "all_pixels" in r.cell.aliases), None
        )
        tta = next((r for r in rs if r.cell.kind == "tta"), None)
        a = allp.over_folds("merged")[0] if allp else None
        t = tta.over_folds("merged")[0] if tta else None
        for r in rs:
            if r.cell.kind in ("tta",):
                continue
            m = r.over_folds("merged")[0]
            rows.append(
                [
                    gid,
                    r.cell.label,
                    _f(m),
                    "–" if m is None or a is None else f"{m - a:+.3f}",
                    "–" if m is None or t is None else f"{m - t:+.3f}",
                ]
            )
    return md + _table(["group", "cell", "merged mIoU", "− all pixels", "− TTA of r0"], rows)


def _verdict(results: list[CellResult]) -> list[str]:
    md = ["## Where the rounds help", ""]
    helped = [r for r in results if r.d_merged.excludes_zero and r.d_merged.mean > 0]
    hurt = [r for r in results if r.d_merged.excludes_zero and r.d_merged.mean < 0]
    unclear = [r for r in results if r.d_merged.mean is not None and not r.d_merged.excludes_zero]
    for title, rs in (
        ("Better than round 0 (interval above 0)", helped),
        ("Worse than round 0 (interval below 0)", hurt),
        ("No clear difference (interval contains 0)", unclear),
    ):
        md.append(
            f"- {title}: " + (", ".join(f"`{r.cell.id}` ({_iv(r.d_merged)})" for r in rs) or "none")
        )
    return [*md, ""]


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
    md += _best_x(plan, results)
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
    md += _baselines(plan, results)
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
    md += _verdict(results)
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(to_html(text, f"reseg study {s['name']}"))
    artifacts.write_json(out / "results.json", to_json(results))
    (out / "results.md").write_text(results_table(plan, results))
    return out / "report.md"


def results_table(plan: Plan, results: list[CellResult]) -> str:
    """The compact table for a README: per group, round 0, the best grid cell and the baselines."""
    s = plan.study
    lines = [
        f"**{s['name']}**"
        + (f" (profile `{s['profile']}`)" if s.get("profile") else "")
        + f", folds {plan.folds}, {plan.rounds} round(s); merged mIoU mean over folds, Δ vs round 0 "
        "with 95% tile-bootstrap interval.",
        "",
    ]
    rows = []
    for gid, rs in _groups(plan, results):
        if not rs:
            continue
        rows.append([gid, "round 0", _ms(rs[0].over_folds("r0")), ""])
        grid = [r for r in rs if r.cell.kind == "grid" and r.over_folds("merged")[0] is not None]
        if grid:
            best = max(grid, key=lambda r: r.over_folds("merged")[0])
            rows.append(
                [
                    gid,
                    f"best grid: {best.cell.label}",
                    _ms(best.over_folds("merged")),
                    _iv(best.d_merged),
                ]
            )
            worst = min(grid, key=lambda r: r.over_folds("merged")[0])
            if worst is not best:
                rows.append(
                    [
                        gid,
                        f"worst grid: {worst.cell.label}",
                        _ms(worst.over_folds("merged")),
                        _iv(worst.d_merged),
                    ]
                )
        for r in rs:
            if r.cell.kind != "grid":
                rows.append([gid, r.cell.label, _ms(r.over_folds("merged")), _iv(r.d_merged)])
    lines += _table(["group", "cell", "mIoU", "Δ vs r0 [95% CI]"], rows)
    return "\n".join(lines)
