"""Evaluator: metrics of a round (or of the merged rounds) on one fold's pixels.

Reads a scores directory and counts the core pixels of one fold's tiles (each
scene pixel once) whose label is not 255: the evaluation fold k for the reported
metrics (`eval/`), the validation fold for merge weights and stopping rounds
(`val/`, `reseg.folds`). Overall accuracy, per-class IoU, precision, recall and
F1, mean IoU over the classes in the fold's labels, false positives of classes
absent from them, Cohen's kappa (formulas in `reseg.metrics`), the confusion
matrix as counts (JSON) and row-normalised (PNG).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reseg import artifacts, layout, storage
from reseg.metrics import scores as metric_values
from reseg.metrics import tile_confusions, total
from reseg.tfrecords_schema import read_tiles

log = logging.getLogger(__name__)

CODE_VERSION = 2  # the fixed class set of reseg.metrics


def confusion_of_scores(files: Sequence[Path], fold: int | None, num_classes: int) -> np.ndarray:
    """C x C confusion of argmax(probs) over the core pixels of fold `fold`'s tiles (all tiles if None)."""
    return total(tile_confusions(read_tiles(list(files)), num_classes, fold=fold), num_classes)


def evaluate(
    scores: artifacts.Scores | str | Path,
    out: str | Path,
    fold: int | None,
    class_names: Sequence[str],
    title: str = "",
) -> artifacts.Metrics:
    """Write `metrics.json`, `confusion.png` and `per_class.png` into `out`; return the metrics."""
    scores = scores if isinstance(scores, artifacts.Scores) else artifacts.Scores.load(scores)
    fp = artifacts.fingerprint("evaluate", CODE_VERSION, scores.version, fold, list(class_names))
    if artifacts.is_current(out, fp):
        return artifacts.Metrics.load(out)
    with artifacts.stage(out, fp, "evaluate") as st:
        cm = confusion_of_scores(scores.files, fold, len(class_names))
        metrics = metric_values(cm, class_names)
        metrics["fold"] = fold
        artifacts.write_json(st.dir / layout.METRICS_JSON, metrics)
        plot_confusion(cm, class_names, st.dir / layout.CONFUSION_PNG, title)
        plot_per_class(metrics, st.dir / layout.PER_CLASS_PNG, title)
        st.manifest["scores"] = str(scores.path)
    log.info(
        "%s: mIoU %s, OA %s",
        title or out,
        _fmt(metrics["mean_iou"]),
        _fmt(metrics["overall_accuracy"]),
    )
    return artifacts.Metrics.load(out)


def load_metrics(eval_dir: str | Path) -> dict[str, Any]:
    """The values of a published `eval/` directory (`metrics.json`)."""
    return artifacts.Metrics.load(eval_dir).values


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (recall per true class) with counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{cm[i, j]}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion (row-normalised) {title}".strip(), fontsize=8)
    fig.tight_layout()
    storage.save_figure(fig, path)
    plt.close(fig)


def plot_per_class(metrics: dict[str, Any], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics["per_class"])
    iou = [metrics["per_class"][c]["iou"] or 0 for c in names]
    f1 = [metrics["per_class"][c]["f1"] or 0 for c in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(names), 3), dpi=100)
    ax.bar(x - 0.2, iou, 0.4, label="IoU")
    ax.bar(x + 0.2, f1, 0.4, label="F1")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title(f"per class {title}; mIoU {_fmt(metrics['mean_iou'])}".strip(), fontsize=8)
    fig.tight_layout()
    storage.save_figure(fig, path)
    plt.close(fig)
