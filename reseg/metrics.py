"""Segmentation metrics from a confusion matrix (pure numpy).

C[i, j] counts pixels of true class i predicted as class j (ignore-label pixels
are never counted). With n = sum(C), tp_c = C[c, c]:

    OA        = sum_c tp_c / n
    IoU_c     = tp_c / (sum_j C[c, j] + sum_i C[i, c] - tp_c)
    precision = tp_c / sum_i C[i, c],  recall = tp_c / sum_j C[c, j]
    F1_c      = 2 tp_c / (sum_j C[c, j] + sum_i C[i, c])
    kappa     = (OA - p_e) / (1 - p_e),  p_e = sum_c (row_c / n) (col_c / n)

mIoU and mean F1 average over classes present in the reference or the prediction
(classes absent from both have undefined IoU and are reported as null).
"""

from __future__ import annotations

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


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.maximum(b, 1e-300), np.nan)


def scores(
    cm: np.ndarray, class_names: list[str] | tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Every metric of the module docstring, as a JSON-able dict (NaN -> None)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    rows, cols = cm.sum(1), cm.sum(0)
    iou = _div(tp, rows + cols - tp)
    f1 = _div(2 * tp, rows + cols)
    precision, recall = _div(tp, cols), _div(tp, rows)
    oa = float(tp.sum() / n) if n else float("nan")
    pe = float((rows * cols).sum() / n**2) if n else float("nan")
    kappa = (oa - pe) / (1 - pe) if n and pe < 1 else float("nan")
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]

    def clean(v: np.ndarray) -> list[float | None]:
        return [None if np.isnan(x) else float(x) for x in v]

    return {
        "pixels": int(n),
        "overall_accuracy": None if np.isnan(oa) else oa,
        "kappa": None if np.isnan(kappa) else float(kappa),
        "mean_iou": None if np.all(np.isnan(iou)) else float(np.nanmean(iou)),
        "mean_f1": None if np.all(np.isnan(f1)) else float(np.nanmean(f1)),
        "per_class": {
            name: {"iou": i, "f1": f, "precision": p, "recall": r, "support": int(s)}
            for name, i, f, p, r, s in zip(
                names, clean(iou), clean(f1), clean(precision), clean(recall), rows, strict=True
            )
        },
        "confusion": cm.astype(np.int64).tolist(),
        "class_names": names,
    }
