"""The one prediction step: `reseg predict`, `reseg serve-predict`, the pipeline's predict step
and `reseg.predict_arrays` all predict through `prediction(...).run(...)`.

    p = prediction(pcfg, model=PATH | backend=BACKEND, tuning=None, data=None, beam_args=())
    p.cfg                      # the predict section as it runs: the refine tuning applied
    p.run(scenes, out)         # Beam or in this process; each scene's outputs into `out`

What is decided here, once, for every caller:

- the refinement's tuning (`apply_tuning`): the `tuning` given (`--tuning`), else the
  published tuning of a pipeline model (`find_tuning`); a served model has no path to find
  one by, so `serve-predict` uses `--tuning` or says that it predicts as configured;
- Beam (`predict.beam`: one job over the scenes, `predictor.job`) or in this process (one
  loaded backend for every scene);
- the scenes' output names (`unique_ids` unless given) and what follows each scene's
  outputs (`scene_written`, called once per scene whichever way it ran).

`predict_root` is the pipeline's step: every scene of the config, whole, with the exported
model, into `<root>/predictions/`. The model is the one the `export` section names
(`export.source`, `export.fold`; default the merged rounds of the first validation fold), so
the GeoTIFFs under `predictions/` are what the SavedModel under `export/` gives. Scenes with
labels in the config also get whole-scene metrics (`<scene>.metrics.json`); those cover every
labelled pixel, including the pixels the model was trained on, so they are optimistic (the
held-out figures are the rounds' `eval/metrics.json`).

The folder is built in `predictions.tmp-<fingerprint>` and published with its `manifest.json`
when every scene is written (on a root in a bucket the staging folder is in the bucket too,
each scene made in a local folder of the cache and uploaded when complete: `SceneOutputs`); a
killed run keeps the scenes it finished there (each scene's files are themselves published
atomically) and a rerun predicts only the rest. A rerun with the same model and predict
section returns the published folder untouched.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reseg import artifacts, layout, storage
from reseg.artifacts import ModelInfo
from reseg.components.predictor.blocks import EXECUTION_ONLY
from reseg.components.predictor.job import predict_beam
from reseg.components.predictor.labels import VECTOR_SUFFIXES
from reseg.components.predictor.scene import ScenePrediction, predict_scene, unique_ids
from reseg.components.predictor.stac import publish_items, publish_stac
from reseg.components.refine_tuning import apply_tuning, find_tuning
from reseg.config import Config, DataConfig, PredictConfig
from reseg.errors import ConfigError
from reseg.inference import Backend
from reseg.inference.precision import pinned_section
from reseg.pipeline.sources import DEFAULT, resolve
from reseg.serving import load_backend

log = logging.getLogger(__name__)

__all__ = [
    "VECTOR_SUFFIXES",
    "Prediction",
    "Scene",
    "ScenePrediction",
    "predict_root",
    "prediction",
    "publish_items",
    "scene_written",
    "unique_ids",
]


@dataclass(frozen=True)
class Scene:
    """A scene to predict: its image, the name of its outputs (default from the image's path,
    `unique_ids`) and its reference labels (a raster, `VectorLabels`, or None)."""

    image: Any
    id: str | None = None
    labels: Any = None


OnScene = Callable[[Scene, ScenePrediction], None]


@dataclass
class Prediction:
    """How scenes are predicted, decided once by `prediction`."""

    cfg: PredictConfig
    model: Any = None
    given_backend: Backend | None = None
    data: DataConfig | None = None
    beam_args: tuple[str, ...] = ()
    tuning_note: str = ""

    @functools.cached_property
    def backend(self) -> Backend:
        """The served backend given, else the model loaded (once)."""
        return self.given_backend or load_backend(self.model)

    @property
    def info(self) -> ModelInfo:
        return self.backend.info

    def run(
        self, scenes: Sequence[Scene], out: Any, on_scene: OnScene | None = None
    ) -> list[ScenePrediction]:
        """Every scene into folder `out` (Beam or here, as `cfg.beam` says); `on_scene(scene,
        result)` after each scene's outputs are written. Returns the results in order."""
        if not scenes:
            return []
        ids = [s.id for s in scenes]
        if any(i is None for i in ids):
            ids = unique_ids([s.image for s in scenes])
        if len(set(ids)) != len(ids):
            raise ConfigError(f"scene ids must be distinct: {ids}")
        scenes = [Scene(s.image, i, s.labels) for s, i in zip(scenes, ids, strict=True)]
        results = []
        if self.cfg.beam:
            done = predict_beam(
                self.model,
                [s.image for s in scenes],
                out,
                self.cfg,
                [s.labels for s in scenes],
                self.data,
                ids,
                self.beam_args,
                info=self.info if "backend" in self.__dict__ else None,  # loaded already
            )
            for scene, res in zip(scenes, done, strict=True):
                results.append(scene_written(scene, res, on_scene))
            return results
        for scene in scenes:
            res = predict_scene(
                self.backend, scene.image, out, self.cfg, scene.labels, self.data, scene.id
            )
            results.append(scene_written(scene, res, on_scene))
        return results


