"""The serving graph of an export: raw tiles in, normalisation and models inside.

`ServingModule` wraps one Keras model, or several (merged rounds), into a
`tf.Module` with the signatures of `reseg.serving.contract`. Each member
normalises the raw tile with its own statistics, exactly as the predictor's
`KerasBackend` does:

    x' = (float32(x) - mean) / std        per band, then 0 where the pixel is not valid

and the members' probabilities p_i are combined like `reseg.inference.combine`,
with the same float32 arithmetic in the same order:

- mean / weighted:  p = sum_i w_i p_i with w_i = w_i / sum_j w_j (mean: w_i = 1 / n)
- max_confidence:   per pixel the p_i of the member with the largest max_c p_i[c]
- vote:             p[c] = sum_i w_i [argmax p_i = c]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg.artifacts import ModelInfo
from reseg.serving import contract as c

log = logging.getLogger(__name__)

METHODS = ("mean", "weighted", "max_confidence", "vote")


@dataclass(frozen=True)
class Member:
    """One model of the export and the `ModelInfo` saved beside it."""

    model: Any  # keras.Model: (B, H, W, bands) float32 normalised -> (B, H, W, C) softmax
    info: ModelInfo


def _weights(n: int, weights: Sequence[float] | None, method: str) -> np.ndarray:
    """Normalised float32 weights, computed in float64 first as `ensemble.combine` does."""
    w = np.ones(n, np.float64) if weights is None or method == "mean" else np.asarray(weights)
    w = np.asarray(w, np.float64)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"Argument `weights` must be {n} non-negative numbers with a positive sum. "
            f"Received: weights={None if weights is None else list(weights)}"
        )
    return (w / w.sum()).astype(np.float32)


@dataclass(frozen=True)
class _Graph:
    """The constants the serving graph is traced with."""

    weights: np.ndarray  # normalised float32, one per member (`_weights`)
    method: str
    dtype: Any  # tf.DType of the raw images
    bands: int
    stride: int  # height and width must be multiples of it
    nodata: np.ndarray | None  # in the image dtype; None: no nodata value (or NaN)
    info_json: str  # the `model_info` signature's answer


def build_module(
    members: Sequence[Member],
    info: ModelInfo,
    method: str = "mean",
    weights: Sequence[float] | None = None,
):
    """A `tf.Module` whose `signatures()` are the serving contract.

    Args:
        members: one model, or the rounds to merge; all take `info.bands` bands.
        info: the export's ModelInfo (dtype, bands, output stride, nodata); returned
            by the `model_info` signature.
        method: how several members are combined (module docstring).
        weights: one per member (used by `weighted` and `vote`).
    """
    import tensorflow as tf

    if not members:
        raise ValueError("Argument `members` must hold at least one model. Received: []")
    if method not in METHODS:
        raise ValueError(f"Argument `method` must be one of {METHODS}. Received: method={method!r}")
    w = _weights(len(members), weights, method)
    nodata = None
    if info.nodata is not None and not np.isnan(info.nodata):
        nodata = np.asarray(info.nodata).astype(info.image_dtype)
    graph = _Graph(
        weights=w,
        method=method,
        dtype=tf.as_dtype(np.dtype(info.image_dtype)),
        bands=info.bands,
        stride=int(info.output_stride),
        nodata=nodata,
        info_json=c.info_to_json(info),
    )
    return _serving_module(tf, members, graph)


def _serving_module(tf, members: Sequence[Member], g: _Graph):
    """The `tf.Module` of `build_module`: per member normalise, predict; combine; signatures."""
    images_spec = tf.TensorSpec([None, None, None, g.bands], g.dtype, name=c.IMAGES)
    valid_spec = tf.TensorSpec([None, None, None], tf.uint8, name=c.VALID)

    class ServingModule(tf.Module):
        def __init__(self):
            super().__init__(name="reseg_serving")
            self.models = [m.model for m in members]
            self.means = [tf.constant(np.asarray(m.info.mean, np.float32)) for m in members]
            self.stds = [tf.constant(np.asarray(m.info.std, np.float32)) for m in members]

        def _probs(self, images, valid):
            with tf.control_dependencies(_stride_checks(tf, images, g.stride)):
                raw = tf.cast(images, tf.float32)
            mask = tf.expand_dims(valid > 0, -1)
            probs = []
            for model, mean, std in zip(self.models, self.means, self.stds, strict=True):
                x = (raw - mean) / std
                x = tf.where(mask, x, tf.zeros_like(x))
                probs.append(tf.cast(model(x, training=False), tf.float32))
            return _combine(tf, probs, g.weights, g.method)

        @tf.function(input_signature=[images_spec])
        def serve(self, images):
            images, valid = _raw_validity(tf, images, g.dtype, g.nodata)
            p = self._probs(images, tf.cast(valid, tf.uint8))
            classes = tf.cast(tf.argmax(p, axis=-1), tf.uint8)
            return {c.PROBABILITIES: p, c.CLASSES: classes}

        @tf.function(input_signature=[images_spec, valid_spec])
        def serve_masked(self, images, valid):
            return {c.PROBABILITIES: self._probs(images, valid)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name=c.INFO_REQUEST)])
        def model_info(self, request):
            del request  # TF Serving needs an input; the answer does not depend on it
            return {c.INFO_OUTPUT: tf.constant(g.info_json)}

        def signatures(self) -> dict[str, Any]:
            return {
                c.DEFAULT_SIGNATURE: self.serve.get_concrete_function(),
                c.MASKED_SIGNATURE: self.serve_masked.get_concrete_function(),
                c.INFO_SIGNATURE: self.model_info.get_concrete_function(),
            }

    return ServingModule()


def _stride_checks(tf, images, stride: int) -> list:
    """Assertions that the images' height and width are multiples of `stride`."""
    shape = tf.shape(images)
    msg = f"image height and width must be multiples of the output stride {stride}"
    return [
        tf.debugging.assert_equal(shape[1] % stride, 0, message=msg),
        tf.debugging.assert_equal(shape[2] % stride, 0, message=msg),
    ]


