"""One interface to every kind of model reseg runs, and the in-process Keras backend.

A backend is a callable with a `ModelInfo`:

    backend.info: reseg.artifacts.ModelInfo
    backend(tiles_raw, valid) -> probs

    tiles_raw: (B, H, W, bands) in the scene dtype (raw band values, not normalised)
    valid:     (B, H, W) uint8, 1 where the pixel holds data
    probs:     (B, H, W, C) float32 class probabilities

H and W are multiples of `info.output_stride`. The backend normalises itself
(x' = (x - mean) / std, invalid pixels set to 0), so the sliding window, TTA,
blending and outputs are shared by every kind of model, including a remote one
(a TF Serving REST client only has to implement this call).

Backends here: `KerasBackend` (a round's model directory) and
`reseg.inference.ensemble.EnsembleBackend` (merged rounds). The exported
SavedModel and the TF Serving REST client are backends too; they live in
`reseg.serving`, the only package that knows TF Serving's layout and names, and
`reseg.serving.load_backend` recognises every kind of model path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import keras
import numpy as np
import tensorflow as tf

import reseg.models  # noqa: F401  (registers reseg's layers for deserialisation)
from reseg import layout, storage
from reseg.artifacts import ModelInfo
from reseg.errors import ArtifactError
from reseg.inference.precision import resolve as resolve_precision
from reseg.inference.precision import xla_ok
from reseg.models.inference import fold_batch_norm
from reseg.models.precision import with_precision

log = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    """What the predictor needs from a model (module docstring)."""

    info: ModelInfo

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray: ...


def check_batch(info: ModelInfo, tiles_raw: np.ndarray, valid: np.ndarray) -> None:
    """Raise ValueError unless the batch fits the model: (B, H, W, bands), strides, `valid` shape."""
    if tiles_raw.ndim != 4 or tiles_raw.shape[-1] != info.bands:
        raise ValueError(
            f"Argument `tiles_raw` must be (B, H, W, {info.bands}). Received: shape={tiles_raw.shape}"
        )
    if valid.shape != tiles_raw.shape[:3]:
        raise ValueError(
            f"Argument `valid` must be {tiles_raw.shape[:3]}. Received: shape={valid.shape}"
        )
    s = info.output_stride
    if tiles_raw.shape[1] % s or tiles_raw.shape[2] % s:
        raise ValueError(
            f"tile height and width must be multiples of the output stride {s}. "
            f"Received: {tiles_raw.shape[1]}x{tiles_raw.shape[2]}"
        )


def normalise(tiles_raw: np.ndarray, valid: np.ndarray, info: ModelInfo) -> np.ndarray:
    """x' = (x - mean) / std per band, 0 where not valid; float32 (B, H, W, bands)."""
    mean = np.asarray(info.mean, np.float32)
    std = np.asarray(info.std, np.float32)
    x = (tiles_raw.astype(np.float32) - mean) / std
    return np.where(valid[..., None].astype(bool), x, np.float32(0))


def is_keras_model_dir(path: Path) -> bool:
    """True for a round's model directory (`model.keras` and/or `model.json`)."""
    return (path / layout.MODEL_KERAS).exists() or (path / layout.MODEL_JSON).exists()


