"""Selector: per class, the top (or bottom, or a band of) x% of pixels by score.

**Candidates** are the labelled core pixels of the training folds' tiles (for
evaluation fold k: `reseg.folds.training_folds`, neither fold k nor its
validation fold), so each scene pixel is counted once and no evaluation or
validation pixel is ever selected or counted in N_c. With `correct_only`, only candidates whose
predicted class is their label.

**Scores** (higher = surer), from the round's probabilities p (C values per pixel):
true_class p[y]; max_prob max_c p[c]; margin p(1) - p(2) (the two highest);
entropy 1 - H(p) / log C with H(p) = -sum_c p[c] log p[c].

**Counts.** For class c with N_c labelled training pixels and a pool of P_c
candidates, `top`/`bottom` select m_c = min(P_c, round(x_c N_c / 100)) pixels (for
`bottom` at least min(min_kept, P_c)); `band [lo, hi]` selects the pool's
ascending ranks floor(lo P_c / 100) .. floor(hi P_c / 100) - 1. An absolute
`threshold` t selects score >= t (top) or <= t (bottom). A class asked for more
than it has gives all it has, and `selection.json` marks it `short`.

**Exact and reproducible.** Scores are quantised to q = round(65535 s) and each
pixel gets the 64-bit key (q << 48) | h, where h is a 48-bit hash of the pixel's
scene position. Keys order pixels totally, so "the m highest" is one exact set,
whatever the order tiles are read in; equal scores are broken by position hash.
The work streams in passes: per-class histograms of q locate the boundary bins,
the keys of those bins alone are sorted to find the exact boundary keys, and a
last pass marks the selected pixels.

**Output** (`selection/`): `<scene>.tif` per scene, uint8 on the scene grid,
0 = not selected, c + 1 = selected pixel of class c (with a colour table), and
`part-*.tfrecord.gz`: the tile set again with `weight/raw` read from those rasters
(`only`: w = 1 selected, 0 otherwise; `emphasis`: w = 1 + lambda selected, 1
otherwise), so a pixel has the same weight in every tile that overlaps it. Also
`selection.json` (counts, score ranges, Jaccard overlap of each class's selection
with the previous round's) and per-class score histograms (`score_hist.json`, PNG).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow

from reseg import artifacts, layout, storage
from reseg.config.data import IGNORE
from reseg.config.rounds import SelectionConfig
from reseg.folds import held_folds
from reseg.tfrecords_schema import TFRecordShardWriter, Tile, encode, read_tiles

log = logging.getLogger(__name__)

CODE_VERSION = 2
Q = 65535
BINS = Q + 1
HIST_BINS = 50


# --- pure arithmetic (property-tested) ------------------------------------------------


def pixel_scores(probs: np.ndarray, label: np.ndarray, kind: str) -> np.ndarray:
    """Confidence in [0, 1] of each pixel, higher = surer. probs (..., C), label (...)."""
    p = probs.astype(np.float32)
    if kind == "true_class":
        lab = np.where(label == IGNORE, 0, label).astype(np.int64)
        return np.take_along_axis(p, lab[..., None], -1)[..., 0]
    if kind == "max_prob":
        return p.max(-1)
    if kind == "margin":
        top2 = np.sort(p, -1)[..., -2:]
        return top2[..., 1] - top2[..., 0]
    if kind == "entropy":
        c = p.shape[-1]
        h = -(p * np.log(np.clip(p, 1e-12, 1))).sum(-1)
        return 1 - h / np.log(c)
    raise ValueError(f"unknown score type {kind!r}")


def quantize(s: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(s, 0, 1) * Q).astype(np.uint64)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def pixel_keys(q: np.ndarray, scene: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(q << 48) | 48-bit hash of (scene, row, col): a total order on pixels."""
    pos = (
        (np.uint64(scene) << np.uint64(42))
        | (rows.astype(np.uint64) << np.uint64(21))
        | cols.astype(np.uint64)
    )
    return (q.astype(np.uint64) << np.uint64(48)) | (_splitmix64(pos) >> np.uint64(16))


