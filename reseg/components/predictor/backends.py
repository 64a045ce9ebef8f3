"""One interface to every kind of model the predictor can run.

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

`load_backend(path)` recognises:

1. a round's model directory: `model.keras` + `model.json`  -> `KerasBackend`
2. merged rounds: a directory with `merged.json` (format in `ensemble.py`) -> `EnsembleBackend`
3. an exported SavedModel: `export/<name>/` (highest numeric version) or
   `export/<name>/<version>/` with `saved_model.pb`; signature `serving_default`
   takes raw tiles (`images`, scene dtype; optionally `valid`) and returns
   `probabilities`; the ModelInfo is `<version>/assets.extra/model.json` -> `SavedModelBackend`
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from reseg.artifacts import ModelInfo
from reseg.components.predictor.ensemble import METHODS, combine
from reseg.errors import ArtifactError

log = logging.getLogger(__name__)

MERGED_JSON = "merged.json"


@runtime_checkable
class Backend(Protocol):
    """What the predictor needs from a model (module docstring)."""

    info: ModelInfo

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray: ...


def _check_batch(info: ModelInfo, tiles_raw: np.ndarray, valid: np.ndarray) -> None:
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
    """

    def __init__(self, model_dir: str | Path, jit_compile: bool = False):
        import keras

        import reseg.models  # noqa: F401  (registers reseg's layers for deserialisation)

        model_dir = Path(model_dir)
        self.path = model_dir
        self.info = ModelInfo.load(model_dir)
        path = model_dir / "model.keras"
        if not path.exists():
            raise ArtifactError(f"{model_dir}: no model.keras beside model.json")
        try:
            self.model = keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as e:  # a corrupt or foreign file; keras raises many kinds
            raise ArtifactError(f"{path}: cannot load the Keras model: {e}") from None
        self._max_batch = 0
        self._jit = None
        self.jit_compile = jit_compile

    @property
    def jit_compile(self) -> bool:
        return bool(self._jit)

    @jit_compile.setter
    def jit_compile(self, on: bool) -> None:
        import tensorflow as tf

        if on == self._jit:
            return
        self._jit = bool(on)
        mean = tf.constant(np.asarray(self.info.mean, np.float32))
        std = tf.constant(np.asarray(self.info.std, np.float32))
        model = self.model

        def forward(raw, valid):
            x = (tf.cast(raw, tf.float32) - mean) / std
            x = tf.where(tf.expand_dims(valid > 0, -1), x, tf.zeros_like(x))
            return tf.cast(model(x, training=False), tf.float32)

        self._fn = tf.function(forward, jit_compile=self._jit)
        self._traced: dict[np.dtype, object] = {}

    def _concrete(self, dtype: np.dtype):
        """The function traced for raw tiles of `dtype`, any batch size and tile shape."""
        fn = self._traced.get(dtype)
        if fn is None:
            import tensorflow as tf

            fn = self._fn.get_concrete_function(
                tf.TensorSpec([None, None, None, self.info.bands], tf.as_dtype(dtype)),
                tf.TensorSpec([None, None, None], tf.uint8),
            )
            self._traced[dtype] = fn
        return fn

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        _check_batch(self.info, tiles_raw, valid)
        b = tiles_raw.shape[0]
        self._max_batch = max(self._max_batch, b)
        if self._jit and b < self._max_batch:  # one compiled shape; without XLA, no wasted work
            pad = [(0, self._max_batch - b)] + [(0, 0)] * 3
            tiles_raw = np.pad(tiles_raw, pad)
            valid = np.pad(valid, pad[:3])
        out = self._concrete(tiles_raw.dtype)(tiles_raw, valid.astype(np.uint8, copy=False))
        return np.asarray(out)[:b]


class SavedModelBackend:
    """An exported SavedModel (TF Serving layout), run in-process with `tf.saved_model.load`.

    Uses the `predict_masked` signature (`images` + `valid`, see `reseg.serving.contract`)
    when the export has it, else `serving_default`; when the chosen signature takes no
    `valid`, invalid pixels are fed as the band means, which normalise to 0 as well.
    """

    def __init__(self, path: str | Path):
        import tensorflow as tf

        version_dir = find_saved_model(path)
        self.path = version_dir
        self.info = ModelInfo.load(version_dir / "assets.extra")
        try:
            self._loaded = tf.saved_model.load(str(version_dir))
            sigs = self._loaded.signatures
            self._name = "predict_masked" if "predict_masked" in sigs else "serving_default"
            self._sig = sigs[self._name]
        except (KeyError, OSError, ValueError) as e:
            raise ArtifactError(
                f"{version_dir}: cannot load a serving_default signature: {e}"
            ) from None
        inputs = self._sig.structured_input_signature[1]
        if "images" not in inputs:
            raise ArtifactError(
                f"{version_dir}: signature {self._name} has no `images` input ({sorted(inputs)})"
            )
        self._dtype = inputs["images"].dtype.as_numpy_dtype
        self._takes_valid = "valid" in inputs
        self._valid_dtype = inputs["valid"].dtype.as_numpy_dtype if self._takes_valid else None

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        _check_batch(self.info, tiles_raw, valid)
        if self._takes_valid:
            feed = {
                "images": tf.constant(tiles_raw.astype(self._dtype, copy=False)),
                "valid": tf.constant(valid.astype(self._valid_dtype, copy=False)),
            }
        else:
            fill = np.asarray(self.info.mean, np.float64).astype(self._dtype)
            feed = {
                "images": tf.constant(
                    np.where(valid[..., None] > 0, tiles_raw, fill).astype(self._dtype)
                )
            }
        out = self._sig(**feed)
        if "probabilities" not in out:
            raise ArtifactError(
                f"{self.path}: {self._name} returns {sorted(out)}, not `probabilities`"
            )
        return np.asarray(out["probabilities"], np.float32)


