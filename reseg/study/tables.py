"""Tables of the study report and of `results.md` (Markdown rows from `CellResult`s).

mIoU figures are "mean ± sd over runs", a run being one (seed, evaluation fold);
differences are "mean [low, high]" with the seeds x folds t-interval of
`reseg.study.stats.paired_comparison` unless a table says "tiles"; verdicts follow the
Holm-adjusted p over the study's family of comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence

from reseg.study import stats
from reseg.study.cells import ROUND0_KINDS
from reseg.study.plan import Plan
from reseg.study.results import COMPARISONS, CellResult, seed_spread


def fmt(v: float | None, d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def _ms(t: tuple) -> str:
    m, sd = t[0], t[1]
    if m is None:
        return "–"
    return f"{m:.3f}" if sd is None else f"{m:.3f} ± {sd:.3f}"


def interval_text(iv: stats.Interval | stats.Comparison) -> str:
    if iv.mean is None:
        return "–"
    if iv.low is None:
        return f"{iv.mean:+.3f}"
    return f"{iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def cells_by_group(plan: Plan, results: list[CellResult]) -> list[tuple[str, list[CellResult]]]:
    return [(g.id, [r for r in results if r.cell.group == g.id]) for g in plan.groups]


def _kind(r: CellResult) -> str:
    k = r.cell.kind if r.cell.kind != "grid" else "grid"
    return k + (f" (= {', '.join(r.cell.aliases)})" if r.cell.aliases else "")


def _cmp(r: CellResult, key: str) -> stats.Comparison:
    return r.comparisons.get(key, stats.NO_RUNS)


def _p(v: float | None) -> str:
    return "–" if v is None else (f"{v:.2g}" if v >= 0.001 else "<0.001")


def design_line(plan: Plan) -> str:
    """The design in words: S seeds x K folds, and whether it can give verdicts."""
    s, k = len(plan.seeds), len(plan.folds)
    line = (
        f"Design: {s} seed(s) × {k} evaluation fold(s) of K = {plan.tiling_folds} "
        f"(tiling.folds), {s * k} paired runs per comparison."
    )
    if k < stats.MIN_FOLDS:
        line += (
            f" With fewer than {stats.MIN_FOLDS} evaluation folds the design cannot separate "
            "fold variation from an effect: the comparisons below carry no verdict."
        )
    return line


def summary_rows(results: Sequence[CellResult]) -> list[list[str]]:
    rows = []
    for r in results:
        rows.append(
            [
                r.cell.id,
                _kind(r),
                r.cell.label,
                _ms(r.over_runs("r0")),
                _ms(r.over_runs("last")) if r.cell.kind not in ROUND0_KINDS else "–",
                _ms(r.over_runs("merged")),
                interval_text(_cmp(r, "vs_r0")),
                interval_text(_cmp(r, "last_vs_r0")),
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
    "Δ merged − r0 [CI seeds × folds]",
    "Δ last − r0 [CI seeds × folds]",
]


def best_x_section(plan: Plan, results: list[CellResult]) -> list[str]:
    md = ["## Best x", ""]
    grid = [r for r in results if r.cell.kind == "grid" and r.over_runs("merged")[0] is not None]
    if not grid:
        return [*md, "No finished grid cell yet.", ""]
    md += [
        "Per class and group: the grid cell with the highest merged IoU of the class (mean over "
        "runs). A best-of-many pick: read it with the comparisons' intervals, not alone.",
        "",
    ]
    rows = []
    for gid, rs in cells_by_group(plan, grid):
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
                    fmt(v),
                    fmt(base),
                    "–" if gain is None else f"{gain:+.3f}",
                ]
            )
    md += markdown_table(
        ["group", "class", "best setting", "IoU merged", "IoU round 0", "gain"], rows
    )
    for axis, key in (
        ("resolution", lambda r: f"res{r.group.resolution}"),
        ("model", lambda r: r.group.model),
    ):
        md += [f"Best grid setting per {axis} (merged mIoU, mean over runs):", ""]
        rows = []
        for value in sorted({key(r) for r in grid}):
            rs = [r for r in grid if key(r) == value]
            best = max(rs, key=lambda r: r.over_runs("merged")[0])
            rows.append(
                [
                    value,
                    best.cell.id,
                    best.cell.label,
                    _ms(best.over_runs("merged")),
                    interval_text(_cmp(best, "vs_r0")),
                ]
            )
        md += markdown_table(
            [axis, "cell", "setting", "merged mIoU", "Δ vs r0 [CI seeds × folds]"], rows
        )
    return md


def baselines_section(plan: Plan, results: list[CellResult]) -> list[str]:
    """Selection vs more training (vs `all_pixels`), merging vs averaging (vs TTA of r0)."""
    md = [
        "## Baselines",
        "",
        "Selection vs more training: each cell minus `all_pixels` (the same rounds and epochs on "
        "every training pixel), for the merged result and for the last round. Merging vs "
        "averaging: merged minus TTA of round 0 (as many predictions per pixel as the merged "
        "rounds). Paired over the (seed, fold) runs, with the seeds × folds interval.",
        "",
    ]
    rows = []
    for gid, rs in cells_by_group(plan, results):
        for r in (x for x in rs if x.cell.kind not in ROUND0_KINDS):
            rows.append(
                [
                    gid,
                    r.cell.label,
                    _ms(r.over_runs("merged")),
                    interval_text(_cmp(r, "vs_all_pixels")),
                    _ms(r.over_runs("last")),
                    interval_text(_cmp(r, "last_vs_all_pixels")),
                    interval_text(_cmp(r, "vs_tta")),
                ]
            )
    head = ["group", "cell", "merged", "merged − all pixels", "last round", "last − all pixels"]
    return md + markdown_table([*head, "merged − TTA of r0"], rows)


def seed_spread_section(plan: Plan, results: list[CellResult]) -> list[str]:
    """Round 0's mIoU per group and fold: mean and sd over seeds."""
    md = [
        "## Seed spread",
        "",
        f"Round 0's mIoU per evaluation fold over the seeds {plan.seeds}: the same data, "
        "tiling and fold, trained again with another `train.seed` (deterministic ops). The sd "
        "is what one training run's figure can move by chance; a single-seed difference "
        "smaller than it says nothing.",
        "",
    ]
    rows = [
        [row["group"], str(row["fold"]), fmt(row["mean"]), fmt(row["sd"]), str(row["seeds"])]
        for row in seed_spread(plan, results)
    ]
    return md + markdown_table(
        ["group", "fold", "round 0 mIoU (mean)", "sd over seeds", "seeds"], rows
    )


