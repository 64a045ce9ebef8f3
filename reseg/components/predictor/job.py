"""Prediction as a Beam job: scenes, split into blocks, predicted on the workers, assembled.

    Scenes --Blocks--> (scene, block) --Spread--> PredictBlock --ByScene--> Assemble

- `Scenes`: one element per scene, checked by the launcher first (image against the
  model, labels, distinct ids), so bad input fails before any worker starts.
- `Blocks`: the scene's blocks (`blocks.plan_blocks`: the whole scene up to
  `predict.block_size` pixels a side, else blocks of whole tiles).
- `Spread` (Reshuffle) hands the blocks of one scene to different workers.
- `PredictBlock` loads the model once per worker (`DoFn.setup`) and writes the block
  into the scene's staging folder (`blocks.predict_block`; a block staged by an
  earlier run is reused).
- `ByScene` waits for every block of a scene; `Assemble` copies them into the scene's
  outputs (`blocks.assemble`: the same files as `predict_scene`, equal to them pixel for
  pixel) and removes the staging folder.

The workers and the launcher share `out_dir`, the images and the model: a local disk, or
s3:// / gs:// URIs (the blocks are then staged in the bucket, under the output's hidden
`.<scene>.blocks-*` prefix, so workers on other machines share them; each worker copies
a model in a bucket into its local cache once, in `PredictBlock.setup`). Paths travel as
strings.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from reseg import quiet, storage
from reseg.artifacts import ModelInfo
from reseg.components.predictor.blocks import (
    assemble,
    block_name,
    plan_blocks,
    predict_block,
    remove_stale,
    staging_dir,
)
from reseg.components.predictor.labels import label_data_config
from reseg.components.predictor.reader import SceneImage, open_scene
from reseg.components.predictor.scene import (
    ScenePrediction,
    choose_precision,
    fixed_mmap_threshold,
    plan_scene,
    unique_ids,
)
from reseg.config import DataConfig, PredictConfig, VectorLabels
from reseg.errors import ConfigError
from reseg.serving import load_backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneTask:
    """One scene of the job: the image, the outputs' name, its labels, its staging folder,
    and the precision its blocks run in (decided by the launcher: `launch_precision`)."""

    image: str
    scene_id: str
    labels: str | VectorLabels | None
    staging: str
    precision: str = "float32"


class _Blocks(beam.DoFn):
    def __init__(self, info: ModelInfo, cfg: dict):
        self.info, self.cfg_dict = info, cfg

    def process(self, task: SceneTask) -> Iterator[tuple[SceneTask, Any]]:
        cfg = PredictConfig.model_validate(self.cfg_dict)
        scene = open_scene(task.image, self.info, cfg.nodata, task.scene_id)
        for block in plan_blocks(self.info, scene, cfg):
            yield task, block


class PredictBlock(beam.DoFn):
    """Predicts one block of a scene; the model is loaded once per DoFn instance (worker)."""

    def __init__(self, model: str, cfg: dict, data: dict | None):
        self.model, self.cfg_dict, self.data_dict = model, cfg, data
        self.backend = None

    def setup(self) -> None:
        fixed_mmap_threshold()
        self.backend = load_backend(self.model)
        self.cfg = PredictConfig.model_validate(self.cfg_dict)
        self.data = None if self.data_dict is None else DataConfig.model_validate(self.data_dict)

    def process(self, element: tuple[SceneTask, Any]) -> Iterator[tuple[str, str]]:
        task, block = element
        scene = open_scene(task.image, self.backend.info, self.cfg.nodata, task.scene_id)
        cfg = self.cfg.model_copy(update={"precision": task.precision})
        predict_block(self.backend, scene, cfg, block, task.staging, task.labels, self.data)
        yield task.scene_id, block_name(block)


class Assemble(beam.DoFn):
    """Every block of a scene -> the scene's outputs in `out_dir`."""

    def __init__(self, info: ModelInfo, cfg: dict, tasks: dict[str, SceneTask], out_dir: str):
        self.info, self.cfg_dict, self.tasks, self.out_dir = info, cfg, tasks, out_dir

    def process(self, element: tuple[str, Any]) -> Iterator[str]:
        scene_id, _names = element
        cfg = PredictConfig.model_validate(self.cfg_dict)
        task = self.tasks[scene_id]
        scene = open_scene(task.image, self.info, cfg.nodata, scene_id)
        blocks = plan_blocks(self.info, scene, cfg)
        _, _, stats = assemble(
            self.info, scene, cfg, blocks, task.staging, self.out_dir, task.labels is not None
        )
        log.info(
            "%s: assembled %d blocks predicted by %s (%.1f s)",
            scene_id,
            stats["blocks"],
            ", ".join(stats["workers"]),
            stats["assemble_s"],
        )
        yield scene_id


