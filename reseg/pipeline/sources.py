"""Where the models of an export (and of a prediction) are in a root: a round's model or the
merged rounds of a fold, found by their manifests.

The exporter and the predictor take what this resolves (`reseg.components.exporter.sources`
loads it); they never look in a root themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

from reseg import artifacts, layout, storage
from reseg.config import Config
from reseg.errors import ArtifactError, ConfigError

DEFAULT = "default"
"""`resolve`'s fold for `export.fold`, else the first of `rounds.folds`."""


def default_fold(cfg: Config, root: Path, shared: layout.Shared | None = None) -> int | None:
    """`export.fold`, else the first of `rounds.folds` (which needs the root's tile set)."""
    if cfg.export.fold is not None:
        return None if cfg.export.fold == layout.FULL else int(cfg.export.fold)
    shared = layout.Shared.of(root, shared)
    try:
        k = artifacts.TileSet.load(layout.tiles_dir(shared.data_root(root))).folds
    except ArtifactError:
        raise ConfigError(
            f"{root}: no tiles manifest to find the folds from; name the fold (--fold k|{layout.FULL})"
        ) from None
    return cfg.rounds.fold_list(k)[0]


def resolve(
    cfg: Config,
    root: str | Path,
    source: str | int,
    fold: int | str | None,
    shared: layout.Shared | None = None,
) -> tuple[str, int | None, Path]:
    """(label, fold, directory) of `source` = `merged` | `last` | `r<k>` | k for a fold.

    `fold`: k, None (the models trained on every tile, `full`) or `DEFAULT`
    (`export.fold`, else the first of `rounds.folds`). A source is found by its manifest,
    which is written last: a model or merge still being published (its files partly
    uploaded to a bucket) is not one; `last` is the last round published. `shared`: where
    the root reads its tiles and round 0 from (default its `shared.json`: a study cell's
    round 0 is its group's).
    """
    root = storage.path(root)
    shared = layout.Shared.of(root, shared)
    k = default_fold(cfg, root, shared) if fold == DEFAULT else fold
    if isinstance(k, str):
        raise ConfigError(f"export fold must be a fold number or {layout.FULL!r}; received {k!r}")
    text = f"r{source}" if isinstance(source, int) else str(source)
    if text == "merged":
        d = layout.merged_dir(root, k)
        if not artifacts.is_published(d):
            raise ArtifactError(f"{d}: no published merge; merge the rounds first (reseg merge)")
        return "merged", k, d
    if text == "last":
        r = 0
        while artifacts.is_published(layout.model_dir(root, r + 1, k)):
            r += 1
        text = f"r{r}"
    m = re.fullmatch(r"r(\d+)", text)
    if m is None:
        raise ConfigError(
            f"export source must be `merged`, `last`, `r<k>` or k; received {source!r}"
        )
    r = int(m.group(1))
    d = layout.model_dir(shared.round_root(root, r), r, k)
    if not artifacts.is_published(d):
        raise ArtifactError(f"{d}: no published model; train round {m.group(1)} first")
    return text, k, d


def tile_set(root: str | Path) -> artifacts.TileSet | None:
    """The root's tile set (an export's warm-up tiles), None when it has none (models copied
    into a root without tiles warm up on synthetic tiles)."""
    try:
        return artifacts.TileSet.load(layout.tiles_dir(root))
    except ArtifactError:
        return None
