"""`train`: a model of the registry trained on the tiles of a fold -> a model directory.

The model directory (`out`: the train step gives `layout.model_dir(root, round, fold)`)
holds `model.keras` (the prediction model: normalised (H, W, B) float32 in, softmax
(H, W, C) out), `model.json` (`reseg.artifacts.ModelInfo`), `history.json`, `curves.png`,
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
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg import artifacts, layout, storage
from reseg import tracking as tracking_mod
from reseg.artifacts import ModelInfo, Stats, TileSet
from reseg.components.trainer import data as data_mod
from reseg.components.trainer import inputs
from reseg.components.trainer.distribute import Cluster, get_cluster
from reseg.components.trainer.loop import FitResult, fit, make_optimizer
from reseg.components.trainer.losses import class_weights, make_loss, resolve_auto
from reseg.components.trainer.plots import plot_history
from reseg.components.trainer.steps import Steps
from reseg.config import Config
from reseg.errors import ArtifactError, ConfigError, InputError
from reseg.folds import held_folds, training_folds, validation_fold, warn_no_validation
from reseg.inference.precision import resolve_train

log = logging.getLogger(__name__)

CODE_VERSION = 2  # bump when the same inputs would train differently
MODEL_FILE = inputs.MODEL_FILE


@dataclass(frozen=True)
class _Job:
    """One training: its config, inputs and output."""

    cfg: Config
    tiles: TileSet
    stats: Stats
    files: tuple[Path, ...]
    init: Path | None
    fold: int | None
    round: int
    final: Path
    fingerprint: str

    @property
    def fold_name(self) -> str:
        return layout.fold_name(self.fold)

    @property
    def val_fold(self) -> int | None:
        """The fold that validates (early stopping, best epoch); None: no validation."""
        return validation_fold(self.fold, self.tiles.folds)

    @property
    def held(self) -> tuple[int, ...]:
        """The folds that never train: evaluation and validation."""
        return held_folds(self.fold, self.tiles.folds)


def _pinned_precision(cfg: Config) -> Config:
    """`cfg` with `train.precision: auto` replaced by the policy it resolves to here, so the
    fingerprint, the model and the manifest name what was computed (a float32 user's roots
    stay current where auto is float32)."""
    policy = resolve_train(cfg.train.precision, cfg.train.jit_compile)
    if policy == cfg.train.precision:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": policy})})


def train(
    cfg: Config,
    tiles: TileSet,
    stats: Stats,
    out: str | Path,
    *,
    fold: int | None,
    round: int = 0,
    tile_files: Sequence[str | Path] | None = None,
    init_model: str | Path | None = None,
    tracking: tracking_mod.Run | None = None,
    open_run: tracking_mod.RunOpener | None = None,
) -> artifacts.Model:
    """Train `cfg.model` on `tiles` for validation fold `fold` into model directory `out`.

    Args:
        cfg: the pipeline config (sections `model`, `train`, `data`, `tracking`).
        tiles: the tile set (validation reads it; the default training files).
        stats: the tile set's statistics (normalisation, class pixels).
        out: the model directory to publish, e.g. `rounds/r<r>/<fold>/model` of a root.
        fold: evaluation fold k: train on the pixels of the training folds
            (`reseg.folds.training_folds`), validate (early stopping, best epoch) on the cores
            of the validation fold (k + 1) mod K, never read fold k; with K < 3 no validation.
            None trains on every tile without validation.
        round: confidence round r (in the fingerprint, the run's name and the manifest).
        tile_files: TFRecord files or folders to train on, e.g. a previous round's selection
            (tiles with per-pixel weights); default the tile set. Validation always reads the
            tile set.
        init_model: a model directory or `.keras` file to fine-tune instead of building
            `cfg.model` from scratch.
        tracking: the MLflow run to log into (e.g. a nested run of the pipeline's).
        open_run: with no `tracking`, opens a run of its own (`reseg.tracking.opener`), called
            only when there is a model to train; None: nothing is logged.

    Returns:
        The published model directory (also on non-chief workers, which publish nothing).
    """
    cfg = _pinned_precision(cfg)
    _check_fold(cfg, tiles, fold)
    files = inputs.tile_files(tile_files, tiles)
    init = storage.path(init_model) if init_model is not None else None
    fp = _fingerprint(cfg, tiles, stats, files, init, fold, round)
    job = _Job(cfg, tiles, stats, files, init, fold, round, storage.path(out), fp)
    if artifacts.is_current(job.final, fp):
        log.info("%s is up to date", job.final)
        if tracking is not None:
            tracking.set_tags({"reseg.skipped": "up to date", "reseg.model_dir": job.final})
        return artifacts.Model.load(job.final)

    if init is None:
        inputs.check_model(cfg)
    cluster = get_cluster(cfg.train.distribute)
    with _run(job, cluster, tracking, open_run) as run:
        return _train(job, cluster, run)


def _check_fold(cfg: Config, tiles: TileSet, fold: int | None) -> None:
    """`fold` is a fold of the tile set, whose classes are the config's."""
    if fold is not None and not 0 <= fold < tiles.folds:
        raise ConfigError(
            f"fold must be in 0..{tiles.folds - 1} (tiling.folds), received fold={fold}"
        )
    if tiles.num_classes != cfg.data.num_classes:
        raise ArtifactError(
            f"{tiles.path}: tiles have {tiles.num_classes} classes, the config {cfg.data.num_classes}; "
            "re-run `reseg tile`"
        )


def _fingerprint(
    cfg: Config,
    tiles: TileSet,
    stats: Stats,
    files: Sequence[Path],
    init: Path | None,
    fold: int | None,
    round: int,
) -> str:
    """What the model depends on: the config sections read, the versions of the tiles, the
    statistics, the training files and the initial model, the folds and the round (no
    location: a root moved, or made by `reseg run` or step by step, stays current)."""
    return artifacts.fingerprint(
        "train",
        CODE_VERSION,
        cfg.section_json("model", "train"),
        cfg.data.model_dump(mode="json", include={"classes", "nodata", "bands", "label_values"}),
        tiles.version,
        stats.version,
        inputs.files_fingerprint(files),
        inputs.init_fingerprint(init),
        fold,
        validation_fold(fold, tiles.folds),
        round,
    )


def _run(
    job: _Job,
    cluster: Cluster,
    given: tracking_mod.Run | None,
    open_run: tracking_mod.RunOpener | None,
) -> AbstractContextManager[tracking_mod.Run]:
    """The run to log into: none on a non-chief worker, else the given one, else one opened
    (resumed after a crash: keyed by the fingerprint)."""
    if not cluster.is_chief or (given is None and open_run is None):
        return contextlib.nullcontext(tracking_mod.NULL_RUN)
    if given is not None:
        return contextlib.nullcontext(given)
    return open_run(
        run_name=f"train r{job.round} {job.fold_name}",
        tags={"reseg.step": "train", "reseg.round": job.round, "reseg.fold": job.fold_name},
        resume_key=job.fingerprint,
    )


def _training_class_pixels(job: _Job) -> list[int]:
    """Labelled core pixels per class of the training folds: what `auto` loss and class weights
    are computed from, so no evaluation or validation label shapes the loss."""
    per_fold = job.stats.class_pixels_per_fold
    if job.fold is None or not per_fold:
        return list(job.stats.class_pixels)
    folds = training_folds(job.fold, job.tiles.folds)
    return [int(v) for v in np.sum([per_fold[f] for f in folds], axis=0)]


def _input_shard(job: _Job, cluster: Cluster) -> tuple[int, int] | None:
    """This worker's share of the tiles, (workers, index); None when a share would be empty."""
    n = cluster.num_workers
    if n == 1:
        return None
    counts = [
        data_mod.count_examples(job.files, job.held, validation=False, shard=(n, i))
        for i in range(n)
    ]
    if min(counts) == 0:
        log.warning("too few training tiles to split among %d workers: each reads all of them", n)
        return None
    return n, cluster.worker_index


@dataclass(frozen=True)
class _Plan:
    """What one training reads per epoch: tile counts, steps, this worker's share."""

    n_train: int
    n_val: int
    steps_per_epoch: int
    shard: tuple[int, int] | None


def _train(job: _Job, cluster: Cluster, run: tracking_mod.Run) -> artifacts.Model:
    """Set up, fit and publish one training (on non-chief workers: fit only)."""
    t0, tc = time.time(), job.cfg.train
    _seed(job, cluster)
    loss_fn = _loss(job)
    plan = _plan(job, cluster)
    _log_start(job, cluster, run, plan)
    # Keras and TF checkpoints write local files: for a root on object storage the model is
    # staged in the local cache and uploaded when published
    checkpoints = artifacts.staging_dir(job.final, job.fingerprint, local=True) / "checkpoints"
    with _workspace(job, cluster) as st:
        steps, stride = _build(job, cluster, loss_fn, plan.steps_per_epoch)
        result = _fit(job, cluster, run, steps, plan, checkpoints, st.dir)
        digest = _save(job, cluster, steps.model, st.dir)
        if not cluster.is_chief:
            return artifacts.Model(job.final, {}, None)
        _write_model_dir(job, stride, st.dir, result.history)
        counts = {
            "train_tiles": plan.n_train,
            "val_tiles": plan.n_val,
            "steps_per_epoch": plan.steps_per_epoch,
            "epochs": len(result.history),
            "global_batch": tc.batch_size,
        }
        manifest = _manifest(
            job, cluster, result, counts, steps.loss_weights, digest, time.time() - t0, run.run_id
        )
        shutil.rmtree(checkpoints, ignore_errors=True)
        st.manifest.update(manifest)
    _log_end(job, run, manifest, result)
    return artifacts.Model.load(job.final)


def _seed(job: _Job, cluster: Cluster) -> None:
    """Seeds, op determinism (`train.deterministic`), and a batch the replicas can share."""
    import keras
    import tensorflow as tf

    tc = job.cfg.train
    keras.utils.set_random_seed(tc.seed)
    if tc.deterministic:
        tf.config.experimental.enable_op_determinism()
    if tc.batch_size % cluster.replicas:
        raise ConfigError(
            f"train.batch_size must be a multiple of the {cluster.replicas} replicas, received {tc.batch_size}"
        )


def _input_spec(job: _Job) -> data_mod.InputSpec:
    tiles = job.tiles
    return data_mod.InputSpec(
        tiles.image_dtype,
        tiles.bands,
        tiles.num_classes,
        tuple(map(float, job.stats.mean)),
        tuple(map(float, job.stats.std)),
    )


def _loss(job: _Job) -> Any:
    """The loss of `train.loss` and `train.class_weights` (`auto` resolved on the training
    folds' class pixels)."""
    tc, num_classes = job.cfg.train, job.tiles.num_classes
    names = [c.name for c in job.cfg.data.classes]
    counts = _training_class_pixels(job)
    loss_kind, weighting = resolve_auto(tc.loss, tc.class_weights, counts, names)
    return make_loss(
        loss_kind,
        num_classes,
        class_weights(weighting, counts, num_classes, names),
        tc.focal_gamma,
    )


def _plan(job: _Job, cluster: Cluster) -> _Plan:
    """Count the training and validation tiles (none is an input error); steps per epoch."""
    tc = job.cfg.train
    n_train = data_mod.count_examples(job.files, job.held, validation=False)
    if n_train == 0:
        raise InputError(
            f"no training tiles: every tile of {len(job.files)} file(s) is in the held-out "
            f"fold(s) {list(job.held)} (evaluation, validation)"
        )
    if job.fold is not None and job.val_fold is None:
        warn_no_validation(job.tiles.folds)
    n_val = (
        data_mod.count_examples(job.tiles.files, [job.val_fold], validation=True)
        if job.val_fold is not None
        else 0
    )
    if job.val_fold is not None and n_val == 0:
        raise InputError(f"validation fold {job.val_fold} has no tiles to validate on")
    steps_per_epoch = tc.steps_per_epoch or math.ceil(n_train / tc.batch_size)
    return _Plan(n_train, n_val, steps_per_epoch, _input_shard(job, cluster))


def _log_start(job: _Job, cluster: Cluster, run: tracking_mod.Run, plan: _Plan) -> None:
    """The training's first log line, its run's tags and parameters, a float16-on-CPU warning."""
    import tensorflow as tf

    cfg, tc = job.cfg, job.cfg.train
    log.info(
        "training %s on %d tiles (%d steps of %d per epoch) for %s, validating on %d tiles of %s",
        cfg.model.name if job.init is None else job.init,
        plan.n_train,
        plan.steps_per_epoch,
        tc.batch_size,
        job.fold_name,
        plan.n_val,
        layout.fold_name(job.val_fold) if job.val_fold is not None else "no fold",
    )
    run.set_tags(
        {
            "reseg.fingerprint": job.fingerprint,
            "reseg.strategy": cluster.kind,
            "reseg.replicas": cluster.replicas,
        }
    )
    run.log_params(cfg.model_dump(mode="json", exclude={"tracking"}))
    run.log_params(
        {
            "run": {
                "fold": job.fold_name,
                "validation_fold": "none" if job.val_fold is None else job.val_fold,
                "round": job.round,
                "train_tiles": plan.n_train,
                "val_tiles": plan.n_val,
                "steps_per_epoch": plan.steps_per_epoch,
                "init_model": str(job.init or "none"),
            }
        }
    )
    if tc.precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        log.warning(
            "train.precision mixed_float16 on a CPU: TF emulates float16 convolution gradients "
            "(about 100x slower than float32 measured); mixed_bfloat16 is the CPU's choice"
        )


def _build(job: _Job, cluster: Cluster, loss_fn: Any, steps_per_epoch: int) -> tuple[Steps, int]:
    """The model (built, or the initial one loaded), its optimiser and compiled steps, in the
    strategy's scope; returns the steps and the model's output stride."""
    cfg, tc, tiles = job.cfg, job.cfg.train, job.tiles
    with cluster.strategy.scope():
        model, train_model, loss_weights, stride = inputs.build(
            cfg, tiles.bands, tiles.num_classes, job.init
        )
        if tiles.tile_size % stride:
            raise ConfigError(
                f"tiling.tile_size {tiles.tile_size} is not a multiple of the output stride {stride} "
                f"of model {cfg.model.name}"
            )
        encoder = inputs.fine_tuned_encoder(cfg, model)
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
        encoder=encoder,
        encoder_lr_multiplier=tc.encoder_lr_multiplier,
    )
    return steps, stride


def _fit(
    job: _Job,
    cluster: Cluster,
    run: tracking_mod.Run,
    steps: Steps,
    plan: _Plan,
    checkpoints: Path,
    work: Path,
) -> FitResult:
    """The training loop on this worker's input, each epoch's metrics logged to `run`."""
    tc, tiles, spec = job.cfg.train, job.tiles, _input_spec(job)
    names = [c.name for c in job.cfg.data.classes]

    def train_data(seed: int):
        return data_mod.training_dataset(
            job.files,
            spec,
            held=job.held,
            batch_size=tc.batch_size // cluster.num_workers,
            shuffle_buffer=tc.shuffle_buffer,
            seed=seed,
            augment=tc.augment,
            cache=tc.cache,
            deterministic=tc.deterministic,
            shard=plan.shard,
        )

    val = None
    if job.val_fold is not None:
        val = data_mod.validation_dataset(
            tiles.files, spec, fold=job.val_fold, batch_size=tc.batch_size
        )

    def on_epoch(record: dict[str, Any]) -> None:
        metrics = {k: v for k, v in record.items() if not isinstance(v, bool | list)}
        metrics.pop("epoch")
        for name, iou in zip(names, record.get("val_iou") or [], strict=False):
            metrics[f"val_iou/{name}"] = iou
        run.log_metrics(metrics, step=record["epoch"])

    return fit(
        steps,
        tc,
        make_train_data=train_data,
        val_data=val,
        steps_per_epoch=plan.steps_per_epoch,
        checkpoint_dir=checkpoints,
        work_dir=work,
        on_epoch=on_epoch,
        on_resume=lambda history: run.log_history(
            [{k: v for k, v in h.items() if k != "best"} for h in history]
        ),
        class_names=tuple(names),
    )


def _save(job: _Job, cluster: Cluster, model: Any, work: Path) -> str:
    """Save the trained model into `work` (on every worker); its weights' digest."""
    from reseg.models.precision import with_precision  # imports keras (see `inputs`)

    digest = _weights_digest(model)
    log.info("weights digest %s (%s %d)", digest, cluster.task_type or "local", cluster.task_id)
    # every worker saves (TF multi-worker guide); the chief's is kept. Float32 whatever
    # train.precision, so scoring, prediction and export choose their own precision
    with_precision(model, "float32").save(work / MODEL_FILE)
    return digest


def _log_end(job: _Job, run: tracking_mod.Run, manifest: dict[str, Any], result: FitResult) -> None:
    """The run's summary metrics and the published model's files."""
    run.log_metrics(
        {"best_val_miou": manifest["metrics"]["val_miou"], "epochs_run": len(result.history)}
    )
    if job.cfg.tracking.log_model:
        run.log_artifacts(job.final, "model")
    run.log_artifact(job.final / "curves.png")


@contextlib.contextmanager
def _workspace(job: _Job, cluster: Cluster) -> Iterator[artifacts.Stage]:
    """The chief stages the model directory (published at the end); other workers get scratch."""
    if cluster.is_chief:
        with artifacts.stage(
            job.final, job.fingerprint, "train", job.cfg.to_json(), local=True
        ) as st:
            yield st
        return
    # local: a non-chief worker's scratch folder, removed below
    scratch = Path(tempfile.mkdtemp(prefix=f"reseg-{cluster.task_type}{cluster.task_id}-"))
    try:
        yield artifacts.Stage(job.final, scratch, job.fingerprint, "train")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _weights_digest(model) -> str:
    """Short hash of every weight of the model (equal on every worker of a synchronous run)."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def _manifest(
    job: _Job,
    cluster: Cluster,
    result: FitResult,
    counts: dict[str, int],
    loss_weights: list[float],
    digest: str,
    seconds: float,
    run_id: str | None,
) -> dict[str, Any]:
    scored = [h for h in result.history if h.get("val_miou") is not None]
    best = max(scored, key=lambda h: h["val_miou"], default=None)
    return {
        "fingerprint": job.fingerprint,
        "step": "train",
        "code_version": CODE_VERSION,
        "architecture": job.cfg.model.name if job.init is None else f"fine-tuned {job.init}",
        "fold": job.fold,
        "validation_fold": job.val_fold,
        "round": job.round,
        "precision": job.cfg.train.precision,
        "inputs": {
            "tiles": job.tiles.fingerprint,
            "stats": job.stats.fingerprint,
            "files": [str(f) for f in job.files],
            "init_model": str(job.init) if job.init else None,
        },
        "counts": counts,
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
        "seconds": float(f"{seconds:.3f}"),
        "mlflow_run_id": run_id,
    }


def _scene_nodata(cfg: Config, tiles: TileSet) -> float | None:
    """The image nodata the model was trained with: the config's, else the scenes' (when they agree)."""
    if cfg.data.nodata is not None:
        return cfg.data.nodata
    values = {s.get("nodata") for s in tiles.manifest.get("scenes", [])}
    return values.pop() if len(values) == 1 else None


def _write_model_dir(job: _Job, stride: int, work: Path, history: list[dict[str, Any]]) -> None:
    """model.json, history.json and curves.png beside the saved model."""
    cfg, init_info = job.cfg, inputs.init_info(job.init)
    info = ModelInfo(
        bands=job.tiles.bands,
        image_dtype=job.tiles.image_dtype,
        mean=tuple(float(v) for v in job.stats.mean),
        std=tuple(float(v) for v in job.stats.std),
        class_names=tuple(c.name for c in cfg.data.classes),
        class_colors=tuple(c.color for c in cfg.data.classes),
        output_stride=stride,
        tile_size=job.tiles.tile_size,
        architecture=init_info.architecture if init_info is not None else cfg.model.name,
        nodata=_scene_nodata(cfg, job.tiles),
        band_indexes=tuple(cfg.data.bands) if cfg.data.bands else None,
        label_values={f"{k:g}": v for k, v in cfg.data.value_to_class().items()},
    )
    info.save(work)
    artifacts.write_json(work / layout.HISTORY_JSON, history)
    plot_history(
        history, work / "curves.png", title=f"{info.architecture} r{job.round} {job.fold_name}"
    )
