"""The custom training loop, the same under every tf.distribute strategy (steps in `steps.py`).

An epoch is `steps_per_epoch` steps from an endless shuffled stream (the same
number on every worker, so collectives never wait for a worker that ran dry),
then one pass over the validation tiles. After each epoch the state (weights,
optimiser, epoch, early-stopping counters) is saved with a
`tf.train.CheckpointManager`; a rerun restores the last complete epoch and
continues after it. With `train.deterministic`, each epoch's input stream depends
on the seed and the epoch alone, so a run killed at any epoch and resumed ends
with the same weights and metrics as one never interrupted. Non-chief workers
save into a private temporary directory, as the TF multi-worker guide does, and
read the chief's checkpoints on resume.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg import quiet
from reseg.artifacts import write_json
from reseg.components.trainer.steps import Steps
from reseg.config.train import TrainConfig
from reseg.metrics import scores

log = logging.getLogger(__name__)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    """The Keras optimiser of `train.optimizer` with the schedule of `train.schedule`.

    Under `train.precision: mixed_float16` it is wrapped in a `LossScaleOptimizer`.
    Schedules run over `epochs * steps_per_epoch` steps (the optimiser's iteration count,
    which the checkpoint restores, so a resumed run continues the schedule).
    """
    import keras

    sched = keras.optimizers.schedules
    total = max(1, cfg.epochs * steps_per_epoch)
    lr: Any = cfg.learning_rate
    if cfg.schedule == "cosine":
        warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)
        lr = sched.CosineDecay(
            initial_learning_rate=0.0 if warmup else cfg.learning_rate,
            decay_steps=max(1, total - warmup),
            alpha=cfg.min_learning_rate / cfg.learning_rate,
            warmup_target=cfg.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    elif cfg.schedule == "exponential":
        lr = sched.ExponentialDecay(
            cfg.learning_rate, decay_steps=steps_per_epoch, decay_rate=cfg.decay_rate
        )
    elif cfg.schedule == "poly":
        lr = sched.PolynomialDecay(
            cfg.learning_rate, total, end_learning_rate=cfg.min_learning_rate, power=0.9
        )
    common: dict[str, Any] = {
        "learning_rate": lr,
        "weight_decay": cfg.weight_decay,
        "clipnorm": cfg.clipnorm,
    }
    if cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(**common)
    elif cfg.optimizer == "adamw":
        common["weight_decay"] = 0.004 if cfg.weight_decay is None else cfg.weight_decay
        opt = keras.optimizers.AdamW(**common)
    elif cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(momentum=cfg.momentum, nesterov=True, **common)
    else:
        opt = keras.optimizers.RMSprop(momentum=cfg.momentum, **common)
    if cfg.precision == "mixed_float16":
        # float16 gradients underflow below 6e-8: the loss is scaled up (dynamically, halved
        # on an overflow, which skips the step) and the gradients scaled back before applying
        return keras.optimizers.LossScaleOptimizer(opt)
    return opt


def miou(cm: np.ndarray) -> float | None:
    """Mean IoU over the classes present in the reference (`reseg.metrics`: a class only
    predicted is a false positive, not an IoU of 0), so every epoch of a training is compared
    over the same classes of its validation fold."""
    return scores(cm.astype(np.int64))["mean_iou"]


def seed_states(model) -> list:
    """The random-seed states of the model's layers (dropout), which `model`'s checkpoint
    dependencies leave out: `Layer.variables` minus its weights. Checkpointed with the
    weights so a resumed run draws the same dropout masks as an uninterrupted one."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def class_iou(cm: np.ndarray) -> list[float | None]:
    """IoU per class (C,), None for a class absent from the reference."""
    return [c["iou"] for c in scores(cm.astype(np.int64))["per_class"].values()]


def warmup_epochs(cfg: TrainConfig) -> int:
    """Epochs after which a class still at validation IoU 0 is reported as not learnt.

    max(2, train.warmup_epochs): the first epochs of a fresh model often predict the
    majority class everywhere; a class that stays at IoU 0 after them is a sign of
    class imbalance (see `train.class_weights` and `train.loss`).
    """
    return max(2, cfg.warmup_epochs)


NOT_LEARNT_IOU = 0.01
"""A validation IoU under this counts as 0: a class hit on a few stray pixels is not learnt."""