def rank_range(cfg: SelectionConfig, x: float, n_class: int, pool: int) -> tuple[int, int, int]:
    """Ascending ranks [a, b) of the pool to select, and how many were asked for."""
    if cfg.direction == "band":
        lo, hi = cfg.band  # type: ignore[misc]
        a, b = int(np.floor(lo * pool / 100)), int(np.floor(hi * pool / 100))
        return a, b, b - a
    asked = int(round(x * n_class / 100))
    if cfg.direction == "bottom":
        asked = max(asked, cfg.min_kept)
    m = min(asked, pool)
    return (pool - m, pool, asked) if cfg.direction == "top" else (0, m, asked)


def key_at(cum: np.ndarray, rank: int, sorted_keys: dict[int, np.ndarray]) -> int:
    """Key of the pixel at ascending `rank`, given cumulative bin counts and the sorted keys of its bin."""
    b = int(np.searchsorted(cum, rank, side="right"))
    before = int(cum[b - 1]) if b else 0
    return int(sorted_keys[b][rank - before])


def boundary_bin(cum: np.ndarray, rank: int) -> int:
    return int(np.searchsorted(cum, rank, side="right"))


# --- passes ---------------------------------------------------------------------------


@dataclass
class _Candidates:
    """Core candidates of one tile: class ids, keys, scene positions."""

    classes: np.ndarray
    keys: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    q_all: np.ndarray  # quantised scores of every labelled core pixel (before correct_only)
    classes_all: np.ndarray


def _candidates(
    t: Tile, scene_index: int, held: tuple[int, ...], cfg: SelectionConfig
) -> _Candidates | None:
    """`held`: the folds whose pixels are not candidates (evaluation, validation)."""
    if t.fold in held:
        return None
    if t.probs is None:
        raise ValueError(f"tile {t.key} carries no scores")
    rs, cs = t.core_slice()
    lab = t.label[rs, cs]
    labelled = lab != IGNORE
    if held:
        labelled &= ~np.isin(t.fold_map[rs, cs], held)
    probs = t.probs[rs, cs]
    q = quantize(pixel_scores(probs, lab, cfg.score))
    pool = labelled.copy()
    if cfg.correct_only:
        pool &= probs.argmax(-1) == lab
    rr, cc = np.nonzero(pool)
    rows, cols = rr + rs.start + t.row, cc + cs.start + t.col
    return _Candidates(
        classes=lab[pool].astype(np.int64),
        keys=pixel_keys(q[pool], scene_index, rows, cols),
        rows=rows,
        cols=cols,
        q_all=q[labelled],
        classes_all=lab[labelled].astype(np.int64),
    )


def _iter_candidates(files, scene_ids, held, cfg):
    for t in read_tiles(list(files)):
        cand = _candidates(t, scene_ids[t.scene], held, cfg)
        if cand is not None:
            yield t, cand


def select(
    scores: artifacts.Scores,
    tiles: artifacts.TileSet,
    out: str | Path,
    cfg: SelectionConfig,
    fold: int | None,
    selection_index: int,
    previous: artifacts.Selection | None = None,
) -> artifacts.Selection:
    """Select pixels from a round's scores and write next round's weighted tiles into `out`.

    `previous` (the selection of the round before) is only compared with (Jaccard).
    """
    fp = artifacts.fingerprint(
        "select",
        CODE_VERSION,
        cfg.model_dump(mode="json"),
        fold,
        selection_index,
        scores.version,
        tiles.version,
        None if previous is None else previous.version,
    )
    if artifacts.is_current(out, fp):
        log.info("selection is current (%s); skipping", out)
        return artifacts.Selection.load(out)
    with artifacts.stage(out, fp, "select", local=True) as st:  # rasters written by window
        st.manifest.update(_select(scores, tiles, st.dir, cfg, fold, selection_index, previous))
    return artifacts.Selection.load(out)


@dataclass
class _Run:
    """What every pass of one selection reads: the scored tiles, the folds held out, the percents."""

    cfg: SelectionConfig
    tiles: artifacts.TileSet
    scores_files: Sequence[Path]
    scene_ids: dict[str, int]
    held: tuple[int, ...]
    x: list[float]
    fold: int | None
    selection_index: int
    previous: Any  # the previous selection's directory, or None

    @property
    def C(self) -> int:
        return self.tiles.num_classes

    def candidates(self):
        """One read of the scored tiles: (tile, its candidates) for the tiles not held out."""
        return _iter_candidates(self.scores_files, self.scene_ids, self.held, self.cfg)


