"""`train`: a model of the registry trained on the tiles of a fold -> a model directory.

The model directory (`layout.model_dir(root, round, fold)`) holds `model.keras`
(the prediction model: normalised (H, W, B) float32 in, softmax (H, W, C) out),
`model.json` (`reseg.artifacts.ModelInfo`), `history.json`, `curves.png`,
`config.json` and `manifest.json`. It is built in a staging directory named
after the fingerprint of the inputs and the config, which also holds the
per-epoch checkpoints: a rerun after a crash resumes there, a rerun after
success finds the manifest current and returns at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reseg import artifacts, layout
from reseg import tracking as tracking_mod
from reseg.artifacts import ModelInfo, Stats, TileSet
from reseg.components.trainer import data as data_mod
from reseg.components.trainer.distribute import Cluster, get_cluster
from reseg.components.trainer.loop import Steps, fit, make_optimizer
from reseg.components.trainer.losses import class_weights, make_loss
from reseg.components.trainer.plots import plot_history
from reseg.config import Config
from reseg.errors import ArtifactError, ConfigError, InputError

log = logging.getLogger(__name__)

CODE_VERSION = 1  # bump when the same inputs would train differently
MODEL_FILE = "model.keras"


def _tile_files(tile_files: Sequence[str | Path] | None, tiles: TileSet) -> tuple[Path, ...]:
    """The TFRecord files to train on: given files and folders (`*.tfrecord.gz`), or the tile set's."""
    if not tile_files:
        return tiles.files
    out: list[Path] = []
    for p in map(Path, tile_files):
        if p.is_dir():
            found = sorted(p.glob("*.tfrecord.gz"))
            if not found:
                raise InputError(f"{p}: no *.tfrecord.gz files to train on")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: training TFRecords not found")
    return tuple(out)


def _files_fingerprint(files: Sequence[Path]) -> list[Any]:
    """Per folder: its manifest's fingerprint when it has one, else the files' names and sizes."""
    parts: list[Any] = []
    for parent in sorted({f.parent for f in files}):
        fp = None
        if (parent / artifacts.MANIFEST).exists():
            fp = artifacts.read_manifest(parent).get("fingerprint")
        members = sorted(f for f in files if f.parent == parent)
        parts.append(fp or [(f.name, f.stat().st_size) for f in members])
        if fp:
            parts.append([f.name for f in members])
    return parts


def _model_file(init_model: Path) -> Path:
    path = init_model / MODEL_FILE if init_model.is_dir() else init_model
    if not path.is_file():
        raise InputError(f"--init-model {init_model}: no {MODEL_FILE} there")
    return path


def _init_fingerprint(init_model: Path | None) -> Any:
    if init_model is None:
        return None
    path = _model_file(init_model)
    with contextlib.suppress(ArtifactError):
        return artifacts.read_manifest(path.parent)["fingerprint"]
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _init_info(init_model: Path | None) -> ModelInfo | None:
    """The `model.json` beside an initial model, when there is one."""
    if init_model is None or not (_model_file(init_model).parent / "model.json").is_file():
        return None
    return ModelInfo.load(_model_file(init_model).parent)


def _load_init(init_model: Path, bands: int, num_classes: int):
    import keras

    import reseg.models  # noqa: F401  (registers the custom layers of the registry's models)

    path = _model_file(init_model)
    model = keras.models.load_model(path, safe_mode=True, compile=False)
    shape_in, shape_out = model.inputs[0].shape, model.outputs[0].shape
    if shape_in[-1] != bands or shape_out[-1] != num_classes:
        raise InputError(
            f"--init-model {init_model}: takes {shape_in[-1]} bands and predicts {shape_out[-1]} classes; "
            f"these tiles have {bands} bands and {num_classes} classes"
        )
    log.info("starting from %s", path)
    return model


