"""Training curves as a PNG: loss and mIoU per epoch, training and validation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reseg import storage


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write `loss`/`val_loss` and `miou`/`val_miou` against `epoch` into a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.6), dpi=100)
    epochs = [h["epoch"] for h in history]
    for i, (key, label) in enumerate((("loss", "loss"), ("miou", "mIoU"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for prefix, style in (("", "-o"), ("val_", "-s")):
            points = [(e, h.get(prefix + key)) for e, h in zip(epochs, history, strict=True)]
            points = [(e, v) for e, v in points if v is not None]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    style,
                    ms=3,
                    label=("validation " if prefix else "training ") + label,
                )
        best = [h["epoch"] for h in history if h.get("best")]
        if best and key == "miou":
            ax.axvline(best[-1], color="grey", lw=0.8, ls=":", label="saved epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = storage.path(path)
    storage.save_figure(fig, path)
    return path