def classes_not_learnt(history: list[dict[str, Any]], warmup: int) -> list[int]:
    """Classes with validation pixels whose validation IoU stayed 0 in every epoch after `warmup`.

    "0" is IoU < `NOT_LEARNT_IOU`. Empty until the history is past `warmup` epochs. A
    class without validation pixels (IoU None, or 0 with no support) is never reported.
    """
    after = [h for h in history if h["epoch"] > warmup]
    if not after or any(h.get("val_iou") is None for h in after):
        return []
    support = after[-1].get("val_support") or []
    return [
        c
        for c, n in enumerate(support)
        if n > 0 and all((h["val_iou"][c] or 0.0) < NOT_LEARNT_IOU for h in after)
    ]


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    start_epoch: int
    best_epoch: int | None
    stopped_early: bool


def _progbar(cfg: TrainConfig, steps: int, chief: bool):
    if not chief:
        return None
    # Keras' bar writes to stdout
    if cfg.progress == "log" or (cfg.progress == "auto" and not quiet.progress_bars(sys.stdout)):
        return None
    import keras

    return keras.utils.Progbar(steps, stateful_metrics=["loss"], unit_name="step")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


@dataclass
class _State:
    """The loop's checkpointed state: counters in TF variables, their two checkpoint managers."""

    vars: dict[str, Any]
    ckpt: Any
    best_ckpt: Any
    manager: Any
    best_manager: Any

    def value(self, name: str) -> Any:
        return self.vars[name].numpy()


def _checkpoints(steps: Steps, write_dir: Path) -> _State:
    """The state (epoch, best score and epoch, wait, stopped) with the model, optimiser and
    seed states in a checkpoint kept in `write_dir`, the best weights in `write_dir/best`."""
    import tensorflow as tf

    state = {
        "epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "best": tf.Variable(-1.0, dtype=tf.float64, trainable=False),
        "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
        "wait": tf.Variable(0, dtype=tf.int64, trainable=False),
        "stopped": tf.Variable(False, trainable=False),
    }
    ckpt = tf.train.Checkpoint(
        model=steps.train_model,
        optimizer=steps.optimizer,
        seeds=seed_states(steps.train_model),
        **state,
    )
    best_ckpt = tf.train.Checkpoint(model=steps.model)
    manager = tf.train.CheckpointManager(ckpt, str(write_dir), max_to_keep=1)
    best_manager = tf.train.CheckpointManager(best_ckpt, str(write_dir / "best"), max_to_keep=1)
    return _State(state, ckpt, best_ckpt, manager, best_manager)


def _resume(
    st: _State,
    checkpoint_dir: Path,
    history_path: Path,
    on_resume: Callable[[list[dict[str, Any]]], None] | None,
) -> list[dict[str, Any]]:
    """Restore the last complete epoch of `checkpoint_dir`, if any; its history records."""
    import tensorflow as tf

    history: list[dict[str, Any]] = []
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest:
        st.ckpt.restore(latest).assert_existing_objects_matched()
        done = int(st.value("epoch"))
        if history_path.exists():
            history = [h for h in json.loads(history_path.read_text()) if h["epoch"] <= done]
        log.info("resumed from the checkpoint of epoch %d (%s)", done, latest)
        if on_resume is not None:
            on_resume(history)
    return history


