"""The Python API: what a notebook needs, on the same step functions as the CLI.

    import reseg

    cfg = reseg.load_config("examples/demo_landsat.yaml")
    p = reseg.Pipeline(cfg, "runs/nb")
    p.run(steps=["tile", "stats"])          # or p.run() for everything
    p.train(round=0, fold=0)                # one step: what `reseg train --round 0 --fold 0` does
    p.score(round=0, fold=0); p.evaluate(round=0, fold=0).mean_iou
    rows = p.round_table()                  # records: pandas.DataFrame(rows)
    pred = reseg.predict_arrays(p.root / "merged/fold0", cfg.data.scenes[0].image)
    pred.classes, pred.probabilities        # (H, W) uint8, (H, W, C) float32

Every method returns the step's typed artifact (`reseg.artifacts`); a step whose
artifact is current is skipped, as in `reseg run`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from reseg import storage
from reseg.artifacts import (
    Export,
    Merged,
    Metrics,
    Model,
    Predictions,
    PseudoLabels,
    RefineTuning,
    Scores,
    Selection,
    Stats,
    TileSet,
)
from reseg.config import Config, PredictConfig, load_config
from reseg.folds import Fold
from reseg.pipeline import steps
from reseg.pipeline.predict import Scene, prediction
from reseg.pipeline.run import check_root, run_pipeline
from reseg.report import collect, round_rows

__all__ = ["Pipeline", "PredictionArrays", "load_config", "predict_arrays"]


class Pipeline:
    """A config and a pipeline root: run the pipeline or any of its steps.

    Args:
        config: a `Config`, or the path of a YAML config file.
        root: the pipeline root (created by the first step that writes).
        beam_args: extra Beam pipeline options, e.g. `["--direct_num_workers=2"]`.
    """

    def __init__(
        self, config: Config | str | Path, root: str | Path, beam_args: Sequence[str] = ()
    ):
        self.cfg = config if isinstance(config, Config) else load_config(config)
        self.root = storage.path(root)
        check_root(self.root)
        self.beam_args = tuple(beam_args)

    @property
    def context(self) -> steps.Context:
        return steps.Context(self.cfg, self.root, self.beam_args)

    def run(self, steps: Sequence[str] | None = None) -> dict[str, Any]:
        """The whole pipeline (or the named steps, in order), as `reseg run`."""
        return run_pipeline(self.cfg, self.root, self.beam_args, steps=steps)

    def folds(self, fold: str | None = None) -> list[Fold]:
        """The folds of a `--fold` value (k, `all`, `full`; default the config's rounds.folds)."""
        return self.context.folds(fold)

    def tile(self) -> TileSet:
        return steps.tile(self.context)

    def stats(self) -> Stats:
        return steps.stats(self.context)

    def train(self, round: int = 0, fold: Fold = 0) -> Model:
        return steps.train(self.context, round, fold)

    def score(self, round: int = 0, fold: Fold = 0) -> Scores:
        return steps.score(self.context, round, fold)

    def evaluate(self, round: int | str = 0, fold: int = 0) -> Metrics:
        """Metrics of round r, or of `"merged"`, on fold k's pixels."""
        return steps.evaluate(self.context, round, fold)

    def validate(self, round: int = 0, fold: int = 0) -> Metrics | None:
        """Metrics of round r on the validation fold of fold k (merge weights, stopping rounds);
        None with fewer than 3 folds."""
        return steps.validate(self.context, round, fold)

    def select(self, round: int = 0, fold: Fold = 0) -> Selection:
        return steps.select(self.context, round, fold)

    def pseudo(self, round: int = 0, fold: Fold = 0) -> PseudoLabels:
        """Round `round`'s pseudo-labels (`rounds.pseudo`): what round + 1 trains on."""
        return steps.pseudo(self.context, round, fold)

    def evaluate_target(self, round: int | str = 0, fold: Fold = 0) -> Metrics | None:
        """Metrics on the target pixels (None when the scenes have none)."""
        return steps.evaluate_target(self.context, round, fold)

    def merge(self, fold: int = 0) -> Merged:
        return steps.merge(self.context, fold)

    def tune_refine(self, fold: int = 0, source: str | None = None) -> RefineTuning:
        """CRF and SLIC tuned on the validation pixels of `fold`'s models (`reseg tune-refine`)."""
        return steps.tune_refine(self.context, fold, source)

    def export(self) -> Export:
        return steps.export(self.context)

    def predict(self) -> Predictions:
        """Every scene of the config, whole, into `<root>/predictions/` (named by scene id)."""
        return steps.predict(self.context)

    def report(self) -> Path:
        return steps.report(self.context)

    def round_table(self) -> list[dict[str, Any]]:
        """Every fold's rounds and merges as records (see `reseg.report.round_rows`)."""
        return [row for view in collect(self.root) for row in round_rows(view)]


@dataclass(frozen=True)
class PredictionArrays:
    """A whole scene's prediction in memory.

    `classes`: (H, W) uint8 class ids, 255 where the image has no data;
    `probabilities`: (H, W, C) float32 class probabilities (blended, as in the COG);
    `metrics`: whole-scene metrics when labels were given, else None.
    """

    scene: str
    classes: np.ndarray
    probabilities: np.ndarray
    metrics: dict[str, Any] | None


def predict_arrays(
    model: str | Path,
    image: str | Path,
    cfg: PredictConfig | None = None,
    labels: str | Path | None = None,
) -> PredictionArrays:
    """Predict a scene that fits in memory and return arrays (the same prediction step as
    `reseg predict`: window, blending, TTA, and the model's refinement tuning when `cfg.refine`
    asks for one; the outputs pass through a temporary folder and are read back)."""
    cfg = (cfg or PredictConfig()).model_copy(update={"probabilities": True, "preview": False})
    with tempfile.TemporaryDirectory(prefix="reseg-predict-") as tmp:
        (res,) = prediction(cfg, model=model).run([Scene(image, labels=labels)], tmp)
        with rasterio.open(res.outputs["classes"]) as src:
            classes = src.read(1)
        with rasterio.open(res.outputs["probabilities"]) as src:
            probs = np.moveaxis(src.read().astype(np.float32), 0, -1)
    return PredictionArrays(res.scene, classes, probs, res.metrics)
