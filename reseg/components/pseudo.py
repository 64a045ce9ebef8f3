"""Pseudo-labels: per predicted class, the most confident x% of the pixels without training labels.

**Pool.** The core pixels that hold data, whose role (`tile/role_map`) is unlabelled
or target, and whose fold is a training fold of the model (`reseg.folds.training_folds`:
neither the evaluation fold k nor the validation fold k + 1 mod K), so the trainer,
which masks those folds, sees every pseudo-label it is given. Each scene pixel once.

**Per pixel**, from the round's probabilities p (C values): the predicted class
c = argmax_c p[c] (the pseudo-label) and a score s, higher = surer: max_prob max p;
margin p(1) - p(2); entropy 1 - H(p) / log C (`selector.pixel_scores`).

**Counts.** Class c's pool holds the N_c pool pixels predicted as c. The selector
takes its m_c = round(x_c N_c / 100) highest scores, x fixed or growing per round
(class-balanced self-training: x_s = min(start + s step, max) for the s-th selection).
With a `floor` f only pixels with s >= f qualify: m_c = min(m_c, #{s >= f}), and the
m_c highest are those pixels, since they all lie above f. Exact and independent of
tile order as in `selector` (scores quantised, ties broken by a hash of the position).

**Target labels** (`target/raw`) are read only after every class's boundary is fixed,
to count the precision of each class's pseudo-labels: of the selected pixels with a
target label, the share whose pseudo-label equals it. They never change what is
selected, and the training tiles written here do not carry them.

**Output** (`pseudo/`): `<scene>.tif` for every scene with a pool (uint8 on the scene
grid, 0 = none, c + 1 = pseudo-label c, with a colour table: opens in QGIS);
`part-*.tfrecord.gz`, the next round's training tiles: label = the labelled pixels'
labels plus the pseudo-labels, weight 1 for labelled pixels and `weight` for pseudo-
labelled ones, tiles with neither dropped; `pseudo.json` (per class: pool, x, asked,
selected, score range, Jaccard with the previous round's pseudo-labels, precision
where target labels exist) and the per-class score histograms.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow

from reseg import artifacts, layout, storage
from reseg.components.selector import (
    BINS,
    Q,
    key_at,
    open_selection_raster,
    pixel_keys,
    pixel_scores,
    plot_histograms,
    quantize,
    score_histograms,
)
from reseg.config.data import IGNORE
from reseg.config.rounds import PseudoConfig
from reseg.folds import training_folds
from reseg.tfrecords_schema import TFRecordShardWriter, Tile, encode, read_tiles
from reseg.tfrecords_schema.schema import ROLE_TARGET, ROLE_UNLABELLED

log = logging.getLogger(__name__)

CODE_VERSION = 1


@dataclass
class _Pool:
    """Pool pixels of one tile's core: predicted classes, keys, scene positions, target labels."""

    classes: np.ndarray
    keys: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    target: np.ndarray | None


def pool_mask(t: Tile, folds: np.ndarray) -> np.ndarray:
    """(core H, core W) bool: the tile's core pixels in the pseudo-label pool (module docstring)."""
    rs, cs = t.core_slice()
    roles = t.roles()[rs, cs]
    m = (roles == ROLE_UNLABELLED) | (roles == ROLE_TARGET)
    return m & (t.valid[rs, cs] > 0) & np.isin(t.fold_map[rs, cs], folds)


def _pool(t: Tile, scene_index: int, folds: np.ndarray, score: str) -> _Pool | None:
    m = pool_mask(t, folds)
    if not m.any():
        return None
    if t.probs is None:
        raise ValueError(f"tile {t.key} carries no scores")
    rs, cs = t.core_slice()
    probs = t.probs[rs, cs]
    pred = probs.argmax(-1)
    q = quantize(pixel_scores(probs, pred, score))
    rr, cc = np.nonzero(m)
    rows, cols = rr + rs.start + t.row, cc + cs.start + t.col
    return _Pool(
        classes=pred[m].astype(np.int64),
        keys=pixel_keys(q[m], scene_index, rows, cols),
        rows=rows,
        cols=cols,
        target=None if t.target is None else t.target[rs, cs][m],
    )


def _iter_pools(files, scene_ids, folds, score):
    for t in read_tiles(list(files)):
        p = _pool(t, scene_ids[t.scene], folds, score)
        if p is not None:
            yield t, p