class KerasBackend:
    """A round's model directory (`model.keras` + `model.json`), run in-process.

    The normalisation runs inside a `tf.function` (XLA-compiled when `jit_compile`),
    so raw uint8/uint16 tiles travel to the device. It is traced once per input dtype,
    for any batch size and tile shape ((None, None, None, bands)), and called as that
    concrete function: tile shapes that vary (the last batch, a scene smaller than a
    tile, TTA turning a rectangular tile) never retrace it. (Tracing per shape, every
    member of merged rounds traced its own copy of the same code, which TensorFlow
    counts together and reported as "triggered tf.function retracing".) With XLA,
    batches smaller than the largest batch seen are padded to it, so XLA compiles once
    per tile shape.

    `precision` (`reseg.inference.precision.CHOICES`) is the arithmetic of the model's
    layers: float32 runs the saved model as it is; bfloat16 and float16 run a copy with
    batch norm folded into the convolutions (`fold_batch_norm`, computed in float32)
    under the matching mixed policy (`reseg.models.precision`). The normalisation, the
    softmax and everything after stay float32. `model` is always the float32 model.
    """

    def __init__(
        self, model_dir: str | Path, jit_compile: bool = False, precision: str = "float32"
    ):
        model_dir = storage.path(model_dir)
        self.path = model_dir
        self.info = ModelInfo.load(model_dir)
        path = model_dir / layout.MODEL_KERAS
        if not path.exists():
            raise ArtifactError(f"{model_dir}: no {layout.MODEL_KERAS} beside {layout.MODEL_JSON}")
        local = storage.local_copy(path)  # Keras reads local files only
        model = reseg.models.load_saved(local, path, ArtifactError)
        self.model = with_precision(model, "float32")  # a model saved under a mixed policy
        self._max_batch = 0
        self._jit = bool(jit_compile)
        self._precision: str | None = None
        self._copies: dict[str, keras.Model] = {"float32": self.model}
        self._fns: dict[tuple[str, bool], object] = {}  # switching back does not retrace
        self._traced: dict[tuple[str, bool, np.dtype], object] = {}
        self.precision = precision  # builds the model copy and the tf.function

    @property
    def jit_compile(self) -> bool:
        return bool(self._jit)

    @jit_compile.setter
    def jit_compile(self, on: bool) -> None:
        if bool(on) != self._jit:
            self._jit = bool(on)
            self._build()

    @property
    def precision(self) -> str:
        """The precision the model runs in (`auto` resolved)."""
        assert self._precision is not None
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        value = resolve_precision(value)
        if value == self._precision:
            return
        self._precision = value
        if value not in self._copies:
            self._copies[value] = with_precision(fold_batch_norm(self.model), value)
        self._build()

    def _build(self) -> None:
        jit = self._jit and xla_ok(self.precision)
        if self._jit and not jit:
            log.info(
                "%s: XLA off for %s on the CPU (oneDNN runs it faster)", self.path, self.precision
            )
        self._compiled = jit
        key = (self.precision, jit)
        if key in self._fns:
            self._fn = self._fns[key]
            return
        mean = tf.constant(np.asarray(self.info.mean, np.float32))
        std = tf.constant(np.asarray(self.info.std, np.float32))
        model = self._copies[self.precision]

        def forward(raw, valid):
            x = (tf.cast(raw, tf.float32) - mean) / std
            x = tf.where(tf.expand_dims(valid > 0, -1), x, tf.zeros_like(x))
            return tf.cast(model(x, training=False), tf.float32)

        self._fn = self._fns[key] = tf.function(forward, jit_compile=jit)

    def _concrete(self, dtype: np.dtype):
        """The function traced for raw tiles of `dtype`, any batch size and tile shape."""
        key = (self.precision, self._compiled, np.dtype(dtype))
        fn = self._traced.get(key)
        if fn is None:
            fn = self._fn.get_concrete_function(
                tf.TensorSpec([None, None, None, self.info.bands], tf.as_dtype(dtype)),
                tf.TensorSpec([None, None, None], tf.uint8),
            )
            self._traced[key] = fn
        return fn

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        check_batch(self.info, tiles_raw, valid)
        b = tiles_raw.shape[0]
        self._max_batch = max(self._max_batch, b)
        if self._compiled and b < self._max_batch:  # one compiled shape; without XLA, no waste
            pad = [(0, self._max_batch - b)] + [(0, 0)] * 3
            tiles_raw = np.pad(tiles_raw, pad)
            valid = np.pad(valid, pad[:3])
        out = self._concrete(tiles_raw.dtype)(tiles_raw, valid.astype(np.uint8, copy=False))
        return np.asarray(out)[:b]
