"""The exported SavedModel as a backend, and `load_backend` for every kind of model path.

`load_backend(path)` recognises:

1. a round's model directory: `model.keras` + `model.json`  -> `reseg.inference.KerasBackend`
2. merged rounds: a directory with `merged.json` -> `reseg.inference.EnsembleBackend`
3. an exported SavedModel: `export/<name>/` (highest numeric version) or
   `export/<name>/<version>/` with `saved_model.pb`; signature `serving_default`
   takes raw tiles (`images`, scene dtype; optionally `valid`) and returns
   `probabilities`; the ModelInfo is `<version>/assets.extra/model.json` -> `SavedModelBackend`
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from reseg import storage
from reseg.artifacts import MANIFEST, ModelInfo
from reseg.errors import ArtifactError
from reseg.inference import Backend, check_batch
from reseg.inference import load_backend as load_inprocess
from reseg.serving import contract as c
from reseg.serving import layout as tfs


class SavedModelBackend:
    """An exported SavedModel (TF Serving layout), run in-process with `tf.saved_model.load`.

    Uses the `predict_masked` signature (`images` + `valid`, see `reseg.serving.contract`)
    when the export has it, else `serving_default`; when the chosen signature takes no
    `valid`, invalid pixels are fed as the band means, which normalise to 0 as well.
    """

    def __init__(self, path: str | Path):
        version_dir = find_saved_model(path)
        self.path = version_dir
        self.info = ModelInfo.load(version_dir / tfs.ASSETS_EXTRA)
        self.exported_precision = exported_precision(version_dir)
        try:
            self._loaded = tf.saved_model.load(str(version_dir))
            sigs = self._loaded.signatures
            self._name = c.MASKED_SIGNATURE if c.MASKED_SIGNATURE in sigs else c.DEFAULT_SIGNATURE
            self._sig = sigs[self._name]
        except (KeyError, OSError, ValueError) as e:
            raise ArtifactError(
                f"{version_dir}: cannot load a {c.DEFAULT_SIGNATURE} signature: {e}"
            ) from None
        inputs = self._sig.structured_input_signature[1]
        if c.IMAGES not in inputs:
            raise ArtifactError(
                f"{version_dir}: signature {self._name} has no `{c.IMAGES}` input ({sorted(inputs)})"
            )
        self._dtype = inputs[c.IMAGES].dtype.as_numpy_dtype
        self._takes_valid = c.VALID in inputs
        self._valid_dtype = inputs[c.VALID].dtype.as_numpy_dtype if self._takes_valid else None

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        check_batch(self.info, tiles_raw, valid)
        if self._takes_valid:
            feed = {
                c.IMAGES: tf.constant(tiles_raw.astype(self._dtype, copy=False)),
                c.VALID: tf.constant(valid.astype(self._valid_dtype, copy=False)),
            }
        else:
            fill = np.asarray(self.info.mean, np.float64).astype(self._dtype)
            feed = {
                c.IMAGES: tf.constant(
                    np.where(valid[..., None] > 0, tiles_raw, fill).astype(self._dtype)
                )
            }
        out = self._sig(**feed)
        if c.PROBABILITIES not in out:
            raise ArtifactError(
                f"{self.path}: {self._name} returns {sorted(out)}, not `{c.PROBABILITIES}`"
            )
        return np.asarray(out[c.PROBABILITIES], np.float32)


def exported_precision(version_dir: Path) -> str:
    """The precision an export computes in (its manifest's `precision`; float32 before it existed)."""
    try:
        manifest = json.loads((version_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return "float32"
    return str(manifest.get("precision", "float32"))


def find_saved_model(path: str | Path) -> Path:
    """The version directory of an export: `path` itself, or its highest numeric subfolder."""
    path = storage.path(path)
    if (path / tfs.SAVED_MODEL).exists():
        return path
    versions = tfs.versions(path)
    if not versions:
        raise ArtifactError(f"{path}: no {tfs.SAVED_MODEL} here or in a numeric version folder")
    return tfs.version_dir(path, versions[-1])


def load_backend(
    path: str | Path, jit_compile: bool = False, precision: str = "float32"
) -> Backend:
    """The backend for any model path (module docstring lists what is recognised).

    `precision` applies to in-process Keras models; an export runs in the precision it
    was exported in (`SavedModelBackend.exported_precision`).
    """
    path = storage.path(path)
    if path.is_file() and path.name == tfs.SAVED_MODEL:
        path = path.parent
    if path.is_dir() and ((path / tfs.SAVED_MODEL).exists() or tfs.versions(path)):
        # TensorFlow loads local folders only: a bucket's export is read from one cached copy
        return SavedModelBackend(storage.local_folder(find_saved_model(path)))
    return load_inprocess(path, jit_compile, precision)
