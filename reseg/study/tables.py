"""Tables of the study report and of `results.md` (Markdown rows from `CellResult`s)."""

from __future__ import annotations

from collections.abc import Sequence

from reseg.study.cells import ROUND0_KINDS
from reseg.study.plan import Plan
from reseg.study.results import CellResult


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
                _ms(r.over_folds("last")) if r.cell.kind not in ROUND0_KINDS else "–",
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


def best_x_section(plan: Plan, results: list[CellResult]) -> list[str]:
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


def baselines_section(plan: Plan, results: list[CellResult]) -> list[str]:
    """Selection vs more training (vs `all_pixels`), merging vs averaging (vs TTA of r0)."""
    md = [
        "## Baselines",
        "",
        "Selection vs more training: each cell minus `all_pixels` (the same rounds and epochs on "
        "every training pixel), for the merged result and for the last round. Merging vs "
        "averaging: merged minus TTA of round 0 (as many predictions per pixel as the merged "
        "rounds). Means over folds.",
        "",
    ]
    rows = []
    for gid, rs in _groups(plan, results):
        allp = next(
            (r for r in rs if r.cell.kind == "all_pixels" or "all_pixels" in r.cell.aliases), None
        )
        tta = next((r for r in rs if r.cell.kind == "tta"), None)
        am, al = (
            (allp.over_folds("merged")[0], allp.over_folds("last")[0]) if allp else (None, None)
        )
        t = tta.over_folds("merged")[0] if tta else None
        for r in (x for x in rs if x.cell.kind not in ROUND0_KINDS):
            m, last = r.over_folds("merged")[0], r.over_folds("last")[0]
            rows.append([gid, r.cell.label, _f(m), _d(m, am), _f(last), _d(last, al), _d(m, t)])
    head = ["group", "cell", "merged", "merged − all pixels", "last round", "last − all pixels"]
    return md + _table([*head, "merged − TTA of r0"], rows)


def _d(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None else f"{a - b:+.3f}"


def verdict_section(results: list[CellResult]) -> list[str]:
    """Cells whose interval against round 0 is above 0, below 0, or contains 0.

    The merged result first (TTA cells included, as averaged round 0), then the last round.
    """
    md = ["## Where the rounds help", ""]
    for what, attr in (("Merged rounds", "d_merged"), ("Last round", "d_last")):
        ivs = [(r, getattr(r, attr)) for r in results]
        ivs = [(r, iv) for r, iv in ivs if iv.mean is not None]
        groups = (
            (
                "better than round 0 (interval above 0)",
                [x for x in ivs if x[1].excludes_zero and x[1].mean > 0],
            ),
            (
                "worse than round 0 (interval below 0)",
                [x for x in ivs if x[1].excludes_zero and x[1].mean < 0],
            ),
            (
                "no clear difference (interval contains 0)",
                [x for x in ivs if not x[1].excludes_zero],
            ),
        )
        for title, rs in groups:
            cells = ", ".join(f"`{r.cell.id}` ({_iv(iv)})" for r, iv in rs) or "none"
            md.append(f"- {what}, {title}: {cells}")
    return [*md, ""]


def results_table(plan: Plan, results: list[CellResult]) -> str:
    """The compact table for a README: per group, round 0, the grid cells and the baselines.

    With more than four grid cells in a group only the best and the worst (by merged mIoU)
    are listed.
    """
    s = plan.study
    lines = [
        f"**{s['name']}**"
        + (f" (profile `{s['profile']}`)" if s.get("profile") else "")
        + f", folds {plan.folds}, {plan.rounds} round(s) after round 0. mIoU: mean ± sd over "
        f"folds; Δ: paired difference to round 0 with its {100 * s['bootstrap']['level']:g}% "
        "tile-bootstrap interval.",
        "",
    ]
    rows = []
    for gid, rs in _groups(plan, results):
        if not rs:
            continue
        rows.append([gid, "round 0", _ms(rs[0].over_folds("r0")), "", "", ""])
        grid = [r for r in rs if r.cell.kind == "grid" and r.over_folds("merged")[0] is not None]
        grid.sort(key=lambda r: -r.over_folds("merged")[0])
        if len(grid) > 4:
            grid = [grid[0], grid[-1]]
        for r in [*grid, *(r for r in rs if r.cell.kind != "grid")]:
            last = r.cell.kind not in ROUND0_KINDS
            rows.append(
                [
                    gid,
                    r.cell.label,
                    _ms(r.over_folds("merged")),
                    _iv(r.d_merged),
                    _ms(r.over_folds("last")) if last else "",
                    _iv(r.d_last) if last else "",
                ]
            )
    head = ["group", "cell", "merged mIoU", "Δ merged", "last round mIoU", "Δ last"]
    lines += _table(head, rows)
    return "\n".join(lines)
