"""What an export is made from: a round's model or the merged rounds of a fold.

The export step finds them in the root (`reseg.pipeline.sources.resolve`); `load` loads
them. The models are loaded through the predictor's `load_backend`, the same loader
`reseg predict` uses, so the export holds exactly the models (and, for merged
rounds, the method and weights of `merged.json`) that a local prediction runs;
the backend also gives the reference probabilities the export is checked against.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reseg import artifacts, layout, storage
from reseg.artifacts import ModelInfo
from reseg.errors import ArtifactError
from reseg.inference import EnsembleBackend, KerasBackend, load_backend
from reseg.serving.graph import Member

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """A loaded export source.

    Attributes:
        label: `merged` or `r<k>`.
        fold: the fold whose models these are (None: trained on every tile).
        path: the model directory or the merged rounds' directory.
        backend: the predictor backend of `path` (reference outputs).
        members: the Keras models and their ModelInfo.
        method: how members combine (`mean` for a single model).
        weights: one per member.
        info: the export's ModelInfo (merged: output stride = lcm of the members').
        fingerprint: identifies the models' weights and the combination.
    """

    label: str
    fold: int | None
    path: Path
    backend: Any
    members: tuple[Member, ...]
    method: str
    weights: tuple[float, ...]
    info: ModelInfo
    fingerprint: str


def _model_fingerprint(model_dir: Path) -> str:
    """The trainer's manifest fingerprint, else a hash of model.keras and model.json."""
    try:
        fp = artifacts.read_manifest(model_dir).get("fingerprint")
    except ArtifactError:
        fp = None
    if fp:
        return fp
    h = hashlib.sha256()
    for name in (layout.MODEL_KERAS, layout.MODEL_JSON):
        with (model_dir / name).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def load(label: str, fold: int | None, path: Path) -> Source:
    """Load the models of `path` (a model directory or merged rounds) for export."""
    backend = load_backend(path)
    if isinstance(backend, EnsembleBackend):
        bad = [m.path for m in backend.members if not isinstance(m, KerasBackend)]
        if bad:
            raise ArtifactError(f"{path}: members {bad} are not Keras model directories")
        kb = list(backend.members)
        method, weights = backend.method, tuple(backend.weights)
    elif isinstance(backend, KerasBackend):
        kb, method, weights = [backend], "mean", (1.0,)
    else:
        raise ArtifactError(f"{path}: an export is made from a model or merged rounds, not {path}")
    members = tuple(Member(b.model, b.info) for b in kb)
    fp = artifacts.fingerprint(
        method,
        list(weights),
        [(_model_fingerprint(b.path), asdict(b.info)) for b in kb],
        asdict(backend.info),
    )
    return Source(
        label, fold, storage.path(path), backend, members, method, weights, backend.info, fp
    )


def in_precision(members: tuple[Member, ...], precision: str) -> tuple[Member, ...]:
    """The members as they run in `precision`: float32 as they are; bfloat16 / float16 with
    batch norm folded (in float32) and the layers under the mixed policy, as `KerasBackend`."""
    if precision == "float32":
        return members
    from reseg.models.inference import fold_batch_norm
    from reseg.models.precision import with_precision

    return tuple(
        Member(with_precision(fold_batch_norm(m.model), precision), m.info) for m in members
    )