def comparisons_section(plan: Plan, results: list[CellResult]) -> list[str]:
    """Every comparison of every cell: mean difference, interval, p, Holm p, SE, df, MDE."""
    b = plan.study["bootstrap"]
    level, power = b["level"], b.get("power", 0.8)
    n = max((c.family or 0 for r in results for c in r.comparisons.values()), default=0)
    md = [
        "## Comparisons over seeds and folds",
        "",
        design_line(plan),
        "",
        f"Per (seed, fold) run, the paired difference d = mIoU(A) − mIoU(B) on the same "
        f"evaluation pixels; Δ is its mean over seeds and folds and [low, high] its "
        f"{100 * level:g}% t-interval from a crossed seed × fold random-effects model (a seed "
        "starts from the same weights in every fold, so its luck is shared across folds) with "
        "Satterthwaite's degrees of freedom (df), the fold variance inflated for folds whose "
        "models share training folds (`reseg.study.stats`). p is two-sided; "
        + (
            f"Holm p is adjusted over the study's family of {n} comparisons (these and the "
            "target section's), and 'distinguishable from zero' follows it. "
            if n
            else "with fewer than 3 folds no comparison gets a verdict, so none is adjusted. "
        )
        + "MDE is the smallest difference this design "
        f"would detect with {100 * power:g}% power (t with df degrees of freedom). An "
        "interval that contains 0 with a large MDE means the design cannot tell, not that "
        "there is no effect.",
        "",
    ]
    rows = []
    for r in results:
        for key, words, *_ in COMPARISONS:
            iv = r.comparisons.get(key)
            if iv is None or iv.mean is None:
                continue
            rows.append(
                [
                    r.cell.id,
                    words,
                    interval_text(iv),
                    _p(iv.p),
                    _p(iv.p_adj),
                    fmt(iv.se),
                    fmt(iv.df, 1),
                    fmt(iv.mde),
                    str(iv.n),
                    iv.verdict,
                ]
            )
    head = ["cell", "comparison", "Δ [CI]", "p", "Holm p", "SE", "df", "MDE", "runs", "verdict"]
    md += markdown_table(head, rows)
    p_tiles = [
        "The per-tile view (secondary, section 'Paired differences against round 0') holds the "
        "trained models fixed and resamples evaluation tiles; it is narrower because it leaves "
        "out the training-run variation, and it gives no verdict.",
        "",
    ]
    return md + p_tiles


