"""PNG plots of the study report (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reseg import storage
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
    with storage.atomic_write(path, "wb") as fh:  # a local file or one object in a bucket
        fig.savefig(fh, format=storage.path(path).suffix.lstrip("."), bbox_inches="tight")
    _plt().close(fig)
    return path


def _short(r: CellResult) -> str:
    return r.cell.id.split(".", 1)[1] if "." in r.cell.id else r.cell.id


def _err(iv) -> tuple[float, float]:
    """(below, above) error bar lengths of an interval (0, 0 without one)."""
    if iv.mean is None or iv.low is None:
        return 0.0, 0.0
    return iv.mean - iv.low, iv.high - iv.mean


def rounds_plot(results: Sequence[CellResult], rounds: int, path: Path, title: str) -> Path | None:
    """mIoU per round: mean over (seed, fold) runs with its seeds x folds interval as a band,
    merged at the right (interval bar); TTA of round 0 dashed with its band."""
    rows = [r for r in results if r.cell.kind not in ROUND0_KINDS]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    xs = list(range(rounds + 1))
    drawn = False
    for i, r in enumerate(rows):
        color = COLORS[i % len(COLORS)]
        ivs = [(x, r.interval("round", x)) for x in xs]
        pts = [(x, iv) for x, iv in ivs if iv.mean is not None]
        if pts:
            px = [x + 0.03 * (i - len(rows) / 2) for x, _ in pts]
            py = [iv.mean for _, iv in pts]
            lo = [iv.low if iv.low is not None else iv.mean for _, iv in pts]
            hi = [iv.high if iv.high is not None else iv.mean for _, iv in pts]
            ax.plot(px, py, marker="o", ms=3, lw=1, color=color, label=_short(r))
            ax.fill_between(px, lo, hi, color=color, alpha=0.15, lw=0)
            drawn = True
        iv = r.interval("merged")
        if iv.mean is not None:
            x = rounds + 1 + 0.03 * (i - len(rows) / 2)
            lo, hi = _err(iv)
            ax.errorbar([x], [iv.mean], yerr=[[lo], [hi]], marker="s", color=color, capsize=2)
    for r in (x for x in results if x.cell.kind in ROUND0_KINDS):
        iv = r.interval("merged")
        if iv.mean is not None:
            ax.axhline(iv.mean, ls="--", lw=1, color="#444444", label=_short(r))
            if iv.low is not None:
                ax.axhspan(iv.low, iv.high, color="#444444", alpha=0.08, lw=0)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xticks([*xs, rounds + 1], [*(f"r{x}" for x in xs), "merged"])
    ax.set_ylabel("mIoU: mean over seeds and folds, band = interval")
    ax.set_ylim(bottom=0)  # a zoomed axis makes differences within the bands look like effects
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    return _save(fig, path)


FOREST = (
    ("vs_r0", "merged − r0", "#d95f02"),
    ("last_vs_r0", "last round − r0", "#1b9e77"),
    ("vs_all_pixels", "merged − all pixels", "#7570b3"),
    ("vs_tta", "merged − TTA of r0", "#e7298a"),
)


def forest_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Per cell: mean paired differences with their seeds x folds intervals."""
    rows = [r for r in results if any(k in r.comparisons for k, _, _ in FOREST)]
    rows = [
        r for r in rows if r.comparisons.get("vs_r0") and r.comparisons["vs_r0"].mean is not None
    ]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.4 * len(rows)), dpi=100)
    labelled: set[str] = set()
    for i, r in enumerate(rows):
        for j, (key, lab, color) in enumerate(FOREST):
            iv = r.comparisons.get(key)
            if iv is None or iv.mean is None:
                continue
            y = i + 0.15 * (j - 1.5)
            lo = iv.low if iv.low is not None else iv.mean
            hi = iv.high if iv.high is not None else iv.mean
            shown = lab in labelled
            labelled.add(lab)
            ax.plot([lo, hi], [y, y], color=color, lw=2, label=None if shown else lab)
            ax.plot([iv.mean], [y], "o", color=color, ms=3)
    ax.axvline(0, color="#333333", lw=0.8)
    ax.set_yticks(range(len(rows)), [r.cell.id for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("Δ mIoU, mean over seeds and folds (t-interval, crossed seed × fold model)")
    ax.set_title(title, fontsize=9)
    # outside the axes: inside, it covered the right ends of the bars
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    return _save(fig, path)


def three_way_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Bars per cell: round 0, last round, merged (mean over runs, seeds x folds interval)."""
    rows = [
        r for r in results if r.cell.kind not in ROUND0_KINDS and r.over_runs("r0")[0] is not None
    ]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * len(rows) + 2), 3.6), dpi=100)
    w = 0.27
    for j, (what, color) in enumerate(
        (("r0", "#999999"), ("last", "#1b9e77"), ("merged", "#d95f02"))
    ):
        ivs = [r.interval(what) for r in rows]
        errs = [_err(iv) for iv in ivs]
        ax.bar(
            np.arange(len(rows)) + (j - 1) * w,
            [iv.mean or 0 for iv in ivs],
            w,
            yerr=[[e[0] for e in errs], [e[1] for e in errs]],
            color=color,
            label={"r0": "round 0", "last": "last round", "merged": "merged"}[what],
            capsize=1.5,
        )
    ax.set_xticks(range(len(rows)), [_short(r) for r in rows], rotation=45, ha="right", fontsize=6)
    lows = [v for r in rows for v in (r.over_runs("r0")[0], r.over_runs("merged")[0]) if v]
    if lows:
        ax.set_ylim(max(0, min(lows) - 0.08), min(1, max(lows) + 0.05))
    ax.set_ylabel("mIoU (mean over seeds and folds, interval)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def x_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Merged mIoU against x (mean over runs, seeds x folds interval) for the grid's top and
    bottom cells of one number x; round 0 dotted."""
    series: dict[str, list[tuple[float, float, float, float]]] = {}
    r0 = None
    for r in results:
        r0 = r0 if r0 is not None else r.over_runs("r0")[0]
        if r.cell.kind != "grid" or r.cell.direction == "band" or isinstance(r.cell.x, list):
            continue
        iv = r.interval("merged")
        if iv.mean is not None:
            series.setdefault(f"{r.cell.direction}, {r.cell.score}", []).append(
                (float(r.cell.x), iv.mean, *_err(iv))
            )
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts.sort()
        x, y, lo, hi = zip(*pts, strict=True)
        ax.errorbar(
            x,
            y,
            yerr=[lo, hi],
            marker="o",
            ms=3,
            capsize=2,
            color=COLORS[i % len(COLORS)],
            label=name,
        )
    if r0 is not None:
        ax.axhline(r0, ls=":", color="#333333", label="round 0")
    ax.set_xscale("log")
    ax.set_xlabel("x (% of each class's pixels)")
    ax.set_ylabel("merged mIoU (mean over seeds and folds, interval)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def hist_plot(results: Sequence[CellResult], path: Path, title: str) -> Path | None:
    """Per class, the round-0 score histogram and each cell's last selection's (density), of
    the first (seed, fold) run: distributions, not an effect."""
    rows = [r for r in results if r.cell.kind not in ROUND0_KINDS and r.runs]
    first = [(r, next(iter(r.runs.values()))) for r in rows]
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
    storage.save_figure(fig, path)
    plt.close(fig)
    return path


def jaccard_plot(results: Sequence[CellResult], rounds: int, path: Path, title: str) -> Path | None:
    """Mean Jaccard overlap (over classes and runs) of each round's selection with the previous."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=100)
    drawn = False
    for i, r in enumerate(x for x in results if x.cell.kind not in ROUND0_KINDS):
        pts = []
        for k in range(1, rounds + 1):
            vals = [f.jaccard.get(k) for f in r.runs.values() if f.jaccard.get(k) is not None]
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