def pseudo_label(
    scores: artifacts.Scores,
    tiles: artifacts.TileSet,
    out: str | Path,
    cfg: PseudoConfig,
    fold: int | None,
    selection_index: int,
    previous: artifacts.PseudoLabels | None = None,
) -> artifacts.PseudoLabels:
    """Pseudo-labels of a round's scores and the next round's training tiles, into `out`.

    `selection_index` s picks x (`PseudoConfig.percent_for`); `previous` (the pseudo-labels
    of the round before) is only compared with (Jaccard). Skipped when current.
    """
    fp = artifacts.fingerprint(
        "pseudo",
        CODE_VERSION,
        cfg.model_dump(mode="json"),
        fold,
        selection_index,
        scores.version,
        tiles.version,
        None if previous is None else previous.version,
    )
    if artifacts.is_current(out, fp):
        log.info("pseudo-labels are current (%s); skipping", out)
        return artifacts.PseudoLabels.load(out)
    with artifacts.stage(out, fp, "pseudo", local=True) as st:  # rasters written by window
        st.manifest.update(_pseudo(scores, tiles, st.dir, cfg, fold, selection_index, previous))
    result = artifacts.PseudoLabels.load(out)
    log.info(
        "pseudo-labels of %s: %d pixels (%s)",
        out,
        result.report["selected"],
        ", ".join(f"{n} {pc['selected']}" for n, pc in result.report["per_class"].items()),
    )
    return result


def pool_scenes(tiles: artifacts.TileSet) -> list[dict[str, Any]]:
    """The tile manifest's scenes that hold unlabelled or target pixels."""
    return [
        s
        for s in tiles.manifest["scenes"]
        if s.get("role", "labelled") != "labelled" or s.get("target_blocks")
    ]


@dataclass
class _Run:
    """What every pass of one pseudo-labelling reads: the scored tiles, the training folds, x."""

    cfg: PseudoConfig
    tiles: artifacts.TileSet
    files: Any  # the scores' tile files
    scene_ids: dict[str, int]
    folds: np.ndarray
    x: list[float]
    fold: int | None
    selection_index: int
    previous: artifacts.PseudoLabels | None

    def pools(self):
        """One read of the scored tiles: (tile, its pool) for the tiles with a pool."""
        return _iter_pools(self.files, self.scene_ids, self.folds, self.cfg.score)


@dataclass
class _Counts:
    """Pass 1 per predicted class: score histogram (C, BINS) and how many pixels to take."""

    hist: np.ndarray
    n_class: np.ndarray  # pool pixels predicted as c
    above: np.ndarray  # of those, with a score >= the floor
    asked: np.ndarray  # round(x_c N_c / 100)
    take: np.ndarray  # min(asked, above)


def _pseudo(
    scores: artifacts.Scores,
    tiles: artifacts.TileSet,
    tmp: Path,
    cfg: PseudoConfig,
    fold: int | None,
    selection_index: int,
    previous: artifacts.PseudoLabels | None,
) -> dict[str, Any]:
    """The pseudo-labels written into staging directory `tmp`; returns the manifest's entries."""
    run = _Run(
        cfg=cfg,
        tiles=tiles,
        files=scores.files,
        scene_ids={s["id"]: i for i, s in enumerate(tiles.manifest["scenes"])},
        folds=np.array(training_folds(fold, tiles.folds), np.uint8),
        x=cfg.percent_for(selection_index, tiles.num_classes),
        fold=fold,
        selection_index=selection_index,
        previous=previous,
    )
    counts = _count(run)
    lows = _lows(run, counts)
    scenes = pool_scenes(tiles)
    acc = _mark(run, lows, scenes, tmp)
    # pass 4: the next round's training tiles
    written = _write_training_tiles(tiles, tmp, {s["id"] for s in scenes}, cfg.weight)
    report = _report(run, counts, acc)
    artifacts.write_json(tmp / layout.PSEUDO_JSON, report)
    hist_json = score_histograms(counts.hist, tiles.class_names)
    artifacts.write_json(tmp / layout.SCORE_HIST_JSON, hist_json)
    plot_histograms(hist_json, report, tmp / layout.SCORE_HIST_PNG)
    return {
        "files": [f.name for f in tiles.files],
        "selected": acc.selected.tolist(),
        "training_tiles": written,
        "rasters": sorted(f"{s['id']}.tif" for s in scenes),
    }


