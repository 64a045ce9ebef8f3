"""Where artifacts live under a pipeline root (see DESIGN.md, "Artifact layout").

Every path of the layout is built here, so no other module spells it out.
"""

from __future__ import annotations

from pathlib import Path


def tiles_dir(root: str | Path) -> Path:
    return Path(root) / "tiles"


def stats_dir(root: str | Path) -> Path:
    return Path(root) / "stats"


def round_dir(root: str | Path, r: int, fold: int | None) -> Path:
    """`rounds/r<r>/fold<k>`; `fold=None` (trained on every fold, no validation) is `all`."""
    return Path(root) / "rounds" / f"r{r}" / ("all" if fold is None else f"fold{fold}")


def model_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / "model"


def scores_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / "scores"


def selection_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / "selection"


def eval_dir(root: str | Path, r: int, fold: int | None) -> Path:
    return round_dir(root, r, fold) / "eval"


def merged_dir(root: str | Path, fold: int | None) -> Path:
    return Path(root) / "merged" / ("all" if fold is None else f"fold{fold}")


def export_dir(root: str | Path, model_name: str) -> Path:
    return Path(root) / "export" / model_name


def predictions_dir(root: str | Path) -> Path:
    return Path(root) / "predictions"


def tracking_uri(root: str | Path) -> str:
    """Default MLflow tracking store of a pipeline root."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


# --- file names inside artifact directories ---------------------------------------------

MANIFEST = "manifest.json"
CONFIG_JSON = "config.json"
MODEL_KERAS = "model.keras"
MODEL_JSON = "model.json"
MERGED_JSON = "merged.json"