def _build(cfg: Config, bands: int, num_classes: int, init_model: Path | None):
    """Prediction model, model trained (with auxiliary heads), their loss weights, output stride."""
    import reseg.models as models

    if init_model is not None:
        model = _load_init(init_model, bands, num_classes)
        info = _init_info(init_model)
        stride = info.output_stride if info is not None else 1
    else:
        model = models.build_model(cfg.model.name, num_classes, bands, **cfg.model.params)
        stride = int(models.output_stride(cfg.model.name, **cfg.model.params))
    train_model, loss_weights = models.training_model(model)
    return model, train_model, [float(w) for w in loss_weights], stride


def _check_model(cfg: Config) -> None:
    """Registry name and parameters of `model`, as a ConfigError naming the key."""
    import reseg.models as models

    try:
        models.validate_params(cfg.model.name, dict(cfg.model.params))
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"model (name {cfg.model.name!r}, params {dict(cfg.model.params)}): {e}"
        ) from None


def _weights_digest(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def _fold_name(fold: int | None) -> str:
    return "all" if fold is None else f"fold{fold}"


def train(
    cfg: Config,
    root: str | Path,
    *,
    fold: int | None,
    round: int = 0,
    tile_files: Sequence[str | Path] | None = None,
    init_model: str | Path | None = None,
    tracking: tracking_mod.Run | None = None,
) -> Path:
    """Train `cfg.model` on the tiles of `root` for validation fold `fold`; returns the model dir.

    Args:
        cfg: the pipeline config (sections `model`, `train`, `data`, `tracking`).
        root: pipeline root with `tiles/` and `stats/`.
        fold: validation fold k (train on tiles of other folds, validate on fold k's cores),
            or None to train on every tile without validation.
        round: confidence round r; the model goes to `rounds/r<r>/<fold>/model`.
        tile_files: TFRecord files or folders to train on, e.g. a previous round's selection
            (tiles with per-pixel weights); default the tile set. Validation always reads the
            tile set.
        init_model: a model directory or `.keras` file to fine-tune instead of building
            `cfg.model` from scratch.
        tracking: the MLflow run to log into (e.g. a nested run of the pipeline's); None opens
            a run of its own (unless `tracking.enabled` is false).

    Returns:
        The published model directory (also on non-chief workers, which publish nothing).
    """
    root = Path(root)
    tiles = TileSet.load(layout.tiles_dir(root))
    stats = Stats.load(layout.stats_dir(root))
    if fold is not None and not 0 <= fold < tiles.folds:
        raise ConfigError(
            f"fold must be in 0..{tiles.folds - 1} (tiling.folds), received fold={fold}"
        )
    if tiles.num_classes != cfg.data.num_classes:
        raise ArtifactError(
            f"{tiles.path}: tiles have {tiles.num_classes} classes, the config {cfg.data.num_classes}; "
            "re-run `reseg tile`"
        )
    files = _tile_files(tile_files, tiles)
    init = Path(init_model) if init_model is not None else None
    if init is None:
        _check_model(cfg)
    final = layout.model_dir(root, round, fold)
    fp = artifacts.fingerprint(
        "train",
        CODE_VERSION,
        cfg.section_json("model", "train"),
        cfg.data.model_dump(mode="json", include={"classes", "nodata", "bands", "label_values"}),
        tiles.fingerprint,
        stats.fingerprint,
        _files_fingerprint(files),
        _init_fingerprint(init),
        fold,
        round,
    )
    if artifacts.is_current(final, fp):
        log.info("%s is up to date", final)
        if tracking is not None:
            tracking.set_tags({"reseg.skipped": "up to date", "reseg.model_dir": final})
        return final

    cluster = get_cluster(cfg.train.distribute)
    if not cluster.is_chief:
        run_cm: Any = contextlib.nullcontext(tracking_mod.NULL_RUN)
    elif tracking is not None:
        run_cm = contextlib.nullcontext(tracking)
    else:
        run_cm = tracking_mod.open_run(
            cfg,
            root,
            run_name=f"train r{round} {_fold_name(fold)}",
            tags={"reseg.step": "train", "reseg.round": round, "reseg.fold": _fold_name(fold)},
            resume_key=fp,
        )
    with run_cm as run:
        return _train(cfg, root, cluster, run, tiles, stats, files, init, fold, round, final, fp)


def _train(
    cfg: Config,
    root: Path,
    cluster: Cluster,
    run: tracking_mod.Run,
    tiles: TileSet,
    stats: Stats,
    files: tuple[Path, ...],
    init: Path | None,
    fold: int | None,
    round: int,
    final: Path,
    fp: str,
) -> Path:
    import keras
    import tensorflow as tf

    t0 = time.time()
    tc = cfg.train
    keras.utils.set_random_seed(tc.seed)
    if tc.deterministic:
        tf.config.experimental.enable_op_determinism()
    spec = data_mod.InputSpec(
        tiles.image_dtype,
        tiles.bands,
        tiles.num_classes,
        tuple(map(float, stats.mean)),
        tuple(map(float, stats.std)),
    )
    cw = class_weights(tc.class_weights, stats.class_pixels, tiles.num_classes)
    loss_fn = make_loss(tc.loss, tiles.num_classes, cw, tc.focal_gamma)

    n_train = data_mod.count_examples(files, fold, validation=False)
    if n_train == 0:
        raise InputError(
            f"no training tiles: every tile of {len(files)} file(s) is in validation fold {fold}"
        )
    n_val = data_mod.count_examples(tiles.files, fold, validation=True) if fold is not None else 0
    if fold is not None and n_val == 0:
        raise InputError(f"fold {fold} has no tiles to validate on")
    steps_per_epoch = tc.steps_per_epoch or math.ceil(n_train / tc.batch_size)
    if tc.batch_size % cluster.replicas:
        log.warning(
            "train.batch_size %d is not a multiple of the %d replicas",
            tc.batch_size,
            cluster.replicas,
        )
    log.info(
        "training %s on %d tiles (%d steps of %d per epoch), validating on %d tiles of %s",
        cfg.model.name if init is None else init,
        n_train,
        steps_per_epoch,
        tc.batch_size,
        n_val,
        _fold_name(fold),
    )
    run.set_tags(
        {
            "reseg.fingerprint": fp,
            "reseg.strategy": cluster.kind,
            "reseg.replicas": cluster.replicas,
        }
    )
    run.log_params(cfg.model_dump(mode="json", exclude={"tracking"}))
    run.log_params(
        {
            "run": {
                "fold": _fold_name(fold),
                "round": round,
                "train_tiles": n_train,
                "val_tiles": n_val,
                "steps_per_epoch": steps_per_epoch,
                "init_model": str(init) if init else "none",
            }
        }
    )

    staging = artifacts.staging_dir(final, fp)
    work = (
        staging
        if cluster.is_chief
        else Path(tempfile.mkdtemp(prefix=f"reseg-{cluster.task_type}{cluster.task_id}-"))
    )
    try:
        with cluster.strategy.scope():
            model, train_model, loss_weights, stride = _build(
                cfg, tiles.bands, tiles.num_classes, init
            )
            if tiles.tile_size % stride:
                raise ConfigError(
                    f"tiling.tile_size {tiles.tile_size} is not a multiple of the output stride {stride} "
                    f"of model {cfg.model.name}"
                )
            optimizer = make_optimizer(tc, steps_per_epoch)
            optimizer.build(train_model.trainable_variables)
        steps = Steps(
            cluster,
            model,
            train_model,
            loss_weights,
            optimizer,
            loss_fn,
            tiles.num_classes,
            tc.batch_size,
            tc.jit_compile,
        )

        def train_data(seed: int):
            return data_mod.training_dataset(
                files,
                spec,
                fold=fold,
                batch_size=tc.batch_size,
                shuffle_buffer=tc.shuffle_buffer,
                seed=seed,
                augment=tc.augment,
                cache=tc.cache,
                deterministic=tc.deterministic,
            )

        val = (
            data_mod.validation_dataset(tiles.files, spec, fold=fold, batch_size=tc.batch_size)
            if fold is not None
            else None
        )

        def on_epoch(record: dict[str, Any]) -> None:
            run.log_metrics(
                {k: v for k, v in record.items() if k not in ("epoch", "best")},
                step=record["epoch"],
            )

        result = fit(
            steps,
            tc,
            make_train_data=train_data,
            val_data=val,
            steps_per_epoch=steps_per_epoch,
            checkpoint_dir=staging / "checkpoints",
            work_dir=work,
            on_epoch=on_epoch,
        )
        digest = _weights_digest(model)
        log.info("weights digest %s (%s %d)", digest, cluster.task_type or "local", cluster.task_id)
        model.save(
            work / MODEL_FILE
        )  # every worker saves (TF multi-worker guide); the chief's is kept
        if not cluster.is_chief:
            return final
        _write_model_dir(cfg, tiles, stats, stride, init, work, result.history, fold, round)
        best = max(
            (h for h in result.history if h.get("val_miou") is not None),
            key=lambda h: h["val_miou"],
            default=None,
        )
        manifest = {
            "fingerprint": fp,
            "step": "train",
            "code_version": CODE_VERSION,
            "architecture": cfg.model.name if init is None else f"fine-tuned {init}",
            "fold": fold,
            "round": round,
            "inputs": {
                "tiles": tiles.fingerprint,
                "stats": stats.fingerprint,
                "files": [str(f) for f in files],
                "init_model": str(init) if init else None,
            },
            "counts": {
                "train_tiles": n_train,
                "val_tiles": n_val,
                "steps_per_epoch": steps_per_epoch,
                "epochs": len(result.history),
                "global_batch": tc.batch_size,
            },
            "resumed_from_epoch": result.start_epoch,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "metrics": {
                "val_miou": None if best is None else best["val_miou"],
                "final_loss": result.history[-1]["loss"] if result.history else None,
            },
            "loss_weights": loss_weights,
            "distribute": {
                "strategy": cluster.kind,
                "replicas": cluster.replicas,
                "workers": cluster.num_workers,
            },
            "weights_digest": digest,
            "seconds": float(f"{time.time() - t0:.3f}"),
            "mlflow_run_id": run.run_id,
        }
        shutil.rmtree(staging / "checkpoints", ignore_errors=True)
        artifacts.publish(staging, final, manifest, config_json=cfg.to_json())
        run.log_metrics(
            {"best_val_miou": manifest["metrics"]["val_miou"], "epochs_run": len(result.history)}
        )
        if cfg.tracking.log_model:
            run.log_artifacts(final, "model")
        run.log_artifact(final / "curves.png")
        return final
    finally:
        if not cluster.is_chief:
            shutil.rmtree(work, ignore_errors=True)


def _write_model_dir(
    cfg: Config,
    tiles: TileSet,
    stats: Stats,
    stride: int,
    init: Path | None,
    work: Path,
    history: list[dict[str, Any]],
    fold: int | None,
    round: int,
) -> None:
    init_info = _init_info(init)
    info = ModelInfo(
        bands=tiles.bands,
        image_dtype=tiles.image_dtype,
        mean=tuple(float(v) for v in stats.mean),
        std=tuple(float(v) for v in stats.std),
        class_names=tuple(c.name for c in cfg.data.classes),
        class_colors=tuple(c.color for c in cfg.data.classes),
        output_stride=stride,
        tile_size=tiles.tile_size,
        architecture=init_info.architecture if init_info is not None else cfg.model.name,
        nodata=cfg.data.nodata,
        band_indexes=tuple(cfg.data.bands) if cfg.data.bands else None,
        label_values={f"{k:g}": v for k, v in cfg.data.value_to_class().items()},
    )
    info.save(work)
    artifacts.write_json(work / "history.json", history)
    plot_history(
        history, work / "curves.png", title=f"{info.architecture} r{round} {_fold_name(fold)}"
    )
