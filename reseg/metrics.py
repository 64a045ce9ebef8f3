"""Segmentation metrics from a confusion matrix (pure numpy).

C[i, j] counts pixels of true class i predicted as class j (ignore-label pixels
are never counted). With n = sum(C), tp_c = C[c, c]:

    OA        = sum_c tp_c / n
    IoU_c     = tp_c / (sum_j C[c, j] + sum_i C[i, c] - tp_c)
    precision = tp_c / sum_i C[i, c],  recall = tp_c / sum_j C[c, j]
    F1_c      = 2 tp_c / (sum_j C[c, j] + sum_i C[i, c])
    kappa     = (OA - p_e) / (1 - p_e),  p_e = sum_c (row_c / n) (col_c / n)

mIoU and mean F1 average over a fixed class set S per evaluation set: by
default the classes present in its labels (support row_c > 0), named in the
metrics as `class_set`. Every model evaluated on the same pixels (rounds, merged
rounds, cells, baselines) is then averaged over the same classes, whatever it
predicts:

    mIoU = (1 / |S|) sum_{c in S} IoU_c

A class outside S (absent from the labels) has no IoU (null): the pixels
predicted as it are errors, reported as `false_positives` (count and share of
the evaluated pixels per class), and they lower the IoU of the true classes of
those pixels, but never enter the mean as an IoU of 0. `mean_iou_of` applies the
same rule to stacks of confusion matrices (bootstrap replicates).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from reseg.config.data import IGNORE


def confusion(
    label: np.ndarray, pred: np.ndarray, num_classes: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """C x C int64 confusion matrix of labelled pixels (label != 255) within `mask`."""
    keep = label != IGNORE
    if mask is not None:
        keep &= mask.astype(bool)
    t = label[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if t.size and (t.max() >= num_classes or p.max() >= num_classes):
        raise ValueError(f"class id out of range 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def tile_confusions(
    tiles: Iterable[Any],
    num_classes: int,
    against: str = "label",
    fold: int | None = None,
    source: str = "",
) -> dict[str, np.ndarray]:
    """The core confusion of argmax(probs) of each scored tile, by tile key: the one loop over
    tiles behind the evaluator, the target evaluation and the study's per-tile bootstrap.

    Args:
        tiles: scored tiles (`reseg.tfrecords_schema.Tile`: `key`, `fold`, `label`,
            `target`, `probs`, `core_slice()`).
        against: `label` (the tile's labels; every tile of the fold, even with no labelled
            pixel) or `target` (the target labels; only tiles that have some).
        fold: only the tiles of this fold (None: every tile).
        source: what the tiles are read from, for the error of a tile without scores.

    Returns:
        (C, C) int64 per tile key (a key seen twice is summed); cores partition a scene, so
        the sum over tiles is the confusion of the whole set.
    """
    out: dict[str, np.ndarray] = {}
    for t in tiles:
        if fold is not None and t.fold != fold:
            continue
        rs, cs = t.core_slice()
        if against == "target":
            if t.target is None or (t.target[rs, cs] == IGNORE).all():
                continue
            truth = t.target[rs, cs]
        else:
            truth = t.label[rs, cs]
        if t.probs is None:
            raise ValueError(f"tile {t.key}{f' of {source}' if source else ''} carries no scores")
        cm = confusion(truth, t.probs[rs, cs].argmax(-1), num_classes)
        out[t.key] = out[t.key] + cm if t.key in out else cm
    return out


def total(cms: dict[str, np.ndarray], num_classes: int) -> np.ndarray:
    """The sum of per-tile confusions ((C, C) zeros for none)."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    for c in cms.values():
        cm += c
    return cm


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.maximum(b, 1e-300), np.nan)


def class_set(cm: np.ndarray) -> np.ndarray:
    """(C,) bool: the classes present in the labels of a confusion matrix (row sum > 0)."""
    return np.asarray(cm).sum(-1) > 0


def mean_iou_of(cm: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """mIoU of confusion matrices (..., C, C) over a fixed class set (module docstring).

    Args:
        cm: confusion matrices, rows labels, columns predictions.
        classes: (C,) bool, the class set S; default each matrix's own labels
            (`class_set`). With an explicit S (e.g. a whole evaluation set's, applied to
            its bootstrap replicates), a class of S with a zero denominator in a matrix
            (absent from its labels and predictions) is left out of that matrix's mean.

    Returns:
        (...) float64, NaN where S has no class with a defined IoU.
    """
    cm = np.asarray(cm, np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    rows, cols = cm.sum(-1), cm.sum(-2)
    denom = rows + cols - tp
    member = rows > 0 if classes is None else np.asarray(classes, bool)
    counted = member & (denom > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(counted, tp / np.maximum(denom, 1e-300), 0.0)
        n = counted.sum(-1)
        return np.where(n > 0, iou.sum(-1) / np.maximum(n, 1), np.nan)


def _clean(v: np.ndarray) -> list[float | None]:
    """Floats of `v` as JSON has them: NaN -> None."""
    return [None if np.isnan(x) else float(x) for x in v]


def scores(
    cm: np.ndarray,
    class_names: list[str] | tuple[str, ...] | None = None,
    classes: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring, as a JSON-able dict (NaN -> None).

    `classes`: (C,) bool class set S, default the classes present in `cm`'s labels.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    rows, cols = cm.sum(1), cm.sum(0)
    member = class_set(cm) if classes is None else np.asarray(classes, bool)
    iou = np.where(member, _div(tp, rows + cols - tp), np.nan)
    f1 = np.where(member, _div(2 * tp, rows + cols), np.nan)
    precision, recall = _div(tp, cols), _div(tp, rows)
    oa = float(tp.sum() / n) if n else float("nan")
    pe = float((rows * cols).sum() / n**2) if n else float("nan")
    kappa = (oa - pe) / (1 - pe) if n and pe < 1 else float("nan")
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]
    outside = ~member & (cols > 0)
    return {
        "pixels": int(n),
        "overall_accuracy": None if np.isnan(oa) else oa,
        "kappa": None if np.isnan(kappa) else float(kappa),
        "mean_iou": None if np.all(np.isnan(iou)) else float(np.nanmean(iou)),
        "mean_f1": None if np.all(np.isnan(f1)) else float(np.nanmean(f1)),
        "class_set": [name for name, m in zip(names, member, strict=True) if m],
        "false_positives": {
            name: {"pixels": int(cols[c]), "share": float(cols[c] / n)}
            for c, name in enumerate(names)
            if outside[c]
        },
        "per_class": {
            name: {
                "iou": i,
                "f1": f,
                "precision": p,
                "recall": r,
                "support": int(s),
                "predicted": int(q),
            }
            for name, i, f, p, r, s, q in zip(
                names,
                _clean(iou),
                _clean(f1),
                _clean(precision),
                _clean(recall),
                rows,
                cols,
                strict=True,
            )
        },
        "confusion": cm.astype(np.int64).tolist(),
        "class_names": names,
    }
