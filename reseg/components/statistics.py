"""Statistics, a Beam job over the tiles: per-band moments and percentiles, class counts.

Only core pixels count (cores partition each scene, so every scene pixel counts
once although tiles overlap), and only valid ones (`image/valid`).

Per band: count n, mean and M2 (sum of squared deviations) are merged across
tiles with Chan et al.'s parallel update

    n = n_a + n_b,  delta = mean_b - mean_a,
    mean = mean_a + delta * n_b / n,  M2 = M2_a + M2_b + delta^2 n_a n_b / n,

and std = sqrt(M2 / n). Percentiles (2nd, 98th) come from a histogram over
[min, max] of each band built in a second pass: one bin per integer value for
integer bands whose range has at most 65,536 values (exact), else 65,536 equal
bins (to within one bin width). The p-th percentile follows numpy's default
(linear) definition: rank h = (n - 1) p / 100 between the order statistics
floor(h) and floor(h) + 1.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from reseg import artifacts, layout, quiet, storage
from reseg.config import IGNORE
from reseg.tfrecords_schema import decode
from reseg.tfrecords_schema.schema import iter_records

log = logging.getLogger(__name__)

CODE_VERSION = 1
MAX_BINS = 65536
PERCENTILES = (2, 98)


def _core_pixels(record: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """Valid core pixels (N, B) float64, their labels (N,) and the tile's fold."""
    t = decode(record)
    rs, cs = t.core_slice()
    valid = t.valid[rs, cs].astype(bool)
    return t.image[rs, cs][valid].astype(np.float64), t.label[rs, cs][valid], t.fold


class Moments(beam.CombineFn):
    """Per-band n, mean, M2, min, max, plus class counts per fold."""

    def __init__(self, bands: int, classes: int, folds: int):
        self.bands, self.classes, self.folds = bands, classes, folds

    def create_accumulator(self):
        b = self.bands
        return {
            "n": 0,
            "mean": np.zeros(b),
            "m2": np.zeros(b),
            "min": np.full(b, np.inf),
            "max": np.full(b, -np.inf),
            "classes": np.zeros((self.folds, self.classes), np.int64),
        }

    def add_input(self, acc, record: bytes):
        px, labels, fold = _core_pixels(record)
        part = self.create_accumulator()
        if len(px):
            part["n"] = len(px)
            part["mean"] = px.mean(0)
            part["m2"] = ((px - part["mean"]) ** 2).sum(0)
            part["min"], part["max"] = px.min(0), px.max(0)
        known = labels[labels != IGNORE]
        part["classes"][fold] = np.bincount(known, minlength=self.classes)[: self.classes]
        return self.merge_accumulators([acc, part])

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = self.create_accumulator()
        for a in accs:
            if a["n"] == 0:
                out["classes"] = out["classes"] + a["classes"]
                continue
            n = out["n"] + a["n"]
            delta = a["mean"] - out["mean"]
            out["mean"] = out["mean"] + delta * a["n"] / n
            out["m2"] = out["m2"] + a["m2"] + delta**2 * out["n"] * a["n"] / n
            out["n"] = n
            out["min"] = np.minimum(out["min"], a["min"])
            out["max"] = np.maximum(out["max"], a["max"])
            out["classes"] = out["classes"] + a["classes"]
        return out

    def extract_output(self, acc):
        return acc


def bin_edges(lo: float, hi: float, integer: bool) -> tuple[float, float, int]:
    """(first edge, bin width, number of bins) of a band's histogram."""
    if integer and hi - lo + 1 <= MAX_BINS:
        return lo, 1.0, int(hi - lo + 1)
    width = (hi - lo) / MAX_BINS if hi > lo else 1.0
    return lo, width, MAX_BINS


class Histograms(beam.CombineFn):
    """Per-band histograms over the ranges found by `Moments` (a side input)."""

    def __init__(self, bands: int, integer: bool):
        self.bands, self.integer = bands, integer

    def create_accumulator(self, *args, **kwargs):
        return None

    def add_input(self, acc, record: bytes, moments):
        px, _, _ = _core_pixels(record)
        hists = acc if acc is not None else self._empty(moments)
        for b in range(self.bands):
            lo, width, n = bin_edges(moments["min"][b], moments["max"][b], self.integer)
            idx = np.clip(((px[:, b] - lo) / width).astype(np.int64), 0, n - 1)
            hists[b] += np.bincount(idx, minlength=n)
        return hists

    def _empty(self, moments):
        return [
            np.zeros(bin_edges(moments["min"][b], moments["max"][b], self.integer)[2], np.int64)
            for b in range(self.bands)
        ]

    def merge_accumulators(self, accs, *args, **kwargs):
        accs = [a for a in accs if a is not None]
        if not accs:
            return None
        out = [h.copy() for h in accs[0]]
        for a in accs[1:]:
            for b in range(self.bands):
                out[b] += a[b]
        return out

    def extract_output(self, acc, *args, **kwargs):
        return acc


def percentile_from_hist(
    hist: np.ndarray, lo: float, width: float, p: float, integer: bool
) -> float:
    """p-th percentile (numpy's linear definition) of the values counted in `hist`."""
    cum = np.cumsum(hist)
    n = int(cum[-1])
    h = (n - 1) * p / 100.0
    k = int(np.floor(h))

    def order_stat(rank: int) -> float:
        b = int(np.searchsorted(cum, rank, side="right"))
        if integer and width == 1.0:
            return lo + b
        before = cum[b - 1] if b else 0
        return lo + width * (b + (rank - before + 0.5) / max(hist[b], 1))

    x0 = order_stat(k)
    x1 = order_stat(min(k + 1, n - 1))
    return float(x0 + (h - k) * (x1 - x0))


