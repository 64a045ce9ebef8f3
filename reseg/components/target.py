"""Target evaluation: a round's metrics on the target pixels, whose labels nothing else reads.

Counts every core pixel (each scene pixel once) whose `target/raw` label is not 255,
whatever its fold: target labels never train, select or validate, so every target
pixel is held out from supervision. Pseudo-labels of earlier rounds may cover target
pixels of the training folds (their images, not their labels): the transductive
setting of domain adaptation. Same metrics and plots as `evaluator`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reseg import artifacts, layout
from reseg.components.evaluator import plot_confusion, plot_per_class
from reseg.metrics import scores as metric_values
from reseg.metrics import tile_confusions, total
from reseg.tfrecords_schema import read_tiles

log = logging.getLogger(__name__)

CODE_VERSION = 1


def target_confusion(files: Sequence[Path], num_classes: int) -> np.ndarray:
    """C x C confusion of argmax(probs) against the target labels of every tile's core."""
    return total(tile_confusions(read_tiles(list(files)), num_classes, "target"), num_classes)


def evaluate_target(
    scores: artifacts.Scores,
    out: str | Path,
    class_names: Sequence[str],
    title: str = "",
) -> artifacts.Metrics:
    """Write `metrics.json`, `confusion.png`, `per_class.png` of the target pixels into `out`."""
    fp = artifacts.fingerprint("target", CODE_VERSION, scores.version, list(class_names))
    if artifacts.is_current(out, fp):
        return artifacts.Metrics.load(out)
    with artifacts.stage(out, fp, "evaluate_target") as st:
        cm = target_confusion(scores.files, len(class_names))
        metrics = metric_values(cm, class_names)
        metrics["fold"] = None
        artifacts.write_json(st.dir / layout.METRICS_JSON, metrics)
        plot_confusion(cm, class_names, st.dir / layout.CONFUSION_PNG, title)
        plot_per_class(metrics, st.dir / layout.PER_CLASS_PNG, title)
        st.manifest["scores"] = str(scores.path)
    m = metrics["mean_iou"]
    log.info("%s: target mIoU %s", title or out, "n/a" if m is None else f"{m:.3f}")
    return artifacts.Metrics.load(out)
