"""Merger, a Beam job: the per-pixel probabilities of all rounds, merged.

The rounds' scores of the validation fold's tiles are joined by tile
(`CoGroupByKey` on scene/row/col, since score shards come in any order) and
combined with `reseg.inference.combine`: mean, mean weighted
by each round's validation mIoU, maximum confidence, or majority vote. The
configured method's result is written as a scores directory (evaluated like a
round); the confusion matrices of all four methods are kept in `methods.json`.
`merged.json` (the ensemble format the predictor reads) makes the merged
directory usable as `reseg predict --model <root>/merged/fold<k>`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from reseg import artifacts
from reseg.components.beamio import WriteShards
from reseg.inference import METHODS, combine
from reseg.metrics import confusion, scores
from reseg.tfrecords_schema import decode, encode

log = logging.getLogger(__name__)

CODE_VERSION = 1
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
    round_scores: Sequence[Path],
    round_models: Sequence[Path],
    weights: Sequence[float],
    method: str,
    fold: int | None,
    out: str | Path,
    class_names: Sequence[str],
    beam_args: Sequence[str] = (),
) -> Path:
    """Merge rounds into `out` (`scores/`, `methods.json`, `merged.json`); skipped when current."""
    out = Path(out)
    scores_out = out / "scores"
    fps = [artifacts.read_manifest(d)["fingerprint"] for d in round_scores]
    fp = artifacts.fingerprint("merge", CODE_VERSION, fps, list(weights), method, fold)
    if artifacts.is_current(scores_out, fp) and (out / "merged.json").exists():
        log.info("merged rounds are current (%s); skipping", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = artifacts.staging_dir(scores_out, fp)
    for stale in tmp.glob("*"):
        if stale.is_file():
            stale.unlink()
    started = time.time()
    n = len(round_scores)
    c = len(class_names)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        keyed = {}
        for r, d in enumerate(round_scores):
            files = [str(Path(d) / f) for f in artifacts.read_manifest(d)["files"]]
            keyed[r] = (
                p
                | f"Files{r}" >> beam.Create(files)
                | f"Read{r}" >> beam.io.ReadAllFromTFRecord(compression_type=CompressionTypes.GZIP)
                | f"Key{r}" >> beam.ParDo(KeyByTile(fold))
            )
        results = (
            keyed
            | "Join" >> beam.CoGroupByKey()
            | "Combine"
            >> beam.ParDo(Combine(n, weights, method, c)).with_outputs("cm", main="tiles")
        )
        _ = results.tiles | "Write" >> WriteShards(tmp)
        _ = (
            results.cm
            | "SumCm" >> beam.CombinePerKey(lambda cms: np.sum(list(cms), axis=0) if cms else None)
            | "SaveCm" >> beam.ParDo(_SaveCm(str(tmp)))
        )
    methods = {}
    for m in METHODS:
        path = tmp / f"_cm_{m}.npy"
        cm = np.load(path) if path.exists() else np.zeros((c, c), np.int64)
        path.unlink(missing_ok=True)
        methods[m] = scores(cm, class_names)
    artifacts.write_json(tmp / "methods.json", {"weights": list(weights), "methods": methods})
    files = sorted(f.name for f in tmp.glob("part-*.tfrecord.gz"))
    artifacts.publish(
        tmp,
        scores_out,
        {
            "fingerprint": fp,
            "step": "merge",
            "method": method,
            "rounds": n,
            "files": files,
            "seconds": round(time.time() - started, 3),
        },
    )
    spec = {
        "method": method,
        "members": [
            {"model": os.path.relpath(m, out), "weight": float(w) if method == "weighted" else 1.0}
            for m, w in zip(round_models, weights, strict=True)
        ],
    }
    artifacts.write_json(out / "merged.json", spec)
    return out


class _SaveCm(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def process(self, item):
        method, cm = item
        np.save(Path(self.directory) / f"_cm_{method}.npy", cm)


def method_metrics(merged_dir: str | Path) -> dict:
    import json

    return json.loads((Path(merged_dir) / "scores" / "methods.json").read_text())
