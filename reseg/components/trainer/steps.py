"""The compiled training and validation steps, the same under every tf.distribute strategy.

Training step, per replica: forward pass in a `tf.GradientTape`, per-example
losses (`losses.py`) summed over the model's outputs with the model's loss
weights (PSPNet: main 1.0, auxiliary 0.4),

    loss = sum_n l_n / global_batch      (tf.nn.compute_average_loss)

so that the optimiser's sum of the replicas' gradients is the gradient of the
global batch mean; gradients are applied by a Keras optimiser created in
`strategy.scope()` (under mixed_float16 a `LossScaleOptimizer`: the gradient is taken
of `optimizer.scale_loss(loss)` and unscaled when applied). Losses and confusion matrices are summed with `strategy.reduce`.

Batch normalisation keeps its moving statistics per replica (Keras 3 creates
them as ordinary mirrored variables); `sync_statistics` replaces them by their
mean over all replicas after each epoch, so that validation, checkpoints and the
saved model are identical on every worker.

Fine-tuning a pretrained encoder (`train.freeze_encoder_epochs`,
`train.encoder_lr_multiplier`): `freeze_encoder(True)` makes the encoder's
layers non-trainable, which leaves their weights out of the gradient and runs
their batch norm in inference mode (Keras 3 does so for a non-trainable
BatchNormalization), and traces the steps again. A learning-rate multiplier m
scales the encoder's update after the optimiser made it,

    v <- v_before + m * (v_after - v_before)

which is the update of a learning rate m * lr for every Keras optimiser (their
updates are proportional to the learning rate, decoupled weight decay
included; their moments do not depend on it), without a second optimiser. It
runs in cross-replica context, so every replica's copy gets the same value.

Validation runs the prediction model directly (cross-replica context, no
collectives) over the whole validation set on every worker: each worker gets the
same numbers, and no worker waits for another at the end of an uneven split.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reseg.components.trainer.distribute import Cluster
from reseg.components.trainer.losses import LossFn, confusion


def _as_list(outputs: Any) -> list[Any]:
    if isinstance(outputs, dict):
        return list(outputs.values())
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


@dataclass
class Steps:
    """Training and validation steps of one model (traced once, on first use)."""

    cluster: Cluster
    model: Any  # prediction model: normalised (N, H, W, B) -> softmax (N, H, W, C)
    train_model: Any  # the model trained: the prediction model, or it plus auxiliary heads
    loss_weights: list[float]
    optimizer: Any
    loss_fn: LossFn
    num_classes: int
    global_batch: int
    jit_compile: bool = False
    encoder: list[Any] = field(default_factory=list)  # layers of the model's encoder
    encoder_lr_multiplier: float = 1.0
    _frozen: bool = field(default=False, init=False, repr=False)
    _train: Any = field(default=None, init=False, repr=False)
    _val: Any = field(default=None, init=False, repr=False)
    _sync: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._compile()

    @property
    def encoder_frozen(self) -> bool:
        """Whether the encoder's layers are frozen now."""
        return self._frozen

    def freeze_encoder(self, frozen: bool) -> None:
        """Freeze (or unfreeze) the encoder's layers and trace the steps again if that changed."""
        if frozen == self._frozen or not self.encoder:
            return
        for layer in self.encoder:
            layer.trainable = not frozen
        self._frozen = frozen
        self._compile()

    def _compile(self) -> None:
        """Trace the training, validation and statistics-sync steps (again)."""
        self._train = self._train_step()
        self._val = self._val_step()
        self._sync = self._sync_step()

    def _forward(self) -> Any:
        """Per replica: (x, y, w) -> (loss, gradients, confusion) of one batch, XLA-compiled
        with `jit_compile`."""
        import tensorflow as tf

        c, global_batch = self.num_classes, self.global_batch
        train_model, opt, loss_fn = self.train_model, self.optimizer, self.loss_fn
        weights = list(self.loss_weights)

        def forward(x, y, w):
            with tf.GradientTape() as tape:
                outs = _as_list(train_model(x, training=True))
                if len(outs) != len(weights):
                    raise ValueError(
                        f"the model has {len(outs)} outputs but {len(weights)} loss weights"
                    )
                per_example = tf.add_n(
                    [lw * loss_fn(y, o, w) for o, lw in zip(outs, weights, strict=True)]
                )
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if train_model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(train_model.losses))
                scaled = opt.scale_loss(loss)  # the loss itself unless loss scaling (float16)
            grads = tape.gradient(scaled, train_model.trainable_variables)
            return loss, grads, confusion(y, tf.cast(outs[0], tf.float32), c)

        return (
            tf.function(forward, jit_compile=True, autograph=False) if self.jit_compile else forward
        )

    def _train_step(self) -> Any:
        """The distributed training step: each replica's update, the encoder's scaled, and
        the loss and confusion summed over replicas."""
        import tensorflow as tf

        strategy, train_model, opt = self.cluster.strategy, self.train_model, self.optimizer
        fwd = self._forward()

        def replica_train(batch):
            x, y, w = batch
            loss, grads, cm = fwd(x, y, w)
            opt.apply_gradients(zip(grads, train_model.trainable_variables, strict=True))
            return loss, cm

        sum_ = tf.distribute.ReduceOp.SUM

        # no autograph: the steps have no tensor-dependent Python control flow, and
        # converting every Keras layer's call only costs tracing time
        scaled_vars = self._scaled_variables()
        m = self.encoder_lr_multiplier

        @tf.function(autograph=False)
        def train_step(batch):
            before = [tf.identity(v.value) for v in scaled_vars]
            loss, cm = strategy.run(replica_train, args=(batch,))
            for v, b in zip(scaled_vars, before, strict=True):
                v.assign(b + m * (v.value - b))
            return strategy.reduce(sum_, loss, axis=None), strategy.reduce(sum_, cm, axis=None)

        return train_step

    def _val_step(self) -> Any:
        """(x, y, w) -> (summed loss, confusion) of the prediction model on one batch."""
        import tensorflow as tf

        model, loss_fn, c = self.model, self.loss_fn, self.num_classes

        @tf.function(autograph=False)
        def val_step(x, y, w):
            probs = tf.cast(model(x, training=False), tf.float32)
            return tf.reduce_sum(loss_fn(y, probs, w)), confusion(y, probs, c)

        return val_step

    def _sync_step(self) -> Any:
        """The replicas' moving statistics replaced by their mean; None with one replica or
        no statistics."""
        import tensorflow as tf

        strategy, mean_ = self.cluster.strategy, tf.distribute.ReduceOp.MEAN
        # moving statistics (a frozen encoder's kernels are non-trainable too, and equal anyway)
        frozen = {id(v) for la in self.encoder for v in la.weights} if self._frozen else set()
        stats = [
            v
            for v in self.train_model.non_trainable_variables
            if v.dtype.startswith("float") and id(v) not in frozen
        ]

        @tf.function(autograph=False)
        def sync_statistics():
            local = strategy.run(lambda: [tf.identity(v.value) for v in stats])
            for v, x in zip(stats, local, strict=True):
                v.assign(strategy.reduce(mean_, x, axis=None))

        return sync_statistics if stats and self.cluster.replicas > 1 else None

    def _scaled_variables(self) -> list[Any]:
        """The trainable variables whose updates `encoder_lr_multiplier` scales (none at 1)."""
        if self.encoder_lr_multiplier == 1.0 or self._frozen:
            return []
        return [v for la in self.encoder for v in la.trainable_weights]

    def distribute(self, batch: tuple) -> Any:
        """This worker's batch, split into equal parts for its local replicas.

        Each worker reads its own input (`tf.data`, sharded by worker) and hands slices
        to its devices with `experimental_distribute_values_from_function`: one plain
        iterator per worker, none of the distributed-iterator machinery (whose teardown
        under MultiWorkerMirroredStrategy can block for seconds).
        """
        if self.cluster.replicas == 1:
            return batch
        local = self.cluster.local_replicas
        n = int(batch[0].shape[0]) // local

        def part(ctx):
            i = ctx.replica_id_in_sync_group % local
            return tuple(t[i * n : (i + 1) * n] for t in batch)

        return self.cluster.strategy.experimental_distribute_values_from_function(part)

    def train_epoch(
        self, iterator: Iterator, steps: int, progbar: Any = None
    ) -> tuple[float, np.ndarray]:
        """Run `steps` training steps; mean loss and the (C, C) confusion of the epoch."""
        total, cm = 0.0, np.zeros((self.num_classes, self.num_classes), np.float64)
        for i in range(steps):
            loss, step_cm = self._train(self.distribute(next(iterator)))
            total += float(loss)
            cm += step_cm.numpy()
            if progbar is not None:
                progbar.update(i + 1, values=[("loss", total / (i + 1))])
        if self._sync is not None:
            self._sync()
        return total / max(steps, 1), cm

    def validate(self, dataset) -> tuple[float, np.ndarray]:
        """One pass over the validation batches: mean loss per tile and the (C, C) confusion."""
        total, n, cm = 0.0, 0, np.zeros((self.num_classes, self.num_classes), np.float64)
        for x, y, w in dataset:
            t, step_cm = self._val(x, y, w)
            total, n = total + float(t), n + int(x.shape[0])
            cm += step_cm.numpy()
        return total / max(n, 1), cm
