"""The preview PNG, sampled block by block while the scene is predicted (no second read).

The image's samples come from the windows the reader reads (`add_image`), the classes'
from the finished blocks (`add_classes`), so no raw pixels wait for the model.

Preview pixel (r, c) of a preview of h x w shows scene pixel
(floor((r + 1/2) H / h), floor((c + 1/2) W / w)) (nearest-neighbour sampling),
h x w = the scene scaled so that its longest side is at most `size`. Each band of
the picture is stretched linearly between its 2nd and 98th percentile over the
valid sampled pixels; class colours are laid over with opacity 0.45.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reseg.windows import Window

OVERLAY_ALPHA = 0.45
NODATA = 255


def hex_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b); anything else is grey."""
    try:
        return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)
    except (ValueError, IndexError, TypeError):
        return 128, 128, 128


class PreviewCanvas:
    """Collects the sampled pixels of a preview from finished blocks of the scene."""

    def __init__(self, height: int, width: int, size: int, bands: tuple[int, int, int]):
        scale = min(1.0, size / max(height, width))
        self.shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        self.rows = ((np.arange(self.shape[0]) + 0.5) * height / self.shape[0]).astype(np.int64)
        self.cols = ((np.arange(self.shape[1]) + 0.5) * width / self.shape[1]).astype(np.int64)
        self.bands = list(bands)
        self.image = np.zeros((*self.shape, 3), np.float32)
        self.classes = np.full(self.shape, NODATA, np.uint8)

    def add(self, window: Window, image: np.ndarray, classes: np.ndarray) -> None:
        """Sample a finished block: image (h, w, bands) raw, classes (h, w) uint8 (255 nodata)."""
        self.add_image(window, image)
        self.add_classes(window, classes)

    def _samples(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r = np.flatnonzero((self.rows >= window.row_off) & (self.rows < window.row_end))
        c = np.flatnonzero((self.cols >= window.col_off) & (self.cols < window.col_end))
        return r, c, self.rows[r] - window.row_off, self.cols[c] - window.col_off

    def add_image(self, window: Window, image: np.ndarray) -> None:
        """Sample image pixels (h, w, bands) raw of `window` (inside the scene)."""
        r, c, lr, lc = self._samples(window)
        if r.size and c.size:
            sub = image[lr[:, None], lc[None, :]][..., self.bands]
            self.image[r[0] : r[-1] + 1, c[0] : c[-1] + 1] = sub

    def add_classes(self, window: Window, classes: np.ndarray) -> None:
        """Sample class ids (h, w) uint8 (255 nodata) of `window`."""
        r, c, lr, lc = self._samples(window)
        if r.size and c.size:
            self.classes[r[0] : r[-1] + 1, c[0] : c[-1] + 1] = classes[lr[:, None], lc[None, :]]

    def span(self, window: Window) -> tuple[slice, slice]:
        """The preview rows and columns whose sampled scene pixels lie in `window`."""
        r = np.flatnonzero((self.rows >= window.row_off) & (self.rows < window.row_end))
        c = np.flatnonzero((self.cols >= window.col_off) & (self.cols < window.col_end))
        if not r.size or not c.size:
            return slice(0, 0), slice(0, 0)
        return slice(int(r[0]), int(r[-1]) + 1), slice(int(c[0]), int(c[-1]) + 1)

    def render(self, class_colors: tuple[str, ...] | list[str]) -> np.ndarray:
        """(h, w, 3) uint8: the stretched picture with the class colours laid over."""
        valid = self.classes != NODATA
        rgb = np.zeros_like(self.image)
        for b in range(3):
            band = self.image[..., b]
            good = band[valid & np.isfinite(band)]
            lo, hi = np.percentile(good, (2, 98)) if good.size else (0.0, 1.0)
            rgb[..., b] = np.clip((band - lo) / max(hi - lo, 1e-6), 0, 1) * 255
        lut = np.zeros((256, 3), np.float32)
        for i, color in enumerate(class_colors):
            lut[i] = hex_rgb(color)
        a = np.where(valid, np.float32(OVERLAY_ALPHA), np.float32(0))[..., None]
        return np.nan_to_num((1 - a) * rgb + a * lut[self.classes]).astype(np.uint8)

    def save(self, path: str | Path, class_colors: tuple[str, ...] | list[str]) -> Path:
        from PIL import Image

        Image.fromarray(self.render(class_colors)).save(path)
        return Path(path)  # local: PIL writes local files (SceneOutputs stages the outputs)
