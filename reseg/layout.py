"""Where artifacts live under a pipeline root (see DESIGN.md, "Artifact layout").

Every path of the layout is built here, so no other module spells it out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from reseg import storage


def tiles_dir(root: str | Path) -> Path:
    return storage.path(root) / "tiles"


def stats_dir(root: str | Path) -> Path:
    return storage.path(root) / "stats"


MODEL = "model"
SCORES = "scores"
EVAL = "eval"
VALIDATION = "val"
SELECTION = "selection"
PSEUDO = "pseudo"
TARGET = "target"
"""The parts of a round's folder (`rounds/r<r>/<fold>/<part>`); merged rounds have scores and eval.

`eval` holds the metrics on the evaluation fold k (reported, nothing else), `val` those on
the validation fold (merge weights, stopping rounds; `reseg.folds.validation_fold`)."""

FULL = "full"
"""Folder name of the models trained on every tile (fold None: no evaluation fold)."""


def fold_name(fold: int | None) -> str:
    """`fold<k>` for evaluation fold k; `full` for fold None (trained on every tile)."""
    return FULL if fold is None else f"fold{fold}"


def rounds_root(root: str | Path) -> Path:
    return storage.path(root) / "rounds"


def merged_root(root: str | Path) -> Path:
    return storage.path(root) / "merged"


def round_dir(root: str | Path, r: int, fold: int | None) -> Path:
    """`rounds/r<r>/fold<k>`; `fold=None` (trained on every tile, no evaluation) is `full`."""
    return rounds_root(root) / f"r{r}" / fold_name(fold)


def model_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / MODEL


def scores_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / SCORES


def selection_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / SELECTION


def eval_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / EVAL


def val_dir(root: str | Path, r: int, fold: int | None) -> Path:
    """Round r's metrics on the validation fold of evaluation fold `fold`."""
    return round_dir(root, r, fold) / VALIDATION


def pseudo_dir(root: str | Path, r: int, fold: int | None) -> Path:
    """Round r's pseudo-labels (rasters, next round's tiles): `rounds/r<r>/<fold>/pseudo`."""
    return round_dir(root, r, fold) / PSEUDO


def target_eval_dir(root: str | Path, r: int, fold: int | None) -> Path:
    """Round r's metrics on the target pixels: `rounds/r<r>/<fold>/target`."""
    return round_dir(root, r, fold) / TARGET


def merged_target_dir(root: str | Path, fold: int | None) -> Path:
    return merged_dir(root, fold) / TARGET


def merged_dir(root: str | Path, fold: int | None) -> Path:
    return merged_root(root) / fold_name(fold)


def merged_scores_dir(root: str | Path, fold: int | None) -> Path:
    return merged_dir(root, fold) / SCORES


def merged_eval_dir(root: str | Path, fold: int | None) -> Path:
    return merged_dir(root, fold) / EVAL


def refine_root(root: str | Path) -> Path:
    return storage.path(root) / "refine"


def refine_dir(root: str | Path, fold: int | None) -> Path:
    """`refine/fold<k>`: the refinements tuned on the validation pixels of fold k's models."""
    return refine_root(root) / fold_name(fold)


def export_dir(root: str | Path, model_name: str) -> Path:
    return storage.path(root) / "export" / model_name


def predictions_dir(root: str | Path) -> Path:
    return storage.path(root) / "predictions"


def report_dir(root: str | Path) -> Path:
    return storage.path(root) / "report"


def config_file(root: str | Path) -> Path:
    """The resolved config of the last pipeline run in a root."""
    return storage.path(root) / CONFIG_JSON


LEASE = "lease.json"
"""The root's lease: who writes the root now (`reseg.artifacts.lease`); absent when no one does."""


def lease_file(root: str | Path) -> Path:
    return storage.path(root) / LEASE


SHARED_JSON = "shared.json"
"""What a root reads from other roots (`Shared`); absent in a root that has everything."""


def shared_file(root: str | Path) -> Path:
    return storage.path(root) / SHARED_JSON


@dataclass(frozen=True)
class Shared:
    """The roots a root reads instead of its own folders: a study's cells and groups.

    `data` holds `tiles/` and `stats/`; `round0` holds round 0's published artifacts of every
    fold, `rounds/r0/<fold>/{model,scores,eval,val,target}` (not round 0's `selection` or
    `pseudo`: those depend on the rounds config and stay in the root). Recorded in
    `<root>/shared.json`, so every command on the root (`reseg run`, `report`, `train`, ...)
    finds them; None: the root's own folder.
    """

    data: str | None = None
    round0: str | None = None

    @classmethod
    def load(cls, root: str | Path) -> Shared:
        """The record of `root`; `Shared()` (everything in the root) when it has none."""
        try:
            raw = json.loads(shared_file(root).read_text())
        except FileNotFoundError:
            return cls()
        return cls(raw.get("data"), raw.get("round0"))

    @classmethod
    def of(cls, root: str | Path, given: Shared | None = None) -> Shared:
        """`given`, else the record of `root` (`load`)."""
        return given if given is not None else cls.load(root)

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def data_root(self, root: str | Path) -> Path:
        """Where `tiles/` and `stats/` of `root` are."""
        return storage.path(self.data if self.data is not None else root)

    def round_root(self, root: str | Path, r: int) -> Path:
        """Where round r's model, scores and metrics (eval, val, target) of `root` are."""
        return storage.path(self.round0 if r == 0 and self.round0 is not None else root)


def tracking_uri(root: str | Path) -> str | None:
    """Default MLflow tracking store of a pipeline root; None for a root on object storage
    (sqlite needs a local file: there `tracking.uri` names a tracking server)."""
    if storage.is_remote(root):
        return None
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


# --- file names inside artifact directories ---------------------------------------------

MANIFEST = "manifest.json"
CONFIG_JSON = "config.json"
MODEL_KERAS = "model.keras"
MODEL_JSON = "model.json"
MERGED_JSON = "merged.json"
HISTORY_JSON = "history.json"
STATS_JSON = "stats.json"
METRICS_JSON = "metrics.json"
CONFUSION_PNG = "confusion.png"
PER_CLASS_PNG = "per_class.png"
SELECTION_JSON = "selection.json"
PSEUDO_JSON = "pseudo.json"
SCORE_HIST_JSON = "score_hist.json"
SCORE_HIST_PNG = "score_hist.png"
METHODS_JSON = "methods.json"
REFINE_JSON = "refine.json"
REFINE_TILES_NPZ = "tiles.npz"
SHARD_GLOB = "part-*.tfrecord.gz"
CLASS_PIXELS_PNG = "class_pixels.png"
CURVES_PNG = "curves.png"