def _raw_validity(tf, images, dtype, nodata):
    """Raw tiles (B, H, W, bands) -> (images with NaN set to 0, valid (B, H, W) bool):
    a pixel is valid unless a band is NaN (float dtypes) or equals `nodata`."""
    valid = tf.ones(tf.shape(images)[:3], tf.bool)
    if dtype.is_floating:
        nan = tf.math.is_nan(images)
        valid = tf.logical_and(valid, tf.logical_not(tf.reduce_any(nan, axis=-1)))
        images = tf.where(nan, tf.zeros_like(images), images)
    if nodata is not None:
        hit = tf.reduce_any(tf.equal(images, tf.constant(nodata, dtype)), axis=-1)
        valid = tf.logical_and(valid, tf.logical_not(hit))
    return images, valid


def _combine(tf, probs: list, w: np.ndarray, method: str):
    """The members' probabilities combined (module docstring), float32 (B, H, W, C)."""
    if len(probs) == 1 and method in ("mean", "weighted", "max_confidence"):
        return probs[0]
    if method in ("mean", "weighted"):
        out = tf.zeros_like(probs[0])
        for wi, p in zip(w, probs, strict=True):
            out = out + tf.constant(wi) * p
        return out
    if method == "max_confidence":
        stacked = tf.stack(probs)  # (n, B, H, W, C)
        best = tf.argmax(tf.reduce_max(stacked, axis=-1), axis=0, output_type=tf.int32)
        return tf.reduce_sum(
            stacked * tf.expand_dims(tf.one_hot(best, len(probs), axis=0, dtype=tf.float32), -1),
            axis=0,
        )
    num_classes = probs[0].shape[-1] or tf.shape(probs[0])[-1]
    out = tf.zeros_like(probs[0])
    for wi, p in zip(w, probs, strict=True):
        votes = tf.one_hot(tf.argmax(p, axis=-1), num_classes, dtype=tf.float32)
        out = out + tf.constant(wi) * votes
    return out


def save_module(module, path: str | Path) -> Path:
    """Write the SavedModel (saved_model.pb, variables/) with the contract's signatures."""
    import tensorflow as tf

    path = Path(path)
    tf.saved_model.save(module, str(path), signatures=module.signatures())
    return path
