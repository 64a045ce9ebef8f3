"""What an export is made from: a round's model or the merged rounds of a fold.

The models are loaded through the predictor's `load_backend`, the same loader
`reseg predict` uses, so the export holds exactly the models (and, for merged
rounds, the method and weights of `merged.json`) that a local prediction runs;
the backend also gives the reference probabilities the export is checked against.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reseg import artifacts, layout, storage
from reseg.artifacts import ModelInfo
from reseg.config import Config
from reseg.errors import ArtifactError, ConfigError
from reseg.inference import EnsembleBackend, KerasBackend, load_backend
from reseg.serving.graph import Member

log = logging.getLogger(__name__)

DEFAULT = "default"
"""`resolve`'s fold for `export.fold`, else the first of `rounds.folds`."""


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


def _default_fold(cfg: Config, root: Path) -> int | None:
    if cfg.export.fold is not None:
        return None if cfg.export.fold == layout.FULL else int(cfg.export.fold)
    try:
        k = artifacts.TileSet.load(layout.tiles_dir(root)).folds
    except ArtifactError:
        raise ConfigError(
            f"{root}: no tiles manifest to find the folds from; name the fold (--fold k|{layout.FULL})"
        ) from None
    return cfg.rounds.fold_list(k)[0]


def resolve(
    cfg: Config, root: str | Path, source: str | int, fold: int | str | None
) -> tuple[str, int | None, Path]:
    """(label, fold, directory) of `source` = `merged` | `last` | `r<k>` | k for a fold.

    `fold`: k, None (the models trained on every tile, `full`) or `DEFAULT`
    (`export.fold`, else the first of `rounds.folds`). A source is found by its manifest,
    which is written last: a model or merge still being published (its files partly
    uploaded to a bucket) is not one; `last` is the last round published.
    """
    root = storage.path(root)
    k = _default_fold(cfg, root) if fold == DEFAULT else fold
    if isinstance(k, str):
        raise ConfigError(f"export fold must be a fold number or {layout.FULL!r}; received {k!r}")
    text = f"r{source}" if isinstance(source, int) else str(source)
    if text == "merged":
        d = layout.merged_dir(root, k)
        if not _published(d):
            raise ArtifactError(f"{d}: no published merge; merge the rounds first (reseg merge)")
        return "merged", k, d
    if text == "last":
        r = 0
        while _published(layout.model_dir(root, r + 1, k)):
            r += 1
        text = f"r{r}"
    m = re.fullmatch(r"r(\d+)", text)
    if m is None:
        raise ConfigError(
            f"export source must be `merged`, `last`, `r<k>` or k; received {source!r}"
        )
    d = layout.model_dir(root, int(m.group(1)), k)
    if not _published(d):
        raise ArtifactError(f"{d}: no published model; train round {m.group(1)} first")
    return text, k, d


def _published(d: Path) -> bool:
    """Whether artifact folder `d` is published: its manifest is there."""
    return (d / layout.MANIFEST).exists()


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
