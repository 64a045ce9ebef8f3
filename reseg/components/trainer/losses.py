"""Per-example losses with ignore label and per-pixel weights, and the confusion matrix.

Every loss maps `label (N, H, W) int32` (255 = ignore), `probs (N, H', W', C)`
softmax scores and `weight (N, H, W) float32` (0 on ignored pixels) to one value
per example, `(N,)` float32; the training step averages them over the global batch
with `tf.nn.compute_average_loss`. With `cw` the class weights (all 1 when off):

    crossentropy: l_n = sum_p w_p cw[y_p] (-log q_p[y_p]) / (H W)
    focal:        l_n = sum_p w_p cw[y_p] (-(1 - q_p[y_p])^gamma log q_p[y_p]) / (H W)
    dice:         l_n = 1 - 2 sum_pc m_p t_pc q_pc / (sum_pc m_p t_pc + sum_pc m_p q_pc)

with t the one-hot label and m_p = 1 where w_p > 0 (Dice is a ratio over the tile,
so per-pixel weights act on it as a 0/1 mask). Cross-entropy, focal and Dice are
Keras' own (`keras.losses.sparse_categorical_crossentropy`,
`categorical_focal_crossentropy`, `dice`). Outputs smaller than the label (an
auxiliary head at lower resolution) are resized bilinearly to the label's size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from reseg.config.data import IGNORE
from reseg.errors import ConfigError

log = logging.getLogger(__name__)

LossFn = Callable[..., object]


AUTO_IMBALANCE = 0.5
"""Classes are imbalanced when the rarest class with pixels has less than this fraction
of a uniform share: f_min < AUTO_IMBALANCE / C' (C' classes with pixels)."""


def imbalanced(class_pixels: Sequence[int]) -> bool:
    """Whether the rarest class with pixels has f_min < 0.5 / C' of the labelled pixels.

    C' counts the classes with pixels; with two classes the threshold is 25%, with six 8.3%.
    """
    counts = np.asarray(class_pixels, np.float64)
    present = counts[counts > 0]
    return present.size >= 2 and present.min() / present.sum() < AUTO_IMBALANCE / present.size


def resolve_auto(
    loss: str,
    weights: str | Sequence[float],
    class_pixels: Sequence[int] | None,
    class_names: Sequence[str] | None = None,
) -> tuple[str, str | Sequence[float]]:
    """`train.loss` and `train.class_weights` with `auto` replaced by what the statistics call for.

    On imbalanced classes (`imbalanced`): crossentropy+dice and inverse-frequency weights,
    the combination that learnt the minority classes in `bench/minority.py` without
    costing the large ones (the inverse weights make a rare class's pixels count; the
    Dice term, a ratio over all pixels of the tile, keeps false positives of the rare
    class expensive). On balanced ones: crossentropy without weights (the defaults
    before `auto`). The choice is logged with the rarest class's share.
    """
    if "auto" not in (loss, weights):
        return loss, weights
    if class_pixels is None:
        raise ConfigError(
            "train: loss/class_weights auto need stats.json (run `reseg stats` first)"
        )
    counts = np.asarray(class_pixels, np.float64)
    skewed = imbalanced(counts)
    if loss == "auto":
        loss = "crossentropy+dice" if skewed else "crossentropy"
    if weights == "auto":
        weights = "inverse" if skewed else "none"
    if counts.sum() > 0:
        rare = int(np.argmin(np.where(counts > 0, counts, np.inf)))
        name = class_names[rare] if class_names else str(rare)
        log.info(
            "classes %s: the rarest, %s, has %.1f%% of the labelled pixels; loss %s, class weights %s",
            "imbalanced" if skewed else "balanced",
            name,
            100 * counts[rare] / counts.sum(),
            loss,
            weights,
        )
    return loss, weights


def class_weights(
    setting: str | Sequence[float],
    class_pixels: Sequence[int] | None,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> np.ndarray | None:
    """Per-class loss weights (C,) float32, or None when off.

    `inverse` gives w_c = 1 / f_c and `inverse_sqrt` w_c = 1 / sqrt(f_c), with f_c the
    share of labelled pixels of class c; both are scaled so that sum_c f_c w_c = 1 (the
    average pixel keeps weight 1). Classes without pixels get weight 0. `auto` is
    `inverse` on imbalanced classes and `none` on balanced ones (`resolve_auto`).
    """
    if isinstance(setting, str):
        if setting == "none":
            return None
        if class_pixels is None:
            raise ConfigError(
                f"train.class_weights: {setting} needs stats.json (run `reseg stats` first)"
            )
        counts = np.asarray(class_pixels, np.float64)
        if counts.shape != (num_classes,):
            raise ConfigError(
                f"train.class_weights: stats.json counts {counts.size} classes, the config {num_classes}"
            )
        f = counts / max(counts.sum(), 1.0)
        names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
        if setting == "auto":
            setting = str(resolve_auto("crossentropy", "auto", counts, names)[1])
            if setting == "none":
                return None
        power = 1.0 if setting == "inverse" else 0.5
        w = np.where(f > 0, 1.0 / np.power(np.maximum(f, 1e-12), power), 0.0)
        w /= max(float((f * w).sum()), 1e-12)
        log.info(
            "class weights (%s): %s",
            setting,
            ", ".join(f"{n} {v:.2f}" for n, v in zip(names, w, strict=True)),
        )
        return w.astype(np.float32)
    w = np.asarray(setting, np.float32)
    if w.shape != (num_classes,):
        raise ConfigError(
            f"train.class_weights needs one weight per class ({num_classes}), received {list(setting)}"
        )
    return w


def _fit(probs, label):
    """Resize `probs` to the label's height and width when they differ."""
    import tensorflow as tf

    if (
        probs.shape[1] is not None
        and probs.shape[1] == label.shape[1]
        and probs.shape[2] == label.shape[2]
    ):
        return probs
    size = tf.shape(label)[1:3]
    return tf.image.resize(probs, size, method="bilinear")