def prediction(
    pcfg: PredictConfig,
    model: Any = None,
    backend: Backend | None = None,
    tuning: Any = None,
    data: DataConfig | None = None,
    beam_args: Sequence[str] = (),
) -> Prediction:
    """How to predict with `model` (a model folder: a round's model, merged rounds, an
    export) or a `backend` already open (a served model): the predict section with its
    refinement's tuning applied (`tuning`, else the model's own), Beam or here.

    Raises:
        ConfigError: Beam options without Beam; Beam with a served model.
    """
    if (model is None) == (backend is None):
        raise ValueError("prediction: give a model path or a backend, not both")
    if beam_args and not pcfg.beam:
        raise ConfigError("Beam options after `--` need --beam (or predict.beam: true)")
    if pcfg.beam and model is None:
        raise ConfigError(
            "predict.beam needs a model folder its workers load (--model), not a served model"
        )
    note = ""
    if pcfg.refine != "none":
        if tuning is None and model is not None:
            tuning = find_tuning(model)
        tuned, note = apply_tuning(pcfg, tuning)
        (log.warning if tuned.refine != pcfg.refine else log.info)("%s", note)
        pcfg = tuned
    return Prediction(pcfg, model, backend, data, tuple(beam_args), note)


def scene_written(
    scene: Scene, result: ScenePrediction, on_scene: OnScene | None = None
) -> ScenePrediction:
    """What follows a scene whose outputs are written and published in their folder (every
    caller, Beam or not, passes here once per scene): `on_scene`, then the result."""
    log.debug("%s: outputs written: %s", result.scene, sorted(result.outputs))
    if on_scene is not None:
        on_scene(scene, result)
    return result


# --- the pipeline's predict step ------------------------------------------------------------


def _model_key(root: Path, path: Path) -> str:
    """The fingerprint of a model directory or merged rounds (their manifests), the same
    wherever the root lies."""
    parts = []
    if (path / layout.MANIFEST).exists():  # its fingerprint: the text has publish times
        parts.append(artifacts.read_manifest(path).get("fingerprint"))
    for name in (layout.MERGED_JSON, layout.MODEL_JSON):
        p = path / name
        if p.exists():
            parts.append(p.read_text())
    return artifacts.fingerprint(storage.relpath(path, root), parts)


def predict_root(
    cfg: Config, root: str | Path, run: Any = None, beam_args: Sequence[str] = ()
) -> artifacts.Predictions:
    """Predict every scene of `cfg.data` into `<root>/predictions/`, outputs named by scene id.

    With `predict.beam`, the scenes not yet predicted go through one Beam job
    (`predictor.job`) with the `beam` section's options and `beam_args`; the outputs, and
    so the fingerprint, are the same either way.
    """
    root = storage.path(root)
    label, fold, model_path = resolve(cfg, root, cfg.export.source, DEFAULT)
    args = [*cfg.beam.args, *beam_args] if cfg.predict.beam else []
    how = prediction(cfg.predict, model=model_path, data=cfg.data, beam_args=args)
    cfg = cfg.model_copy(update={"predict": how.cfg})
    fp = artifacts.fingerprint(
        "predict",
        _model_key(root, model_path),
        pinned_section(  # `auto` as it resolves here (roots of float32 users stay current)
            cfg.predict.model_dump(mode="json", exclude=EXECUTION_ONLY | {"block_size"}),
            guard_key="min_agreement",
        ),
        cfg.data.model_dump(mode="json"),
    )
    final = layout.predictions_dir(root)
    if artifacts.is_current(final, fp):
        log.info("predictions up to date: %s", final)
        return artifacts.Predictions.load(final)
    with artifacts.stage(final, fp, "predict", cfg.to_json()) as st:
        written = _predict_scenes(cfg, how, st.dir)
        st.manifest.update(
            model={"source": label, "fold": fold, "path": str(model_path)},
            scenes=written,
            metrics_note="whole-scene metrics include the model's training pixels",
        )
        export = layout.export_dir(root, cfg.export.model_name)
        publish_stac(cfg, export, st.dir, written, label, fold, run)
    if run is not None and run.enabled:
        for e in written:
            for kind in ("preview", "metrics"):
                name = e["outputs"].get(kind)
                if name:
                    run.log_artifact(final / name, "predictions")
    log.info("predictions of %d scenes (%s model, fold %s): %s", len(written), label, fold, final)
    return artifacts.Predictions.load(final)


def _predict_scenes(cfg: Config, how: Prediction, tmp: Path) -> list[dict[str, Any]]:
    """Every scene into staging directory `tmp` (scenes done before a crash are kept)."""
    written: list[dict[str, Any]] = []
    todo = []
    for scene in cfg.data.scenes:
        done = tmp / f".{scene.scene_id}.done.json"
        if done.exists():
            written.append(json.loads(done.read_text()))
            log.info("%s: already predicted in %s", scene.scene_id, tmp)
        else:
            todo.append(Scene(scene.image, scene.scene_id, scene.vector or scene.labels))
    how.run(todo, tmp, lambda scene, res: written.append(_record(tmp, scene, res)))
    _drop_records(tmp)
    return written


def _drop_records(tmp: Path) -> None:
    """Remove the scene records and stagings of `tmp`: never published."""
    for name in storage.listdir(tmp):
        if name.endswith(".done.json") or ".tmp-" in name or ".blocks-" in name:
            if name.startswith("."):
                storage.rmtree(tmp / name)


def _record(tmp: Path, scene: Scene, res: ScenePrediction) -> dict[str, Any]:
    """A predicted scene's entry in the manifest, kept in `.<scene>.done.json` until published."""
    entry = {
        "scene": res.scene,
        "image": str(scene.image),
        "outputs": {k: p.name for k, p in res.outputs.items()},
        "mean_iou": None if res.metrics is None else res.metrics["mean_iou"],
        "overall_accuracy": None if res.metrics is None else res.metrics["overall_accuracy"],
        "wall_s": res.stats.get("wall_s"),
        "precision": res.stats.get("precision"),  # what ran: `auto` resolved and guarded
    }
    artifacts.write_json(tmp / f".{res.scene}.done.json", entry)
    return entry
