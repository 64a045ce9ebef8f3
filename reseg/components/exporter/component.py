"""Export a round's model or the merged rounds as a SavedModel for TF Serving.

    export(cfg.export, source, tiles, base, registry=..., tracking=run) -> <base>/<version>

The export step finds the source in the root (`reseg.pipeline.sources`: `merged`, `last`,
`r<k>` of a fold) and gives the tile set and `base` = `<root>/export/<export.model_name>`.

1. load the source with the predictor's loader (`sources.load`, called by the step);
2. build the serving graph (`reseg.serving.graph`: raw tiles in, normalisation inside,
   merged rounds combined in the graph) and save it in a hidden staging folder of
   `base`, with `assets.extra/model.json` and the warmup requests;
3. validate it in a fresh process (`reseg.serving.validate`): load with
   `tf.saved_model.load`, replay the warmup requests, compare with the float32 Keras
   models (an export in `export.precision` bfloat16 / float16: by class agreement);
   an export that fails is discarded, never published;
4. publish it as the next version, `max(versions on disk, versions in the registry) + 1`,
   by an atomic rename (TF Serving never sees a partial version);
5. log it to the MLflow run and register it (`reseg.tracking.register_export`), so
   that the registry version equals the export version.

The export's `manifest.json` records its fingerprint (the models' weights, the
combination, the export settings): exporting the same models again returns the
existing version instead of adding one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from reseg import artifacts, storage
from reseg import tracking as tracking_mod
from reseg.artifacts import ModelInfo
from reseg.components.exporter import sources
from reseg.components.exporter.warmup import sample_tiles as warmup_sample
from reseg.components.exporter.warmup import warmup_requests
from reseg.config import ExportConfig
from reseg.inference.guard import guarded
from reseg.inference.precision import resolve as resolve_precision
from reseg.serving import graph
from reseg.serving import layout as tfs
from reseg.serving.validate import validate_in_fresh_process

log = logging.getLogger(__name__)

CODE_VERSION = 1  # bump when the same models would export differently


def export(
    cfg: ExportConfig,
    src: sources.Source,
    tiles: artifacts.TileSet | None,
    base: str | Path,
    *,
    registry: bool = False,
    tracking: tracking_mod.Run | None = None,
    open_run: tracking_mod.RunOpener | None = None,
) -> artifacts.Export:
    """Export the models of `src` as the next version of `base` (`base/<version>`).

    Args:
        cfg: the `export` section.
        src: the loaded source (`sources.load` of what the export step resolved in the root).
        tiles: the tile set whose tiles make the warm-up requests and the `auto` precision's
            check; None: synthetic tiles.
        base: TF Serving's base path of the model (the export step gives
            `<root>/export/<export.model_name>`).
        registry: whether the export is registered in MLflow's model registry (the step:
            `tracking.enabled` and `export.registry`).
        tracking: the MLflow run (e.g. the pipeline's) under which the export logs a
            child run.
        open_run: with no `tracking`, opens a top-level run of its own
            (`reseg.tracking.opener`), called only when there is something to log.

    Returns:
        The published version (an existing one when the same models were exported).

    Raises:
        ArtifactError: the export failed its validation.
    """
    base = storage.path(base)
    precision = resolve_precision(cfg.precision)
    fp = artifacts.fingerprint(
        "export",
        CODE_VERSION,
        src.fingerprint,
        cfg.model_name,
        cfg.warmup_tiles,
        *([] if precision == "float32" else [precision]),
    )
    current = _current(base, fp)
    if current is not None:
        log.info("%s is up to date (same models as %s)", current, src.path)
        manifest = artifacts.read_manifest(current)
        if registry and manifest.get("registry_version") is None:
            with _run(tracking, open_run, cfg.model_name) as run:
                _track(run, cfg, current, manifest)
        return artifacts.Export.load(current)
    with _run(tracking, open_run, cfg.model_name) as run:
        final, manifest = _make(cfg, src, tiles, base, fp, run, precision, registry)
        _track(run, cfg, final, manifest)
    return artifacts.Export.load(final)


def _current(base: Path, fp: str) -> Path | None:
    """The newest published version with fingerprint `fp`, if it is the newest version."""
    found = tfs.versions(base)
    if not found:
        return None
    newest = tfs.version_dir(base, found[-1])
    return newest if artifacts.is_current(newest, fp) else None


def _run(
    given: tracking_mod.Run | None, open_run: tracking_mod.RunOpener | None, name: str
) -> AbstractContextManager[tracking_mod.Run]:
    """A child run of `given` per export (params of two exports never collide), else a run
    of its own, else none."""
    tags = {"reseg.step": "export"}
    if given is not None:
        return given.nested(f"export {name}", tags=tags)
    if open_run is not None:
        return open_run(run_name=f"export {name}", tags=tags)
    return contextlib.nullcontext(tracking_mod.NULL_RUN)


def _guard(
    cfg: ExportConfig, tiles: artifacts.TileSet | None, src: sources.Source, precision: str
) -> tuple[str, dict | None]:
    """`precision` after the guard of `auto` (`reseg.inference.guard`) on the warmup tiles,
    with `export.min_agreement`: an `auto` bfloat16 that falls short is exported in float32
    (one warning) instead of failing the validation. Other precisions are kept as they are."""
    if cfg.precision != "auto" or not hasattr(src.backend, "precision"):
        return precision, None

    def sample() -> tuple[np.ndarray, np.ndarray]:
        images, valid, _ = warmup_sample(tiles, src.info, cfg.warmup_tiles)
        return images, valid

    key = ("export", src.fingerprint, cfg.min_agreement)
    return guarded(src.backend, "auto", sample, cfg.min_agreement, key)


def _make(
    cfg: ExportConfig,
    src: sources.Source,
    tiles: artifacts.TileSet | None,
    base: Path,
    fp: str,
    run: tracking_mod.Run,
    precision: str = "float32",
    registry: bool = False,
) -> tuple[Path, dict]:
    """Stage, validate and publish one version; returns its folder and manifest.

    The graph runs the members in `precision`; the reference probabilities of the
    validation are the float32 Keras models' (`src.backend`).
    """
    storage.mkdir(base)
    # hidden: TF Serving serves numeric folders only; SavedModels are written to local files,
    # so an export into a bucket is staged in the local cache and uploaded
    if storage.is_remote(base):
        staged = storage.local_stage(base, fp)
    else:
        staged = base / f".staging-{fp[:12]}"
    shutil.rmtree(staged, ignore_errors=True)  # a crashed export's leftovers
    try:
        manifest, expected = _stage(cfg, src, tiles, staged, fp, precision)
        if cfg.validation:
            manifest["validation"] = _validate(cfg, staged, expected, manifest["precision"])
        used = tfs.used_versions(base)
        version = 1 + max(
            used[-1] if used else 0,
            tracking_mod.latest_registered_version(run, cfg.model_name) if registry else 0,
        )
        artifacts.write_json(staged / artifacts.MANIFEST, {"version": version, **manifest})
        final, got = tfs.publish_version(staged, base, version)
    except BaseException:
        artifacts.discard(staged)
        raise
    manifest["version"] = got
    if got != version:  # another export took the number meanwhile
        artifacts.write_json(final / artifacts.MANIFEST, manifest)
    log.info("exported %s (%s, fold %s) as %s", src.path, src.label, src.fold, final)
    return final, manifest


def _stage(
    cfg: ExportConfig,
    src: sources.Source,
    tiles: artifacts.TileSet | None,
    staged: Path,
    fp: str,
    precision: str,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Save the serving graph, its ModelInfo and warmup requests into `staged`; the manifest
    (no validation yet) and the expected probabilities of the warmup requests."""
    t0 = time.perf_counter()
    precision, guard = _guard(cfg, tiles, src, precision)
    members = sources.in_precision(src.members, precision)
    module = graph.build_module(members, src.info, src.method, src.weights)
    graph.save_module(module, staged)
    (staged / tfs.ASSETS_EXTRA).mkdir(exist_ok=True)
    src.info.save(staged / tfs.ASSETS_EXTRA)
    requests, expected, origin = warmup_requests(tiles, src.info, src.backend, cfg.warmup_tiles)
    tfs.write_warmup(staged, cfg.model_name, requests)
    manifest = {
        "fingerprint": fp,
        "step": "export",
        "model_name": cfg.model_name,
        "source": src.label,
        "fold": src.fold,
        "source_path": str(src.path),
        "method": src.method,
        "precision": precision,
        "precision_guard": guard,
        "weights": list(src.weights),
        "members": [m.info.architecture for m in src.members],
        "signatures": sorted(module.signatures()),
        "warmup": {
            "requests": len(requests),
            "tiles": origin,
            "shape": list(requests[0].inputs["images"].shape),
        },
        "validation": None,
        "save_s": round(time.perf_counter() - t0, 3),
        "registry_version": None,
    }
    return manifest, expected


def _validate(
    cfg: ExportConfig, staged: Path, expected: dict[str, np.ndarray], precision: str
) -> dict:
    """The staged SavedModel checked in a fresh process against `expected`
    (`reseg.serving.validate`)."""
    with tempfile.TemporaryDirectory(prefix="reseg-export-") as tmp:
        expected_npz = os.path.join(tmp, "expected.npz")
        np.savez(expected_npz, **expected)
        return validate_in_fresh_process(
            staged,
            expected_npz,
            cfg.atol,
            cfg.validate_timeout_s,
            None if precision == "float32" else cfg.min_agreement,
        )


def _track(run: tracking_mod.Run, cfg: ExportConfig, final: Path, manifest: dict) -> None:
    """Log the export to the run and register it; records the registry version in the manifest."""
    if not run.enabled:
        return
    name, version = cfg.model_name, int(final.name)
    where = f"export/{name}/{version}"
    run.set_tags({"reseg.export_version": version, "reseg.export_source": manifest["source"]})
    run.log_params(
        {
            "export": {
                **cfg.model_dump(mode="json"),
                "source_used": manifest["source"],
                "fold_used": manifest["fold"],
                "method": manifest["method"],
            }
        }
    )
    val = manifest.get("validation") or {}
    run.log_metrics(
        {
            "export_version": version,
            "export_max_abs_diff": val.get("max_abs_diff"),
            "export_class_agreement": val.get("agreement"),
            "export_validation_s": val.get("wall_s"),
            "export_save_s": manifest.get("save_s"),
        }
    )
    run.log_artifacts(final, where)
    if not cfg.registry:
        return
    base = final.parent
    registry_version = tracking_mod.register_export(
        run,
        name,
        version,
        tracking_mod.artifact_uri(run, where),
        fingerprint=manifest["fingerprint"],
        backfill={v: tfs.version_dir(base, v) for v in tfs.versions(base) if v < version},
        description=f"{manifest['source']} of fold {manifest['fold']} ({manifest['method']} of "
        f"{', '.join(manifest['members'])}); TF Serving base path {base}",
    )
    manifest = {**artifacts.read_manifest(final), "registry_version": registry_version}
    artifacts.write_json(final / artifacts.MANIFEST, manifest)


def export_info(version_dir: str | Path) -> dict:
    """The manifest of an export version with its ModelInfo (for the CLI and reports)."""

    version_dir = storage.path(version_dir)
    return {
        **artifacts.read_manifest(version_dir),
        "info": asdict(ModelInfo.load(version_dir / tfs.ASSETS_EXTRA)),
    }