def _count(run: _Run) -> _Counts:
    """Pass 1: histograms of quantised scores per predicted class, and each class's m_c."""
    C, cfg, x = run.tiles.num_classes, run.cfg, run.x
    hist = np.zeros((C, BINS), np.int64)
    for _, p in run.pools():
        q = (p.keys >> np.uint64(48)).astype(np.int64)
        hist += np.bincount(p.classes * BINS + q, minlength=C * BINS).reshape(C, BINS)
    n_class = hist.sum(1)
    qf = 0 if cfg.floor is None else int(np.rint(cfg.floor * Q))
    above = hist[:, qf:].sum(1)
    asked = np.array([int(round(x[c] * n_class[c] / 100)) for c in range(C)], np.int64)
    return _Counts(hist, n_class, above, asked, np.minimum(asked, above))


def _lows(run: _Run, counts: _Counts) -> list[int | None]:
    """Pass 2: keys of the boundary bins only -> the exact lowest selected key per class
    (None: the class takes nothing)."""
    C = run.tiles.num_classes
    cum = np.cumsum(counts.hist, axis=1)
    first = counts.n_class - counts.take  # ascending rank of the lowest selected pixel
    need = {
        c: int(np.searchsorted(cum[c], first[c], side="right")) for c in range(C) if counts.take[c]
    }
    found: dict[int, list[np.ndarray]] = {c: [] for c in need}
    if need:
        for _, p in run.pools():
            qs = (p.keys >> np.uint64(48)).astype(np.int64)
            for c, b in need.items():
                sel = (p.classes == c) & (qs == b)
                if sel.any():
                    found[c].append(p.keys[sel])
    lows: list[int | None] = [None] * C
    for c, b in need.items():
        lows[c] = key_at(cum[c], int(first[c]), {b: np.sort(np.concatenate(found[c]))})
    return lows


def _mark(run: _Run, lows: list[int | None], scenes: list[dict[str, Any]], tmp: Path) -> _Tally:
    """Pass 3: rasters; counts, Jaccard with the previous round, precision on target labels."""
    acc = _Tally(run.tiles.num_classes)
    dsts = {s["id"]: open_selection_raster(tmp / f"{s['id']}.tif", s, run.tiles) for s in scenes}
    previous = run.previous
    prev = (
        {
            s["id"]: rasterio.open(storage.gdal_path(previous.path / f"{s['id']}.tif"))
            for s in scenes
        }
        if previous is not None
        else None
    )
    try:
        for t, p in run.pools():
            chosen, core, win = _core_labels(t, p, lows)
            dsts[t.scene].write(core, 1, window=win)
            old = None if prev is None else prev[t.scene].read(1, window=win)
            acc.add(p, chosen, core, old)
    finally:
        for d in dsts.values():
            d.close()
        for d in (prev or {}).values():
            d.close()
    return acc


def _core_labels(
    t: Tile, p: _Pool, lows: list[int | None]
) -> tuple[np.ndarray, np.ndarray, RioWindow]:
    """One tile's chosen pool pixels, its core as a raster (0, or class + 1), its scene window."""
    rs, cs = t.core_slice()
    h, w = rs.stop - rs.start, cs.stop - cs.start
    r0, c0 = rs.start + t.row, cs.start + t.col
    chosen = np.zeros(len(p.classes), bool)
    for c in np.unique(p.classes):
        if lows[c] is not None:
            chosen |= (p.classes == c) & (p.keys >= np.uint64(lows[c]))
    core = np.zeros((h, w), np.uint8)
    core[p.rows[chosen] - r0, p.cols[chosen] - c0] = p.classes[chosen] + 1
    return chosen, core, RioWindow(c0, r0, w, h)


class _Tally:
    """Per-class counts of pass 3."""

    def __init__(self, C: int):
        z = lambda: np.zeros(C, np.int64)  # noqa: E731
        self.C = C
        self.selected, self.inter, self.union = z(), z(), z()
        self.judged, self.correct = z(), z()  # selected pixels with a target label
        self.pool_judged, self.pool_correct = z(), z()  # every pool pixel with a target label
        self.q_min = np.full(C, Q + 1, np.int64)
        self.q_max = np.full(C, -1, np.int64)

    def add(self, p: _Pool, chosen: np.ndarray, core: np.ndarray, old: np.ndarray | None) -> None:
        C = self.C
        cls = p.classes[chosen]
        self.selected += np.bincount(cls, minlength=C)
        q = (p.keys[chosen] >> np.uint64(48)).astype(np.int64)
        if len(q):
            np.minimum.at(self.q_min, cls, q)
            np.maximum.at(self.q_max, cls, q)
        if old is not None:
            for c in range(C):
                a, b = core == c + 1, old == c + 1
                self.inter[c] += int((a & b).sum())
                self.union[c] += int((a | b).sum())
        if p.target is not None:
            known = p.target != IGNORE
            ok = p.target == p.classes
            self.pool_judged += np.bincount(p.classes[known], minlength=C)
            self.pool_correct += np.bincount(p.classes[known & ok], minlength=C)
            self.judged += np.bincount(p.classes[known & chosen], minlength=C)
            self.correct += np.bincount(p.classes[known & ok & chosen], minlength=C)


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else float(a / b)


