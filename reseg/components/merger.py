"""Merger, a Beam job: the per-pixel probabilities of all rounds, merged.

The rounds' scores of the evaluation fold's tiles are joined by tile
(`CoGroupByKey` on scene/row/col, since score shards come in any order) and
combined with `reseg.inference.combine`: mean, mean weighted by each round's
mIoU on the validation fold (never the evaluation fold: `reseg.pipeline.steps.
merge_weights`), maximum confidence, or majority vote. The
configured method's result is written as a scores directory (evaluated like a
round); the confusion matrices of all four methods are kept in `methods.json`.
`merged.json` (the ensemble format the predictor reads) makes the merged
directory usable as `reseg predict --model <root>/merged/fold<k>`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from reseg import artifacts, layout, quiet, storage
from reseg.components.beamio import WriteShards
from reseg.inference import METHODS, combine
from reseg.metrics import confusion, scores
from reseg.tfrecords_schema import decode, encode
from reseg.tfrecords_schema.schema import iter_records

log = logging.getLogger(__name__)

CODE_VERSION = 2  # methods.json: the fixed class set of reseg.metrics
MERGED_ROUND = -1


class KeyByTile(beam.DoFn):
    def __init__(self, fold: int | None):
        self.fold = fold

    def process(self, record: bytes) -> Iterator[tuple[str, bytes]]:
        t = decode(record)
        if self.fold is None or t.fold == self.fold:
            yield t.key, record


class Combine(beam.DoFn):
    """One tile's rounds -> the merged tile, plus each method's confusion matrix (tagged 'cm')."""

    def __init__(self, rounds: int, weights: Sequence[float], method: str, num_classes: int):
        self.rounds, self.weights, self.method, self.c = rounds, list(weights), method, num_classes

    def process(self, item):
        key, grouped = item
        tiles = []
        for r in range(self.rounds):
            recs = grouped[r]
            if len(recs) != 1:
                raise ValueError(f"tile {key}: {len(recs)} scores in round {r}, expected 1")
            tiles.append(decode(recs[0]))
        probs = [t.probs for t in tiles]
        t0 = tiles[0]
        rs, cs = t0.core_slice()
        label = t0.label[rs, cs]
        for m in METHODS:
            merged = combine(probs, self.weights if m == "weighted" else None, m)
            if m == self.method:
                yield encode(t0.with_scores(merged, MERGED_ROUND))
            # argmax of the float16 values that are stored, so methods.json agrees with the file
            pred = merged[rs, cs].astype(np.float16).argmax(-1)
            yield beam.pvalue.TaggedOutput("cm", (m, confusion(label, pred, self.c)))


def merge(
    round_scores: Sequence[artifacts.Scores],
    round_models: Sequence[artifacts.Model],
    weights: Sequence[float],
    method: str,
    fold: int | None,
    out: str | Path,
    class_names: Sequence[str],
    beam_args: Sequence[str] = (),
) -> artifacts.Merged:
    """Merge rounds into `out` (`merged.json`, `scores/` with `methods.json`); skipped when current.

    The whole folder is one artifact: `scores/` (with a manifest of its own, so it reads
    like a round's scores) and `merged.json` are staged together and published at once.
    """
    out = storage.path(out)
    fps = [s.version for s in round_scores]
    fp = artifacts.fingerprint(
        "merge",
        CODE_VERSION,
        fps,
        [m.version for m in round_models],
        list(weights),
        method,
        fold,
    )
    if artifacts.is_current(out, fp):
        log.info("merged rounds are current (%s); skipping", out)
        return artifacts.Merged.load(out)
    with artifacts.stage(out, fp, "merge") as st:
        scores_dir = st.dir / layout.SCORES
        scores_dir.mkdir(exist_ok=True)
        for stale in scores_dir.glob("*"):  # Beam writes the whole set again
            stale.unlink()
        methods, files = _merge(
            round_scores, weights, method, fold, scores_dir, class_names, beam_args
        )
        artifacts.write_json(
            scores_dir / layout.METHODS_JSON, {"weights": list(weights), "methods": methods}
        )
        artifacts.write_json(
            scores_dir / layout.MANIFEST,
            {
                "fingerprint": fp,
                "step": "merge",
                "method": method,
                "rounds": len(round_scores),
                "files": files,
            },
        )
        spec = _merged_spec(round_models, weights, method, out)
        artifacts.write_json(st.dir / layout.MERGED_JSON, spec)
        st.manifest.update(method=method, rounds=len(round_scores), weights=list(weights))
    return artifacts.Merged.load(out)


def _merged_spec(
    round_models: Sequence[artifacts.Model], weights: Sequence[float], method: str, out: Path
) -> dict:
    """`merged.json`: the method and its members, each model by its path relative to `out`
    with its weight (1 unless `weighted`)."""
    return {
        "method": method,
        "members": [
            {
                "model": storage.relpath(m.path, out),
                "weight": float(w) if method == "weighted" else 1.0,
            }
            for m, w in zip(round_models, weights, strict=True)
        ],
    }


def _merge(
    round_scores: Sequence[artifacts.Scores],
    weights: Sequence[float],
    method: str,
    fold: int | None,
    out: Path,
    class_names: Sequence[str],
    beam_args: Sequence[str],
) -> tuple[dict, list[str]]:
    """The Beam job: merged scores into `out`; returns every method's metrics and the files."""
    n = len(round_scores)
    c = len(class_names)
    with beam.Pipeline(options=PipelineOptions(quiet.beam_args(beam_args))) as p:
        keyed = {}
        for r, sc in enumerate(round_scores):
            keyed[r] = (
                p
                | f"Files{r}" >> beam.Create([str(f) for f in sc.files])
                | f"Read{r}" >> beam.FlatMap(iter_records)  # local or object store
                | f"Key{r}" >> beam.ParDo(KeyByTile(fold))
            )
        results = (
            keyed
            | "Join" >> beam.CoGroupByKey()
            | "Combine"
            >> beam.ParDo(Combine(n, weights, method, c)).with_outputs("cm", main="tiles")
        )
        _ = results.tiles | "Write" >> WriteShards(out)
        _ = (
            results.cm
            | "SumCm" >> beam.CombinePerKey(lambda cms: np.sum(list(cms), axis=0) if cms else None)
            | "SaveCm" >> beam.ParDo(_SaveCm(str(out)))
        )
    methods = {}
    for m in METHODS:
        path = out / f"_cm_{m}.npy"
        cm = np.zeros((c, c), np.int64)
        if path.exists():
            with path.open("rb") as fh:
                cm = np.load(fh)
        path.unlink(missing_ok=True)
        methods[m] = scores(cm, class_names)
    return methods, sorted(f.name for f in out.glob(layout.SHARD_GLOB))


class _SaveCm(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def process(self, item):
        method, cm = item
        with storage.atomic_write(storage.path(self.directory) / f"_cm_{method}.npy") as fh:
            np.save(fh, cm)


def method_metrics(merged_dir: str | Path) -> dict:
    """`{"weights": [...], "methods": {method: metrics}}` of published merged rounds."""
    m = artifacts.Merged.load(merged_dir)
    return {"weights": m.manifest.get("weights"), "methods": m.methods}