@dataclass
class _Counts:
    """Pass 1: histograms of quantised scores per class, (C, BINS) each."""

    hist_pool: np.ndarray  # candidates
    hist_all: np.ndarray  # every labelled training pixel

    @property
    def n_class(self) -> np.ndarray:
        return self.hist_all.sum(1)

    @property
    def pool(self) -> np.ndarray:
        return self.hist_pool.sum(1)

    @property
    def cum(self) -> np.ndarray:
        return np.cumsum(self.hist_pool, axis=1)


@dataclass
class _Bounds:
    """Key bounds per class: selected iff lo <= key < hi (None: no bound; lo None: nothing).

    `ranks[c]` is (a, b, asked) from `rank_range`, or None under an absolute threshold.
    """

    bounds: list[tuple[int | None, int | None]]
    ranks: list[tuple[int, int, int] | None]


@dataclass
class _Marks:
    """Pass 3's counts per class: selected pixels, and intersection/union with the previous round's."""

    selected: np.ndarray
    inter: np.ndarray
    union: np.ndarray


def _select(
    scores: artifacts.Scores,
    tiles: artifacts.TileSet,
    tmp: Path,
    cfg: SelectionConfig,
    fold: int | None,
    selection_index: int,
    previous: artifacts.Selection | None,
) -> dict[str, Any]:
    """The selection written into staging directory `tmp`; returns the manifest's entries."""
    run = _Run(
        cfg=cfg,
        tiles=tiles,
        scores_files=scores.files,
        scene_ids={s["id"]: i for i, s in enumerate(tiles.manifest["scenes"])},
        held=held_folds(fold, tiles.folds),
        x=cfg.percent_for(selection_index, tiles.num_classes),
        fold=fold,
        selection_index=selection_index,
        previous=None if previous is None else previous.path,
    )
    counts = _count(run)
    bounds = _bounds(run, counts)
    marks = _mark(run, bounds, tmp)
    # pass 4: the tile set with per-pixel weights from the rasters
    _write_weighted(tiles, tmp, cfg)
    report = _report(run, counts, bounds, marks)
    artifacts.write_json(tmp / layout.SELECTION_JSON, report)
    hist_json = score_histograms(counts.hist_all, tiles.class_names)
    artifacts.write_json(tmp / layout.SCORE_HIST_JSON, hist_json)
    plot_histograms(hist_json, report, tmp / layout.SCORE_HIST_PNG)
    return {"files": [f.name for f in tiles.files], "selected": marks.selected.tolist()}


def _count(run: _Run) -> _Counts:
    """Pass 1: histograms of quantised scores per class (pool and all labelled pixels)."""
    C = run.C
    hist_pool = np.zeros((C, BINS), np.int64)
    hist_all = np.zeros((C, BINS), np.int64)
    for _, cand in run.candidates():
        q = (cand.keys >> np.uint64(48)).astype(np.int64)
        hist_pool += np.bincount(cand.classes * BINS + q, minlength=C * BINS).reshape(C, BINS)
        q_all = cand.q_all.astype(np.int64)
        hist_all += np.bincount(cand.classes_all * BINS + q_all, minlength=C * BINS).reshape(
            C, BINS
        )
    return _Counts(hist_pool, hist_all)


