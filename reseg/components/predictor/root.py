"""The pipeline's `predict` step: every scene of the config, whole, with the exported model.

    predict_root(cfg, root, run=None) -> <root>/predictions/

The model is the one the `export` section names (`export.source`, `export.fold`;
default the merged rounds of the first validation fold), so the GeoTIFFs under
`predictions/` are what the SavedModel under `export/` gives. Scenes with labels
in the config also get whole-scene metrics (`<scene>.metrics.json`). Those
metrics cover every labelled pixel, including the pixels the model was trained
on (all folds but the validation fold), so they are optimistic; the held-out
figures are the rounds' `eval/metrics.json`.

The folder is built in `predictions.tmp-<fingerprint>` and published with its
`manifest.json` when every scene is written (on a root in a bucket the staging folder
is in the bucket too, each scene made in a local folder of the cache and uploaded
when complete: `SceneOutputs`); a killed run keeps the scenes it
finished there (each scene's files are themselves published atomically) and a
rerun predicts only the rest. A rerun with the same model and predict section
returns the published folder untouched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reseg import artifacts, layout, storage
from reseg.components.exporter.sources import DEFAULT, resolve
from reseg.components.predictor.blocks import EXECUTION_ONLY
from reseg.components.predictor.job import predict_beam
from reseg.components.predictor.scene import predict_scene
from reseg.components.predictor.stac import publish_stac
from reseg.components.refine_tuning import apply_tuning, find_tuning
from reseg.config import Config
from reseg.inference.precision import pinned_section
from reseg.serving import load_backend

log = logging.getLogger(__name__)


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
    pcfg, said = apply_tuning(cfg.predict, find_tuning(model_path))
    if said:
        (log.warning if pcfg.refine != cfg.predict.refine else log.info)("%s", said)
    cfg = cfg.model_copy(update={"predict": pcfg})
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
        written = _predict_scenes(cfg, model_path, st.dir, [*cfg.beam.args, *beam_args])
        st.manifest.update(
            model={"source": label, "fold": fold, "path": str(model_path)},
            scenes=written,
            metrics_note="whole-scene metrics include the model's training pixels",
        )
        publish_stac(cfg, root, st.dir, written, label, fold, run)
    if run is not None and run.enabled:
        for e in written:
            for kind in ("preview", "metrics"):
                name = e["outputs"].get(kind)
                if name:
                    run.log_artifact(final / name, "predictions")
    log.info("predictions of %d scenes (%s model, fold %s): %s", len(written), label, fold, final)
    return artifacts.Predictions.load(final)


def _predict_scenes(
    cfg: Config, model_path: Path, tmp: Path, beam_args: Sequence[str]
) -> list[dict[str, Any]]:
    """Every scene into staging directory `tmp` (scenes done before a crash are kept)."""
    backend = None
    written: list[dict[str, Any]] = []
    todo = []
    for scene in cfg.data.scenes:
        done = tmp / f".{scene.scene_id}.done.json"
        if done.exists():
            written.append(json.loads(done.read_text()))
            log.info("%s: already predicted in %s", scene.scene_id, tmp)
        else:
            todo.append(scene)
    if cfg.predict.beam and todo:
        results = predict_beam(
            model_path,
            [s.image for s in todo],
            tmp,
            cfg.predict,
            [s.vector or s.labels for s in todo],
            cfg.data,
            [s.scene_id for s in todo],
            beam_args,
        )
        for scene, res in zip(todo, results, strict=True):
            written.append(_record(tmp, scene, res))
        todo = []
    for scene in todo:
        sid = scene.scene_id
        if backend is None:
            backend = load_backend(model_path)
        res = predict_scene(
            backend,
            scene.image,
            tmp,
            cfg.predict,
            scene.vector or scene.labels,
            cfg.data,
            scene_id=sid,
        )
        written.append(_record(tmp, scene, res))
    for name in _top_names(tmp):  # scene records and stagings: never published
        if name.endswith(".done.json") or ".tmp-" in name or ".blocks-" in name:
            if name.startswith("."):
                storage.rmtree(tmp / name)
    return written


def _top_names(folder: Path) -> list[str]:
    """Names of the files and folders directly in `folder` (hidden ones too)."""
    if storage.is_remote(folder):
        return sorted({n.split("/", 1)[0] for n in storage.files_under(folder)})
    return sorted(os.listdir(folder))


def _record(tmp: Path, scene, res) -> dict[str, Any]:
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
