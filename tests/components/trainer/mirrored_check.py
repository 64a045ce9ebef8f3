"""Run in a fresh process: one training step on 2 mirrored replicas equals the same step on 1.

Two logical CPU devices must be configured before TensorFlow starts, hence a
separate process (`python -m tests.components.trainer.mirrored_check OUT.json`).
A U-Net without batch norm (no per-replica batch statistics), the same initial
weights and the same global batch of 4: `MirroredStrategy` splits it 2 + 2, each
replica scales its loss by the global batch, the optimiser sums the gradients.
The weights after the step must match the default strategy's.
"""

from __future__ import annotations

import json
import sys


def main(out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np

    import reseg.models as models
    from reseg.components.trainer.distribute import Cluster
    from reseg.components.trainer.loop import make_optimizer
    from reseg.components.trainer.losses import make_loss
    from reseg.components.trainer.steps import Steps
    from reseg.config.train import TrainConfig

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 16, 16, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 3, size=(4, 16, 16)).astype(np.int32))
    w = tf.constant(rng.uniform(0, 2, size=(4, 16, 16)).astype(np.float32))
    cfg = TrainConfig(batch_size=4, learning_rate=0.01, optimizer="sgd")

    def one_step(strategy, replicas: int):
        cluster = Cluster(strategy, "test", True, None, 0, 1)
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = models.build_model("unet", 3, 3, depth=2, base_filters=4, batch_norm=False)
            train_model, lw = models.training_model(model)
            opt = make_optimizer(cfg, 10)
            opt.build(train_model.trainable_variables)
        assert cluster.replicas == replicas, cluster.replicas
        steps = Steps(cluster, model, train_model, lw, opt, make_loss("crossentropy", 3), 3, 4)
        loss, cm = steps._train(steps.distribute((x, y, w)))
        return float(loss), float(np.asarray(cm).sum()), [v.numpy() for v in model.weights]

    loss1, n1, w1 = one_step(tf.distribute.get_strategy(), 1)
    loss2, n2, w2 = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), 2)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(w1, w2, strict=True))
    moved = max(
        float(np.abs(a - b).max()) for a, b in zip(w1, _initial(models, keras), strict=True)
    )
    with open(out, "w") as fh:
        json.dump(
            {"loss": [loss1, loss2], "pixels": [n1, n2], "max_weight_diff": diff, "moved": moved},
            fh,
        )


def _initial(models, keras):
    keras.utils.set_random_seed(0)
    m = models.build_model("unet", 3, 3, depth=2, base_filters=4, batch_norm=False)
    return [v.numpy() for v in m.weights]


if __name__ == "__main__":
    main(sys.argv[1])