class _Save(beam.DoFn):
    """Writes a combined result (a dict or list of arrays, or None) as `.npz`.

    Arrays only, read back with `allow_pickle=False`: unlike a pickle, a file that
    another writer of a shared root put in the staging folder cannot run code here.
    """

    def __init__(self, path: str):
        self.path = path

    def process(self, value):
        if isinstance(value, dict):
            arrays = {k: np.asarray(v) for k, v in value.items()}
        else:
            arrays = {f"band{b}": np.asarray(h) for b, h in enumerate(value or [])}
        with storage.atomic_write(self.path, "wb") as fh:
            np.savez(fh, **arrays)


def _load_moments(path: Path) -> dict:
    with storage.path(path).open("rb") as fh, np.load(fh, allow_pickle=False) as z:
        m = {k: z[k] for k in z.files}
    m["n"] = int(m["n"])
    return m


def _load_hists(path: Path) -> list[np.ndarray] | None:
    with storage.path(path).open("rb") as fh, np.load(fh, allow_pickle=False) as z:
        return [z[f"band{b}"] for b in range(len(z.files))] or None


def stats_fingerprint(tiles: artifacts.TileSet) -> str:
    return artifacts.fingerprint("stats", CODE_VERSION, tiles.version)


def compute_stats(
    tiles: artifacts.TileSet,
    out: str | Path,
    beam_args: Sequence[str] = (),
    *,
    config_json: str | None = None,
) -> artifacts.Stats:
    """Write `stats.json` and `class_pixels.png` of `tiles` into `out` (skipped when current).

    Args:
        tiles: the tile set.
        out: the statistics folder (the stats step gives `<root>/stats`).
        beam_args: the Beam pipeline options (`beam.args` and the command's).
        config_json: the resolved config written beside the statistics (`config.json`).
    """
    out = storage.path(out)
    fp = stats_fingerprint(tiles)
    if artifacts.is_current(out, fp):
        log.info("stats are current (%s); skipping", out)
        return artifacts.Stats.load(out)
    with artifacts.stage(out, fp, "stats", config_json) as st:
        st.manifest.update(_compute(tiles, st.dir, beam_args))
    return artifacts.Stats.load(out)


def _compute(tiles: artifacts.TileSet, tmp: Path, beam_args: Sequence[str]) -> dict[str, Any]:
    """The Beam job: `stats.json` and its plot into staging directory `tmp`; manifest entries."""
    integer = np.dtype(tiles.image_dtype).kind in "ui"
    args = list(beam_args)
    log.info("statistics of %d tile files with Beam", len(tiles.files))
    with beam.Pipeline(options=PipelineOptions(quiet.beam_args(args))) as p:
        # one element per shard, read through reseg's storage layer (local or object store)
        records = (
            p
            | "Files" >> beam.Create([str(f) for f in tiles.files])
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.FlatMap(iter_records)
        )
        moments = records | "Moments" >> beam.CombineGlobally(
            Moments(tiles.bands, tiles.num_classes, tiles.folds)
        )
        hists = records | "Histograms" >> beam.CombineGlobally(
            Histograms(tiles.bands, integer), moments=beam.pvalue.AsSingleton(moments)
        )
        _ = moments | "SaveMoments" >> beam.ParDo(_Save(str(tmp / "_moments.npz")))
        _ = hists | "SaveHistograms" >> beam.ParDo(_Save(str(tmp / "_hists.npz")))
    m = _load_moments(tmp / "_moments.npz")
    hists = _load_hists(tmp / "_hists.npz")
    stats = _stats_json(m, hists, integer, tiles)
    (tmp / "_moments.npz").unlink()
    (tmp / "_hists.npz").unlink()
    artifacts.write_json(tmp / layout.STATS_JSON, stats)
    _plot_classes(stats, tiles, tmp / "class_pixels.png")
    return {"tiles": tiles.fingerprint, "valid_pixels": stats["valid_pixels"]}


def _stats_json(m: dict, hists: list[np.ndarray], integer: bool, tiles: artifacts.TileSet) -> dict:
    bands = []
    for b in range(tiles.bands):
        lo, width, _ = bin_edges(m["min"][b], m["max"][b], integer)
        pct = {f"p{p}": percentile_from_hist(hists[b], lo, width, p, integer) for p in PERCENTILES}
        bands.append(
            {
                "mean": float(m["mean"][b]),
                "std": float(np.sqrt(m["m2"][b] / max(m["n"], 1))),
                "min": float(m["min"][b]),
                "max": float(m["max"][b]),
                **pct,
            }
        )
    per_fold = m["classes"].astype(np.int64)
    return {
        "bands": bands,
        "valid_pixels": int(m["n"]),
        "class_names": list(tiles.class_names),
        "class_pixels": per_fold.sum(0).tolist(),
        "class_pixels_per_fold": per_fold.tolist(),
    }


def _plot_classes(stats: dict, tiles: artifacts.TileSet, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_fold = np.array(stats["class_pixels_per_fold"])
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * tiles.num_classes + 2), 3.5), dpi=100)
    bottom = np.zeros(tiles.num_classes)
    for k, row in enumerate(per_fold):
        ax.bar(tiles.class_names, row, bottom=bottom, label=f"fold {k}")
        bottom += row
    ax.set_ylabel("labelled core pixels")
    ax.set_title("class pixels per fold")
    ax.legend(fontsize=7)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    storage.save_figure(fig, path)
    plt.close(fig)


def load_stats_json(path: str | Path) -> dict:
    return json.loads((storage.path(path) / layout.STATS_JSON).read_text())