def make_loss(
    kind: str, num_classes: int, weights: np.ndarray | None = None, focal_gamma: float = 2.0
) -> LossFn:
    """The per-example loss `fn(label, probs, weight) -> (N,)` named by `train.loss`."""
    import keras
    import tensorflow as tf

    if kind not in ("crossentropy", "focal", "dice", "crossentropy+dice"):
        raise ConfigError(
            f"train.loss must be crossentropy, focal, dice or crossentropy+dice; received {kind!r}"
        )
    cw = None if weights is None else tf.constant(weights, tf.float32)

    def pixel_weight(y, w):
        return w if cw is None else w * tf.gather(cw, y)

    def crossentropy(y, q, w):
        ce = keras.losses.sparse_categorical_crossentropy(y, q)
        return tf.reduce_mean(pixel_weight(y, w) * ce, axis=[1, 2])

    def focal(y, q, w):
        t = tf.one_hot(y, num_classes, dtype=q.dtype)
        fl = keras.losses.categorical_focal_crossentropy(t, q, alpha=1.0, gamma=focal_gamma)
        return tf.reduce_mean(pixel_weight(y, w) * fl, axis=[1, 2])

    def dice(y, q, w):
        m = tf.cast(w > 0, q.dtype)[..., None]
        t = tf.one_hot(y, num_classes, dtype=q.dtype)
        return keras.losses.dice(t * m, q * m, axis=(1, 2, 3))

    parts = {
        "crossentropy": [crossentropy],
        "focal": [focal],
        "dice": [dice],
        "crossentropy+dice": [crossentropy, dice],
    }[kind]

    def loss(label, probs, weight):
        probs = _fit(tf.cast(probs, tf.float32), label)
        y = tf.where(label == IGNORE, 0, label)  # any valid id; these pixels have weight 0
        return tf.add_n([p(y, probs, weight) for p in parts])

    return loss


def confusion(label, probs, num_classes: int):
    """(C, C) float32 counts of pixels of true class i predicted as j; label 255 not counted.

    Computed as T^T P with T the one-hot labels (zero rows for 255) and P the one-hot
    argmax, both (N H W, C): no data-dependent shapes, so it also compiles with XLA.
    """
    import tensorflow as tf

    probs = _fit(probs, label)
    pred = tf.argmax(probs, axis=-1, output_type=tf.int32)
    t = tf.one_hot(tf.reshape(label, [-1]), num_classes, dtype=tf.float32)  # 255 -> zero row
    p = tf.one_hot(tf.reshape(pred, [-1]), num_classes, dtype=tf.float32)
    return tf.matmul(t, p, transpose_a=True)