def fit(
    steps: Steps,
    cfg: TrainConfig,
    *,
    make_train_data: Callable[[int], Any],
    val_data: Any | None,
    steps_per_epoch: int,
    checkpoint_dir: Path,
    work_dir: Path,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_resume: Callable[[list[dict[str, Any]]], None] | None = None,
    class_names: tuple[str, ...] | None = None,
) -> FitResult:
    """Train `cfg.epochs` epochs (fewer with early stopping), resuming from `checkpoint_dir`.

    Args:
        steps: the compiled steps.
        cfg: the `train` section.
        make_train_data: `seed -> tf.data.Dataset`, the endless batches of this worker.
            With `cfg.deterministic`, a new stream each epoch with seed `cfg.seed + epoch - 1`
            (a resumed run is then identical to an uninterrupted one); otherwise one stream
            for the whole run, seeded `cfg.seed + start` (a resumed run does not replay the
            first epochs' order, but draws other batches than an uninterrupted run would).
        val_data: validation `tf.data.Dataset`, or None (no validation, no early stopping).
        steps_per_epoch: training steps per epoch.
        checkpoint_dir: the chief's checkpoint directory (read by every worker on resume).
        work_dir: where this worker writes: the staging directory on the chief, a private
            temporary directory elsewhere. Holds `history.json` and, on non-chiefs, checkpoints.
        on_epoch: called on the chief with each epoch's history record, after its checkpoint.
        on_resume: called on the chief with the history restored from the checkpoint
            (records of a killed run that `on_epoch` may not have seen).
        class_names: names of the classes, for the warning about a class not learnt.
    """
    chief = steps.cluster.is_chief
    st = _checkpoints(steps, checkpoint_dir if chief else work_dir / "checkpoints")
    history_path = work_dir / "history.json"
    history = _resume(st, checkpoint_dir, history_path, on_resume if chief else None)
    start = int(st.value("epoch"))
    if bool(st.value("stopped")) or start >= cfg.epochs:
        return FitResult(
            history, start, int(st.value("best_epoch")) or None, bool(st.value("stopped"))
        )
    has_val = val_data is not None
    patience = cfg.early_stopping if has_val else None
    iterator = None
    for epoch in range(start + 1, cfg.epochs + 1):
        _freeze_for(steps, cfg, epoch, chief)
        iterator = _stream(make_train_data, cfg, epoch, iterator)
        record = _epoch(steps, cfg, epoch, iterator, steps_per_epoch, val_data)
        improved = has_val and _keep_best(st, cfg, epoch, record)
        record["best"] = improved
        history.append(record)
        stop = _checkpoint(st, epoch, patience, history, history_path if chief else None)
        if chief:
            _after_epoch(record, history, cfg, improved, has_val, on_epoch, class_names)
        if stop:
            log.info("early stopping: no validation mIoU gain for %d epochs", patience)
            break
    return _finish(steps, st, cfg, history, start, has_val, checkpoint_dir, class_names)


def _stream(
    make_train_data: Callable[[int], Any], cfg: TrainConfig, epoch: int, iterator: Any
) -> Any:
    """The iterator of the training batches of `epoch`: a new one, or `iterator` going on."""
    if iterator is None or cfg.deterministic:
        # deterministic: every epoch draws from its own stream, seeded by (seed, epoch)
        # alone, so a run resumed at any epoch draws exactly what an uninterrupted one
        # does; otherwise one endless stream, reseeded where a resumed run starts
        iterator = iter(make_train_data(cfg.seed + epoch - 1))
    return iterator


def _epoch(
    steps: Steps, cfg: TrainConfig, epoch: int, iterator, steps_per_epoch: int, val_data
) -> dict[str, Any]:
    """Train one epoch from `iterator`, validate on `val_data` (if any); its history record."""
    t0 = time.perf_counter()
    bar = _progbar(cfg, steps_per_epoch, steps.cluster.is_chief)
    if bar is not None:
        print(f"epoch {epoch}/{cfg.epochs}", file=sys.stdout, flush=True)
    loss, cm = steps.train_epoch(iterator, steps_per_epoch, bar)
    record: dict[str, Any] = {"epoch": epoch, "loss": loss, "miou": miou(cm)}
    if val_data is not None:
        val_loss, val_cm = steps.validate(val_data)
        record.update(val_loss=val_loss, val_miou=miou(val_cm), val_iou=class_iou(val_cm))
        record["val_support"] = [int(n) for n in val_cm.sum(1)]
        if val_cm.sum() == 0:
            record["val_miou"] = None
    record["lr"] = float(np.asarray(steps.optimizer.learning_rate))
    record["seconds"] = time.perf_counter() - t0
    record["tiles_per_second"] = steps_per_epoch * steps.global_batch / max(record["seconds"], 1e-9)
    return record


def _keep_best(st: _State, cfg: TrainConfig, epoch: int, record: dict[str, Any]) -> bool:
    """Early-stopping bookkeeping of an epoch with validation: a validation mIoU above the best
    by more than `train.min_delta` saves the best weights and resets the wait (True)."""
    score = record["val_miou"] if record["val_miou"] is not None else -math.inf
    improved = score > float(st.value("best")) + cfg.min_delta
    if improved:
        st.vars["best"].assign(score)
        st.vars["best_epoch"].assign(epoch)
        st.vars["wait"].assign(0)
        st.best_manager.save(checkpoint_number=epoch)
    else:
        st.vars["wait"].assign_add(1)
    return improved


def _checkpoint(
    st: _State,
    epoch: int,
    patience: int | None,
    history: list[dict[str, Any]],
    history_path: Path | None,
) -> bool:
    """Checkpoint the end of `epoch` (after writing the history to `history_path`, on the
    chief); whether early stopping ends the training now."""
    stop = patience is not None and int(st.value("wait")) >= patience
    st.vars["stopped"].assign(stop)
    st.vars["epoch"].assign(epoch)
    if history_path is not None:
        # history first: a checkpoint is never ahead of the history it belongs to
        history_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(history_path, history)
    st.manager.save(checkpoint_number=epoch)
    return stop