def _report(run: _Run, counts: _Counts, acc: _Tally) -> dict:
    """`pseudo.json`: per class its pool, asked and selected pixels, score range, Jaccard and
    precision; and the totals."""
    cfg, tiles, x, previous = run.cfg, run.tiles, run.x, run.previous
    n_class, above, asked = counts.n_class, counts.above, counts.asked
    per_class = {}
    for c, name in enumerate(tiles.class_names):
        sel = int(acc.selected[c])
        per_class[name] = {
            "pixels": int(n_class[c]),
            "above_floor": int(above[c]),
            "percent": x[c],
            "asked": int(asked[c]),
            "selected": sel,
            "short": bool(asked[c] > above[c]),
            "score_min": None if sel == 0 else float(acc.q_min[c] / Q),
            "score_max": None if sel == 0 else float(acc.q_max[c] / Q),
            "jaccard_previous": (
                None
                if previous is None or acc.union[c] == 0
                else float(acc.inter[c] / acc.union[c])
            ),
            "target_judged": int(acc.judged[c]),
            "precision": _ratio(int(acc.correct[c]), int(acc.judged[c])),
            "pool_precision": _ratio(int(acc.pool_correct[c]), int(acc.pool_judged[c])),
        }
    return {
        "fold": run.fold,
        "selection_index": run.selection_index,
        "score": cfg.score,
        "direction": "top",
        "floor": cfg.floor,
        "weight": cfg.weight,
        "previous": None if previous is None else str(previous.path),
        "selected": int(acc.selected.sum()),
        "target_judged": int(acc.judged.sum()),
        "accuracy": _ratio(int(acc.correct.sum()), int(acc.judged.sum())),
        "pool_accuracy": _ratio(int(acc.pool_correct.sum()), int(acc.pool_judged.sum())),
        "per_class": per_class,
    }


def _write_training_tiles(
    tiles: artifacts.TileSet, tmp: Path, raster_scenes: set[str], weight: float
) -> int:
    """Labelled pixels (weight 1) plus pseudo-labels (weight `weight`); returns tiles written."""
    rasters: dict[str, Any] = {}
    written = 0
    try:
        for f in tiles.files:
            with TFRecordShardWriter(tmp / f.name) as w:
                for t in read_tiles(f):
                    label = t.label
                    wmap = (label != IGNORE).astype(np.float32)
                    if t.scene in raster_scenes:
                        if t.scene not in rasters:
                            rasters[t.scene] = rasterio.open(tmp / f"{t.scene}.tif")
                        h, wd = t.label.shape
                        pl = rasters[t.scene].read(
                            1, window=RioWindow(t.col, t.row, wd, h), boundless=True, fill_value=0
                        )
                        mark = pl > 0
                        label = np.where(mark, pl - 1, label).astype(np.uint8)
                        wmap = np.where(mark, np.float32(weight), wmap)
                    if not (wmap > 0).any():
                        continue
                    out = Tile(
                        image=t.image,
                        label=label,
                        valid=t.valid,
                        fold_map=t.fold_map,
                        scene=t.scene,
                        row=t.row,
                        col=t.col,
                        core=t.core,
                        fold=t.fold,
                        crs=t.crs,
                        transform=t.transform,
                        role_map=t.role_map,
                    )  # no `target`: target labels stay out of training files
                    w.write(encode(out.with_weight(wmap)))
                    written += 1
    finally:
        for r in rasters.values():
            r.close()
    return written


def pseudo_files(pseudo_dir: str | Path) -> list[Path]:
    """The training tiles of a published pseudo-label directory."""
    return list(artifacts.PseudoLabels.load(pseudo_dir).files)
