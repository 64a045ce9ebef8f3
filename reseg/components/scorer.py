"""Scorer, a Beam job (the BulkInferrer pattern): a round's model over every tile.

Each worker loads the model once (`DoFn.setup`); tiles arrive in batches from
`BatchElements`, are normalised with the model's statistics and predicted, and
leave as tiles of schema v1 carrying `score/probs` (H x W x C float16) and
`score/round`. The output is a set of gzip TFRecord shards: their order is
whatever Beam makes it, so every reader of scores is order-independent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from reseg import artifacts, layout, quiet, storage
from reseg.components.beamio import WriteShards, count_records
from reseg.components.trainer.inputs import files_fingerprint
from reseg.config import Config
from reseg.inference import KerasBackend, predict_tta
from reseg.inference.guard import SAMPLE_TILES, guarded
from reseg.inference.precision import resolve as resolve_precision
from reseg.tfrecords_schema import decode, encode
from reseg.tfrecords_schema.schema import iter_records

log = logging.getLogger(__name__)

CODE_VERSION = 1


class ScoreBatch(beam.DoFn):
    """Predicts a batch of serialised tiles; the model is loaded once per DoFn instance."""

    def __init__(
        self,
        model_dir: str,
        round_: int,
        tta: tuple[str, ...] = ("identity",),
        precision: str = "float32",
    ):
        self.model_dir = model_dir
        self.round = round_
        self.tta = tuple(tta)
        self.precision = precision
        self.backend = None

    def setup(self) -> None:
        self.backend = KerasBackend(self.model_dir, precision=self.precision)

    def process(self, records: list[bytes]) -> Iterator[bytes]:
        tiles = [decode(r) for r in records]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tiles):
            by_shape.setdefault(t.image.shape, []).append(i)
        for idx in by_shape.values():
            raw = np.stack([tiles[i].image for i in idx])
            valid = np.stack([tiles[i].valid for i in idx])
            probs = predict_tta(self.backend, raw, valid, self.tta)  # type: ignore[arg-type]
            for i, p in zip(idx, probs, strict=True):
                yield encode(tiles[i].with_scores(p, self.round))


class ScoreTiles(beam.PTransform):
    """Serialised tiles -> serialised tiles with scores."""

    def __init__(
        self,
        model_dir: str,
        round_: int,
        batch_size: int,
        tta: tuple[str, ...] = ("identity",),
        precision: str = "float32",
    ):
        super().__init__()
        self.model_dir, self.round, self.batch_size, self.tta = (
            model_dir,
            round_,
            batch_size,
            tuple(tta),
        )
        self.precision = precision

    def expand(self, records):
        return (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.batch_size)
            | "Predict"
            >> beam.ParDo(ScoreBatch(self.model_dir, self.round, self.tta, self.precision))
        )


def score(
    cfg: Config,
    model: artifacts.Model | str | Path,
    tile_files: Sequence[Path],
    out: str | Path,
    round_: int,
    beam_args: Sequence[str] = (),
    batch_size: int = 16,
    tta: tuple[str, ...] = ("identity",),
) -> artifacts.Scores:
    """Write the tiles of `tile_files` with `model`'s probabilities into `out` (skipped when current).

    `tta` names D4 transforms (`reseg.config.predict.D4`) whose back-transformed predictions are averaged.
    The model runs in `rounds.score_precision` (`auto` resolved here, on the machine that
    launches the job, and guarded: `score_precision`; a precision other than float32 is
    part of the fingerprint, and the manifest records the one that ran).
    """
    model = model if isinstance(model, artifacts.Model) else artifacts.Model.load(model)
    precision = resolve_precision(cfg.rounds.score_precision)
    fp = artifacts.fingerprint(
        "score",
        CODE_VERSION,
        model.version,
        files_fingerprint([storage.path(f) for f in tile_files]),  # names alone miss re-made tiles
        round_,
        list(tta),
        *([] if precision == "float32" else [precision]),
    )
    if artifacts.is_current(out, fp):
        log.info("scores are current (%s); skipping", out)
        return artifacts.Scores.load(out)
    with artifacts.stage(out, fp, "score") as st:
        st.clear_files()  # Beam writes the whole set again; drop a killed run's files
        precision, guard = score_precision(cfg, model, tile_files)
        args = [*cfg.beam.args, *beam_args]
        log.info("scoring %d tile files with %s in %s", len(tile_files), model.path, precision)
        with beam.Pipeline(options=PipelineOptions(quiet.beam_args(args))) as p:
            _ = (
                p
                | "Files" >> beam.Create([str(f) for f in tile_files])
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.FlatMap(iter_records)  # local or object store (reseg.storage)
                | "Score" >> ScoreTiles(str(model.path), round_, batch_size, tuple(tta), precision)
                | "Write" >> WriteShards(st.dir)
            )
        files = sorted(f.name for f in st.dir.glob(layout.SHARD_GLOB))
        expected = count_records(list(tile_files))
        written = count_records([st.dir / f for f in files])
        if written != expected:
            raise RuntimeError(
                f"scoring wrote {written} tiles for {expected} inputs into {st.dir}; rerun the step"
            )
        st.manifest.update(
            round=round_, model=str(model.path), precision=precision, guard=guard, files=files
        )
    return artifacts.Scores.load(out)


def score_precision(
    cfg: Config, model: artifacts.Model, tile_files: Sequence[Path]
) -> tuple[str, dict | None]:
    """The precision scoring runs in, and the guard's record (`reseg.inference.guard`).

    `auto`'s bfloat16 is checked on the first `SAMPLE_TILES` tiles (of the first tile's
    shape) of the first tile file, against `predict.min_agreement`, in this process.
    """
    requested = cfg.rounds.score_precision
    if requested != "auto" or resolve_precision(requested) == "float32":
        return resolve_precision(requested), None

    def sample() -> tuple[np.ndarray, np.ndarray]:
        tiles = []
        for f in sorted(str(f) for f in tile_files):
            for r in iter_records(f):
                t = decode(r)
                if not tiles or t.image.shape == tiles[0].image.shape:
                    tiles.append(t)
                if len(tiles) == SAMPLE_TILES:
                    break
            if len(tiles) == SAMPLE_TILES:
                break
        return np.stack([t.image for t in tiles]), np.stack([t.valid for t in tiles])

    key = ("score", model.fingerprint, cfg.predict.min_agreement)
    backend = KerasBackend(model.path)
    return guarded(backend, requested, sample, cfg.predict.min_agreement, key)


def score_files(scores_dir: str | Path) -> list[Path]:
    """The TFRecord files of a published scores directory."""
    return list(artifacts.Scores.load(scores_dir).files)
