"""`load_backend`: the in-process backend of a round's model or of merged rounds."""

from __future__ import annotations

from pathlib import Path

from reseg import layout, storage
from reseg.errors import ArtifactError
from reseg.inference.backends import Backend, KerasBackend, is_keras_model_dir
from reseg.inference.ensemble import EnsembleBackend


def load_backend(
    path: str | Path, jit_compile: bool = False, precision: str = "float32"
) -> Backend:
    """A round's model directory (`KerasBackend`) or merged rounds (`EnsembleBackend`),
    running in `precision` (`reseg.inference.precision.CHOICES`).

    Exported SavedModels are recognised by `reseg.serving.load_backend`, which falls
    back to this function for everything else.
    """
    path = storage.path(path)
    if path.is_file() and path.name in (layout.MODEL_KERAS, layout.MODEL_JSON, layout.MERGED_JSON):
        path = path.parent
    if not path.exists():
        raise ArtifactError(f"{path}: model not found")
    if (path / layout.MERGED_JSON).exists():
        return EnsembleBackend(path, jit_compile, precision)
    if is_keras_model_dir(path):
        return KerasBackend(path, jit_compile, precision)
    raise ArtifactError(
        f"{path}: not a model: expected {layout.MODEL_KERAS} + {layout.MODEL_JSON} (a round's "
        f"model), {layout.MERGED_JSON} (merged rounds) or saved_model.pb (an export)"
    )