def verdict_section(plan: Plan, results: list[CellResult]) -> list[str]:
    """In words: per comparison, which cells are distinguishable from zero and which are not."""
    md = [
        "## Where the rounds help",
        "",
        design_line(plan),
        "",
        "Distinguishable from zero means Holm-adjusted p below "
        f"{1 - plan.study['bootstrap']['level']:g} over the study's family of comparisons.",
        "",
    ]
    if len(plan.folds) < stats.MIN_FOLDS:
        return [*md, "No verdict: too few evaluation folds.", ""]
    for key, words, *_ in COMPARISONS:
        ivs = [(r, r.comparisons.get(key)) for r in results]
        ivs = [(r, iv) for r, iv in ivs if iv is not None and iv.mean is not None]
        if not ivs:
            continue
        up = [(r, iv) for r, iv in ivs if iv.verdict == "better"]
        down = [(r, iv) for r, iv in ivs if iv.verdict == "worse"]
        unclear = [(r, iv) for r, iv in ivs if iv.verdict not in ("better", "worse")]

        def names(xs):
            return (
                ", ".join(
                    f"`{r.cell.id}` ({interval_text(iv)}, Holm p {_p(iv.p_adj)})" for r, iv in xs
                )
                or "none"
            )

        line = f"- **{words}**: "
        if up or down:
            line += f"distinguishable from zero, above: {names(up)}; below: {names(down)}. "
        else:
            line += "no cell is distinguishable from zero. "
        mdes = [iv.mde for _, iv in unclear if iv.mde is not None]
        line += f"Not distinguishable: {names(unclear)}"
        if mdes:
            line += f" (smallest detectable difference {min(mdes):.3f}–{max(mdes):.3f})"
        md.append(line + ".")
    return [*md, ""]


def results_table(plan: Plan, results: list[CellResult]) -> str:
    """The compact table for a README: per group, round 0, the grid cells and the baselines.

    With more than four grid cells in a group only the best and the worst (by merged mIoU)
    are listed.
    """
    s = plan.study
    b = s["bootstrap"]
    lines = [
        f"**{s['name']}**"
        + (f" (profile `{s['profile']}`)" if s.get("profile") else "")
        + f", seeds {plan.seeds}, folds {plan.folds} of {plan.tiling_folds}, {plan.rounds} "
        "round(s) after round 0. mIoU: mean ± sd over (seed, fold) runs; Δ: paired difference "
        f"to round 0 with its {100 * b['level']:g}% seeds × folds t-interval; Holm p: adjusted "
        "over the study's comparisons; MDE: smallest difference detectable at "
        f"{100 * b.get('power', 0.8):g}% power.",
        "",
    ]
    rows = []
    for gid, rs in cells_by_group(plan, results):
        if not rs:
            continue
        rows.append([gid, "round 0", _ms(rs[0].over_runs("r0")), "", "", "", "", ""])
        grid = [r for r in rs if r.cell.kind == "grid" and r.over_runs("merged")[0] is not None]
        grid.sort(key=lambda r: -r.over_runs("merged")[0])
        if len(grid) > 4:
            grid = [grid[0], grid[-1]]
        for r in [*grid, *(r for r in rs if r.cell.kind != "grid")]:
            last = r.cell.kind not in ROUND0_KINDS
            d = _cmp(r, "vs_r0")
            rows.append(
                [
                    gid,
                    r.cell.label,
                    _ms(r.over_runs("merged")),
                    interval_text(d),
                    _p(d.p_adj),
                    fmt(d.mde),
                    _ms(r.over_runs("last")) if last else "",
                    interval_text(_cmp(r, "last_vs_r0")) if last else "",
                ]
            )
    head = ["group", "cell", "merged mIoU", "Δ merged", "Holm p", "MDE", "last round mIoU"]
    head += ["Δ last"]
    lines += markdown_table(head, rows)
    return "\n".join(lines)
