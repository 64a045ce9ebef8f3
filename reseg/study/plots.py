"""PNG plots of the study report (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reseg.study.cells import ROUND0_KINDS
from reseg.study.results import CellResult

COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path


def _short(r: CellResult) -> str:
    return r.cell.id.split(".", 1)[1] if "." in r.cell.id else r.cell.id


def rounds_plot(results: Sequence[CellResult], rounds: int, path: Path, title: str) -> Path | None:
    """Validation mIoU per round (mean over folds, bars: sd), merged at the right; TTA dashed."""
    rows = [r for r in results if r.cell.kind not in ROUND0_KINDS]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    xs = list(range(rounds + 1))
    drawn = False
    for i, r in enumerate(rows):
        color = COLORS[i % len(COLORS)]
        ms = [r.over_folds("round", k) for k in xs]
        pts = [(x, m[0], m[1] or 0) for x, m in zip(xs, ms, strict=True) if m[0] is not None]
        if pts:
            px, py, pe = zip(*pts, strict=True)
            px = tuple(x + 0.04 * (i - len(rows) / 2) for x in px)  # keep error bars apart
            ax.errorbar(
                px, py, yerr=pe, marker="o", ms=3, lw=1, color=color, label=_short(r), capsize=2
            )
            drawn = True
        m, sd, _ = r.over_folds("merged")
        if m is not None:
            x = rounds + 1 + 0.04 * (i - len(rows) / 2)
            ax.errorbar([x], [m], yerr=[sd or 0], marker="s", color=color, capsize=2)
    for r in (x for x in results if x.cell.kind in ROUND0_KINDS):
        m = r.over_folds("merged")[0]
        if m is not None:
            ax.axhline(m, ls="--", lw=1, color="#444444", label=_short(r))
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xticks([*xs, rounds + 1], [*(f"r{x}" for x in xs), "merged"])
    ax.set_ylabel("validation mIoU (mean ± sd over folds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def forest_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Per cell: mean paired difference to round 0 with the tile-bootstrap interval."""
    rows = [r for r in results if r.d_merged.mean is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.28 * len(rows)), dpi=100)
    labelled: set[str] = set()
    for i, r in enumerate(rows):
        for off, iv, color, lab in (
            (-0.15, r.d_merged, "#d95f02", "merged − r0"),
            (0.15, r.d_last, "#1b9e77", "last round − r0"),
        ):
            if iv.mean is None:
                continue
            lo = iv.low if iv.low is not None else iv.mean
            hi = iv.high if iv.high is not None else iv.mean
            shown = lab in labelled
            labelled.add(lab)
            ax.plot([lo, hi], [i + off, i + off], color=color, lw=2, label=None if shown else lab)
            ax.plot([iv.mean], [i + off], "o", color=color, ms=3)
    ax.axvline(0, color="#333333", lw=0.8)
    ax.set_yticks(range(len(rows)), [r.cell.id for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("Δ mIoU vs round 0 (95% tile-bootstrap interval)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def three_way_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Bars per cell: round 0, last round, merged (means over folds)."""
    rows = [
        r for r in results if r.cell.kind not in ROUND0_KINDS and r.over_folds("r0")[0] is not None
    ]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * len(rows) + 2), 3.6), dpi=100)
    w = 0.27
    for j, (what, color) in enumerate(
        (("r0", "#999999"), ("last", "#1b9e77"), ("merged", "#d95f02"))
    ):
        vals = [r.over_folds(what) for r in rows]
        ax.bar(
            np.arange(len(rows)) + (j - 1) * w,
            [v[0] or 0 for v in vals],
            w,
            yerr=[v[1] or 0 for v in vals],
            color=color,
            label={"r0": "round 0", "last": "last round", "merged": "merged"}[what],
            capsize=1.5,
        )
    ax.set_xticks(range(len(rows)), [_short(r) for r in rows], rotation=45, ha="right", fontsize=6)
    lows = [v for r in rows for v in (r.over_folds("r0")[0], r.over_folds("merged")[0]) if v]
    if lows:
        ax.set_ylim(max(0, min(lows) - 0.08), min(1, max(lows) + 0.05))
    ax.set_ylabel("validation mIoU")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def x_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Merged mIoU against x for the grid's top and bottom cells of one number x; round 0 dotted."""
    series: dict[str, list[tuple[float, float, float]]] = {}
    r0 = None
    for r in results:
        r0 = r0 if r0 is not None else r.over_folds("r0")[0]
        if r.cell.kind != "grid" or r.cell.direction == "band" or isinstance(r.cell.x, list):
            continue
        m, sd, _ = r.over_folds("merged")
        if m is not None:
            series.setdefault(f"{r.cell.direction}, {r.cell.score}", []).append(
                (float(r.cell.x), m, sd or 0)
            )
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts.sort()
        x, y, e = zip(*pts, strict=True)
        ax.errorbar(
            x, y, yerr=e, marker="o", ms=3, capsize=2, color=COLORS[i % len(COLORS)], label=name
        )
    if r0 is not None:
        ax.axhline(r0, ls=":", color="#333333", label="round 0")
    ax.set_xscale("log")
    ax.set_xlabel("x (% of each class's pixels)")
    ax.set_ylabel("merged mIoU (mean ± sd over folds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def hist_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Per class, the round-0 score histogram and each cell's last selection's (density)."""
    rows = [r for r in results if r.cell.kind not in ROUND0_KINDS and r.folds]
    first = [(r, next(iter(r.folds.values()))) for r in rows]
    first = [(r, f) for r, f in first if 0 in f.hist]
    if not first:
        return None
    names = list(next(iter(first[0][1].hist.values()))["counts"])
    plt = _plt()
    cols = min(4, len(names))
    nrows = -(-len(names) // cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(3 * cols, 2.2 * nrows + 0.6), dpi=90, squeeze=False
    )
    seen_r0: set[str] = set()
    for i, (r, f) in enumerate(first):
        last = max(f.hist)
        for ax, name in zip(axes.ravel(), names, strict=False):
            h0 = f.hist[0]
            edges = np.array(h0["edges"])
            if r.cell.score not in seen_r0:
                c = np.array(h0["counts"][name], np.float64)
                ax.stairs(
                    c / max(c.sum(), 1),
                    edges,
                    color="#333333",
                    lw=1.2,
                    label=f"r0 ({r.cell.score})",
                )
            if last > 0:
                c = np.array(f.hist[last]["counts"][name], np.float64)
                ax.stairs(
                    c / max(c.sum(), 1),
                    edges,
                    color=COLORS[i % len(COLORS)],
                    lw=0.8,
                    label=f"r{last} {_short(r)}",
                )
            ax.set_title(name, fontsize=8)
            ax.tick_params(labelsize=6)
        seen_r0.add(r.cell.score)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)
    return path


def jaccard_plot(results: Sequence[CellResult], rounds: int, path: Path, title: str) -> Path | None:
    """Mean Jaccard overlap (over classes and folds) of each round's selection with the previous."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=100)
    drawn = False
    for i, r in enumerate(x for x in results if x.cell.kind not in ROUND0_KINDS):
        pts = []
        for k in range(1, rounds + 1):
            vals = [f.jaccard.get(k) for f in r.folds.values() if f.jaccard.get(k) is not None]
            if vals:
                pts.append((k, float(np.mean(vals))))
        if pts:
            x, y = zip(*pts, strict=True)
            ax.plot(x, y, "o-", ms=3, color=COLORS[i % len(COLORS)], label=_short(r))
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("selection after round r")
    ax.set_ylabel("Jaccard with the previous selection")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)