def _bounds(run: _Run, counts: _Counts) -> _Bounds:
    """Each class's key bounds: from the absolute threshold, or from its ranks (pass 2)."""
    cfg = run.cfg
    if cfg.threshold is not None:
        qt = int(np.rint(cfg.threshold * Q))
        bound = (qt << 48, None) if cfg.direction == "top" else (0, (qt + 1) << 48)
        return _Bounds([bound] * run.C, [None] * run.C)
    n_class, pool, cum = counts.n_class, counts.pool, counts.cum
    ranks = []
    need: dict[tuple[int, int], list[np.ndarray]] = {}
    for c in range(run.C):
        a, b, asked = rank_range(cfg, run.x[c], int(n_class[c]), int(pool[c]))
        ranks.append((a, b, asked))
        for r in (a, b):
            if a < b and r < pool[c]:
                need.setdefault((c, boundary_bin(cum[c], r)), [])
    if need:
        _collect_boundary_keys(run, need)
    bounds: list[tuple[int | None, int | None]] = []
    for c in range(run.C):
        a, b, _ = ranks[c]
        if a >= b:
            bounds.append((None, None))
            continue
        keys = {bb: np.sort(np.concatenate(v)) for (cc, bb), v in need.items() if cc == c and v}
        lo = key_at(cum[c], a, keys)
        hi = key_at(cum[c], b, keys) if b < pool[c] else None
        bounds.append((lo, hi))
    return _Bounds(bounds, ranks)


def _collect_boundary_keys(run: _Run, need: dict[tuple[int, int], list[np.ndarray]]) -> None:
    """Pass 2: append to `need[(class, bin)]` the keys of the candidates in those bins only."""
    for _, cand in run.candidates():
        qs = (cand.keys >> np.uint64(48)).astype(np.int64)
        for (c, b), acc in need.items():
            sel = (cand.classes == c) & (qs == b)
            if sel.any():
                acc.append(cand.keys[sel])


def _mark(run: _Run, bounds: _Bounds, tmp: Path) -> _Marks:
    """Pass 3: selection rasters (and counts, Jaccard with the previous selection)."""
    C = run.C
    marks = _Marks(np.zeros(C, np.int64), np.zeros(C, np.int64), np.zeros(C, np.int64))
    scenes = run.tiles.manifest["scenes"]
    srcs = {s["id"]: open_selection_raster(tmp / f"{s['id']}.tif", s, run.tiles) for s in scenes}
    previous = run.previous
    prev = (
        {
            s["id"]: rasterio.open(storage.gdal_path(storage.path(previous) / f"{s['id']}.tif"))
            for s in scenes
        }
        if previous
        else None
    )
    try:
        for t, cand in run.candidates():
            core, win = _core_selection(t, cand, bounds.bounds)
            srcs[t.scene].write(core, 1, window=win)
            marks.selected += np.bincount(core.ravel(), minlength=C + 1)[1:]
            if prev is not None:
                old = prev[t.scene].read(1, window=win)
                for c in range(C):
                    a_, b_ = core == c + 1, old == c + 1
                    marks.inter[c] += int((a_ & b_).sum())
                    marks.union[c] += int((a_ | b_).sum())
    finally:
        for s in srcs.values():
            s.close()
        for s in (prev or {}).values():
            s.close()
    return marks


def _core_selection(
    t: Tile, cand: _Candidates, bounds: list[tuple[int | None, int | None]]
) -> tuple[np.ndarray, RioWindow]:
    """One tile's core as a selection raster (0, or class + 1) and its window on the scene."""
    rs, cs = t.core_slice()
    h, w = rs.stop - rs.start, cs.stop - cs.start
    r0, c0 = rs.start + t.row, cs.start + t.col
    core = np.zeros((h, w), np.uint8)
    for c in np.unique(cand.classes):
        lo, hi = bounds[c]
        if lo is None:
            continue
        m = (cand.classes == c) & (cand.keys >= np.uint64(lo))
        if hi is not None:
            m &= cand.keys < np.uint64(hi)
        core[cand.rows[m] - r0, cand.cols[m] - c0] = c + 1
    return core, RioWindow(c0, r0, w, h)


def open_selection_raster(path: Path, scene: dict, tiles: artifacts.TileSet):
    from affine import Affine

    profile = dict(
        driver="GTiff",
        height=scene["height"],
        width=scene["width"],
        count=1,
        dtype="uint8",
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    if scene["crs"]:
        profile.update(crs=scene["crs"], transform=Affine.from_gdal(*scene["transform"]))
    dst = rasterio.open(path, "w", **profile)
    cmap = {0: (0, 0, 0, 0)}
    for c, color in enumerate(tiles.class_colors):
        cmap[c + 1] = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5)) + (255,)
    dst.write_colormap(1, cmap)
    dst.update_tags(1, classes=json.dumps(["(not selected)", *tiles.class_names]))
    return dst