def find_saved_model(path: str | Path) -> Path:
    """The version directory of an export: `path` itself, or its highest numeric subfolder."""
    path = Path(path)
    if (path / "saved_model.pb").exists():
        return path
    versions = (
        sorted(
            (int(p.name), p)
            for p in path.glob("*")
            if p.name.isdigit() and (p / "saved_model.pb").exists()
        )
        if path.is_dir()
        else []
    )
    if not versions:
        raise ArtifactError(f"{path}: no saved_model.pb here or in a numeric version folder")
    return versions[-1][1]


class EnsembleBackend:
    """Merged rounds: every member predicts, `ensemble.combine` merges (format in ensemble.py)."""

    def __init__(self, merged_dir: str | Path, jit_compile: bool = False):
        merged_dir = Path(merged_dir)
        spec_path = merged_dir / MERGED_JSON
        try:
            spec = json.loads(spec_path.read_text())
            self.method = spec["method"]
            members = spec["members"]
            self.weights = [float(m.get("weight", 1.0)) for m in members]
            paths = [Path(m["model"]) for m in members]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(
                f"{spec_path}: not a valid merged.json ({type(e).__name__}: {e})"
            ) from None
        if self.method not in METHODS or not members:
            raise ArtifactError(
                f"{spec_path}: method must be one of {METHODS} with at least one member; "
                f"received method={self.method!r}, {len(members)} members"
            )
        paths = [p if p.is_absolute() else merged_dir / p for p in paths]
        self.path = merged_dir
        self.members = [load_backend(p, jit_compile=jit_compile) for p in paths]
        first = self.members[0].info
        for p, m in zip(paths[1:], self.members[1:], strict=True):
            i = m.info
            if (i.bands, i.image_dtype, i.class_names, i.band_indexes) != (
                first.bands,
                first.image_dtype,
                first.class_names,
                first.band_indexes,
            ):
                raise ArtifactError(
                    f"{spec_path}: member {p} takes {i.bands} x {i.image_dtype} bands {i.band_indexes} "
                    f"with classes {list(i.class_names)}, but {paths[0]} takes {first.bands} x "
                    f"{first.image_dtype} bands {first.band_indexes} with classes {list(first.class_names)}"
                )
        stride = math.lcm(*(m.info.output_stride for m in self.members))
        self.info = dataclasses.replace(
            first,
            output_stride=stride,
            architecture=f"{self.method}({', '.join(m.info.architecture for m in self.members)})",
        )

    @property
    def jit_compile(self) -> bool:
        return all(getattr(m, "jit_compile", False) for m in self.members)

    @jit_compile.setter
    def jit_compile(self, on: bool) -> None:
        for m in self.members:
            if hasattr(m, "jit_compile"):
                m.jit_compile = on

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        probs = [m(tiles_raw, valid) for m in self.members]
        return combine(probs, self.weights, self.method)


def load_backend(path: str | Path, jit_compile: bool = False) -> Backend:
    """The backend for a model path (module docstring lists what is recognised)."""
    path = Path(path)
    if path.is_file() and path.name in ("model.keras", "model.json", MERGED_JSON, "saved_model.pb"):
        path = path.parent
    if not path.exists():
        raise ArtifactError(f"{path}: model not found")
    if (path / MERGED_JSON).exists():
        return EnsembleBackend(path, jit_compile=jit_compile)
    if (path / "model.keras").exists() or (path / "model.json").exists():
        return KerasBackend(path, jit_compile=jit_compile)
    try:
        find_saved_model(path)
    except ArtifactError:
        raise ArtifactError(
            f"{path}: not a model: expected model.keras + model.json (a round's model), "
            f"{MERGED_JSON} (merged rounds) or saved_model.pb (an export)"
        ) from None
    return SavedModelBackend(path)