def predict_beam(
    model: str | Path,
    images: Sequence[str | Path],
    out_dir: str | Path,
    cfg: PredictConfig | None = None,
    labels: Sequence[str | Path | VectorLabels | None] | None = None,
    data: DataConfig | None = None,
    scene_ids: Sequence[str] | None = None,
    beam_args: Sequence[str] = (),
    info: ModelInfo | None = None,
) -> list[ScenePrediction]:
    """`predictor.predict` as a Beam job (module docstring); returns what it wrote per scene.

    Args:
        model: a model path (`reseg.serving.load_backend`), readable by every worker.
        images, labels, data, scene_ids: as `predict`.
        out_dir: the outputs' folder, shared by the workers.
        cfg: the predict section (`block_size` splits large scenes).
        beam_args: Beam pipeline options (runner, workers, ...).
        info: the model's ModelInfo when the caller has loaded it already.

    Returns:
        Per scene: the output paths, the metrics when labelled, and `wall_s` of the whole job.
    """
    cfg = (cfg or PredictConfig()).model_copy(update={"progress": False})
    if labels is not None and len(labels) != len(images):
        raise ConfigError(
            f"give one label source per scene: {len(images)} scenes, {len(labels)} label sources"
        )
    ids = list(scene_ids or unique_ids(images))
    if len(set(ids)) != len(ids):
        raise ConfigError(f"scene ids must be distinct: {ids}")
    t0 = time.perf_counter()
    backend = load_backend(model) if info is None or cfg.precision == "auto" else None
    info = info or backend.info  # checks the model here, before a worker starts
    out = storage.path(out_dir)
    scenes = _open_inputs(images, labels, ids, info, cfg, data)
    storage.mkdir(out)
    tasks = _tasks(out, scenes, model, backend, cfg)
    cfg_dict = cfg.model_dump(mode="json")
    data_dict = None if data is None else data.model_dump(mode="json")
    log.info("predicting %d scenes as a Beam job (%s)", len(tasks), " ".join(beam_args))
    with beam.Pipeline(options=PipelineOptions(quiet.beam_args(beam_args))) as p:
        _ = (
            p
            | "Scenes" >> beam.Create(list(tasks.values()))
            | "Blocks" >> beam.ParDo(_Blocks(info, cfg_dict))
            | "Spread" >> beam.Reshuffle()
            | "Predict" >> beam.ParDo(PredictBlock(str(model), cfg_dict, data_dict))
            | "ByScene" >> beam.GroupByKey()
            | "Assemble" >> beam.ParDo(Assemble(info, cfg_dict, tasks, str(out)))
        )
    wall = time.perf_counter() - t0
    return [_result(out, t, cfg, wall) for t in tasks.values()]


def _open_inputs(
    images: Sequence[str | Path],
    labels: Sequence[str | Path | VectorLabels | None] | None,
    ids: list[str],
    info: ModelInfo,
    cfg: PredictConfig,
    data: DataConfig | None,
) -> list[tuple[SceneImage, str | VectorLabels | None]]:
    """Every scene opened and its labels checked, before anything is written: (scene, its
    label source as a worker reads it) per image."""
    scenes = []
    for k, image in enumerate(images):
        scene = open_scene(image, info, cfg.nodata, ids[k])
        lab = labels[k] if labels else None
        if lab is not None:
            label_data_config(image, lab, info, scene.nodata, data)
            lab = lab if isinstance(lab, VectorLabels) else str(lab)
        scenes.append((scene, lab))
    return scenes


def _tasks(
    out: Path,
    scenes: list[tuple[SceneImage, str | VectorLabels | None]],
    model: str | Path,
    backend: Any,
    cfg: PredictConfig,
) -> dict[str, SceneTask]:
    """A task per scene, by id: its staging folder (stale outputs removed) and precision."""
    tasks: dict[str, SceneTask] = {}
    for scene, lab in scenes:
        staging = staging_dir(out, scene, model, cfg)
        remove_stale(out, scene.id, staging)
        precision = launch_precision(backend, scene, cfg)
        tasks[scene.id] = SceneTask(scene.path, scene.id, lab, str(staging), precision)
    return tasks


def _result(out: Path, task: SceneTask, cfg: PredictConfig, wall: float) -> ScenePrediction:
    """What the job wrote for one scene, found on disk (the workers return nothing to here)."""
    sid = task.scene_id
    names = {"classes": f"{sid}.tif", "confidence": f"{sid}.confidence.tif"}
    if cfg.probabilities:
        names["probabilities"] = f"{sid}.probs.tif"
    names["style"] = f"{sid}.qml"
    if cfg.preview:
        names["preview"] = f"{sid}.preview.png"
    if task.labels is not None:
        names["metrics"] = f"{sid}.metrics.json"
    paths = {k: out / n for k, n in names.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing or storage.path(task.staging).exists():
        raise RuntimeError(f"the Beam prediction did not finish scene {sid} (missing {missing})")
    metrics = json.loads(paths["metrics"].read_text()) if "metrics" in paths else None
    stats = {"wall_s": wall, "beam": True, "precision": task.precision}
    return ScenePrediction(sid, paths, metrics, stats)


def launch_precision(backend: Any, scene: SceneImage, cfg: PredictConfig) -> str:
    """The precision a scene's blocks run in, decided here once (`auto` resolved on the
    launcher and guarded, `scene.choose_precision`), so every worker runs the same one."""
    if backend is None or not hasattr(backend, "precision"):
        return cfg.precision
    return choose_precision(backend, scene, plan_scene(backend.info, scene, cfg), cfg)