def _write_weighted(tiles: artifacts.TileSet, tmp: Path, cfg: SelectionConfig) -> None:
    rasters = {}
    try:
        for f in tiles.files:
            with TFRecordShardWriter(tmp / f.name) as w:
                for t in read_tiles(f):
                    if t.scene not in rasters:
                        rasters[t.scene] = rasterio.open(tmp / f"{t.scene}.tif")
                    h, wd = t.label.shape
                    sel = rasters[t.scene].read(
                        1, window=RioWindow(t.col, t.row, wd, h), boundless=True, fill_value=0
                    )
                    mark = sel > 0
                    weight = (
                        mark.astype(np.float32)
                        if cfg.weighting == "only"
                        else 1 + cfg.emphasis * mark
                    )
                    w.write(encode(t.with_weight(weight)))
    finally:
        for r in rasters.values():
            r.close()


def _report(run: _Run, counts: _Counts, bounds: _Bounds, marks: _Marks) -> dict:
    """`selection.json`: per class its counts, asked and selected pixels, score range, Jaccard."""
    cfg, tiles, previous = run.cfg, run.tiles, run.previous
    x, n_class, pool = run.x, counts.n_class, counts.pool
    ranks, selected, inter, union = bounds.ranks, marks.selected, marks.inter, marks.union
    per_class = {}
    for c, name in enumerate(tiles.class_names):
        lo, hi = bounds.bounds[c]
        per_class[name] = {
            "pixels": int(n_class[c]),
            "pool": int(pool[c]),
            "percent": x[c],
            "asked": None if ranks[c] is None else ranks[c][2],
            "selected": int(selected[c]),
            "short": ranks[c] is not None and ranks[c][2] > pool[c],
            "score_min": None if lo is None or selected[c] == 0 else (lo >> 48) / Q,
            "score_max": None if selected[c] == 0 else (1.0 if hi is None else (hi >> 48) / Q),
            "jaccard_previous": (
                None if previous is None or union[c] == 0 else float(inter[c] / union[c])
            ),
        }
    return {
        "fold": run.fold,
        "held_folds": list(run.held),
        "selection_index": run.selection_index,
        "score": cfg.score,
        "direction": cfg.direction,
        "weighting": cfg.weighting,
        "correct_only": cfg.correct_only,
        "previous": None if previous is None else str(previous),
        "selected": int(selected.sum()),
        "per_class": per_class,
    }


def score_histograms(hist_all: np.ndarray, names: Sequence[str]) -> dict:
    idx = np.arange(BINS) * HIST_BINS // BINS
    coarse = np.zeros((hist_all.shape[0], HIST_BINS), np.int64)
    for c in range(hist_all.shape[0]):
        coarse[c] = np.bincount(idx, weights=hist_all[c], minlength=HIST_BINS).astype(np.int64)
    return {
        "edges": np.linspace(0, 1, HIST_BINS + 1).round(4).tolist(),
        "counts": {n: coarse[c].tolist() for c, n in enumerate(names)},
    }


def plot_histograms(hist: dict, report: dict, path: Path) -> None:
    """Per-class histograms of the score, selected score range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(hist["counts"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), dpi=90, squeeze=False)
    edges = np.array(hist["edges"])
    for ax, name in zip(axes.ravel(), names, strict=False):
        counts = np.array(hist["counts"][name])
        ax.stairs(counts, edges, fill=True, color="#7570b3")
        pc = report["per_class"][name]
        if pc["score_min"] is not None:
            ax.axvspan(pc["score_min"], pc["score_max"], color="#d95f02", alpha=0.25)
        ax.set_title(f"{name}: {pc['selected']} of {pc['pixels']}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle(
        f"{report['score']} score per class (shaded: selected, {report['direction']})", fontsize=9
    )
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.85, wspace=0.3, hspace=0.6)
    storage.save_figure(fig, path)
    plt.close(fig)


def weighted_files(selection_dir: str | Path) -> list[Path]:
    """The weighted tiles of a published selection."""
    return list(artifacts.Selection.load(selection_dir).files)