def _after_epoch(
    record: dict[str, Any],
    history: list[dict[str, Any]],
    cfg: TrainConfig,
    improved: bool,
    has_val: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    class_names: tuple[str, ...] | None,
) -> None:
    """The chief's epoch line, `on_epoch`, and the warning about classes not learnt."""
    epoch = record["epoch"]
    log.info(
        "epoch %d/%d: loss %s mIoU %s%s | lr %.3g | %.1f s, %.1f tiles/s",
        epoch,
        cfg.epochs,
        _fmt(record["loss"]),
        _fmt(record["miou"]),
        f" | val_loss {_fmt(record['val_loss'])} val_mIoU {_fmt(record['val_miou'])}{' *' if improved else ''}"
        if has_val
        else "",
        record["lr"],
        record["seconds"],
        record["tiles_per_second"],
    )
    if on_epoch is not None:
        on_epoch(record)
    if has_val and epoch == warmup_epochs(cfg) + 1:
        _warn_not_learnt(history, cfg, class_names)


def _finish(
    steps: Steps,
    st: _State,
    cfg: TrainConfig,
    history: list[dict[str, Any]],
    start: int,
    has_val: bool,
    checkpoint_dir: Path,
    class_names: tuple[str, ...] | None,
) -> FitResult:
    """After the last epoch: the encoder trainable again, the final warning about classes not
    learnt, the best epoch's weights restored (`train.restore_best`)."""
    import tensorflow as tf

    steps.freeze_encoder(False)  # the saved model's encoder is trainable, for later fine-tuning
    best_epoch = int(st.value("best_epoch")) or None
    chief = steps.cluster.is_chief
    if chief and has_val and history and history[-1]["epoch"] > warmup_epochs(cfg) + 1:
        _warn_not_learnt(history, cfg, class_names, final=True)
    if (
        has_val
        and cfg.restore_best
        and best_epoch is not None
        and best_epoch != int(st.value("epoch"))
    ):
        best_path = tf.train.latest_checkpoint(str(checkpoint_dir / "best"))
        if best_path:
            st.best_ckpt.restore(best_path).expect_partial()
            log.info(
                "restored the weights of epoch %d (best validation mIoU %.4f)",
                best_epoch,
                float(st.value("best")),
            )
    return FitResult(history, start, best_epoch, bool(st.value("stopped")))


def _freeze_for(steps: Steps, cfg: TrainConfig, epoch: int, chief: bool) -> None:
    """Encoder frozen in epochs 1 .. `train.freeze_encoder_epochs`, trained after them."""
    frozen = epoch <= cfg.freeze_encoder_epochs
    if chief and steps.encoder and frozen != steps.encoder_frozen:
        if frozen:
            log.info(
                "encoder frozen (batch norm in inference mode) up to epoch %d",
                cfg.freeze_encoder_epochs,
            )
        else:
            log.info("encoder trained from epoch %d on", epoch)
    steps.freeze_encoder(frozen)


def _warn_not_learnt(
    history: list[dict[str, Any]],
    cfg: TrainConfig,
    class_names: tuple[str, ...] | None,
    final: bool = False,
) -> None:
    """Log a warning naming the classes of `classes_not_learnt` and what to try."""
    missing = classes_not_learnt(history, warmup_epochs(cfg))
    if not missing:
        return
    names = ", ".join(class_names[c] if class_names else str(c) for c in missing)
    plural = len(missing) > 1
    first, last = warmup_epochs(cfg) + 1, history[-1]["epoch"]
    if final:
        what = f"kept validation IoU 0 (under {NOT_LEARNT_IOU}) from epoch {first} to {last}"
    else:
        what = f"{'have' if plural else 'has'} validation IoU 0 (under {NOT_LEARNT_IOU}) at epoch {last}, after the warm-up"
    log.warning(
        "class%s %s %s: %s not being learnt%s. Rare classes need class weights and enough "
        "epochs: try train.class_weights: inverse with train.loss: crossentropy+dice (what auto "
        "picks on imbalanced classes) and more epochs (now train.class_weights=%s, train.loss=%s)",
        "es" if plural else "",
        names,
        what,
        "they are" if plural else "it is",
        "" if final else " yet (reported again at the end if it stays so)",
        cfg.class_weights if isinstance(cfg.class_weights, str) else "[...]",
        cfg.loss,
    )
