"""Tiny Keras models saved as reseg model directories, for the predictor's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reseg.artifacts import ModelInfo

COLORS = ("#e31a1c", "#33a02c", "#1f78b4", "#ffff99", "#cab2d6", "#fdbf6f", "#b2df8a")


def conv1x1(bands: int, classes: int, seed: int = 0):
    """The registry's plain CNN with 1 x 1 kernels: per-pixel, so exactly D4-equivariant."""
    import keras

    from reseg.models import build_model

    keras.utils.set_random_seed(seed)
    return build_model("cnn", classes, bands, filters=8, depth=2, kernel_size=1, batch_norm=False)


def small_cnn(bands: int, classes: int, seed: int = 0):
    """The registry's U-Net at depth 1 (output stride 2), base 8 filters: has spatial context."""
    import keras

    from reseg.models import build_model

    keras.utils.set_random_seed(seed)
    return build_model("unet", classes, bands, depth=1, base_filters=8, batch_norm=False)


def save_model(
    directory: str | Path,
    model,
    *,
    bands: int,
    classes: int,
    dtype: str = "uint16",
    mean: float = 2000.0,
    std: float = 1000.0,
    output_stride: int = 1,
    tile_size: int = 64,
    nodata: float | None = None,
    band_indexes: tuple[int, ...] | None = None,
    label_values: dict[str, int] | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Path:
    """Write `model.keras` and `model.json` into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / "model.keras")
    ModelInfo(
        bands=bands,
        image_dtype=dtype,
        mean=tuple([float(mean)] * bands),
        std=tuple([float(std)] * bands),
        class_names=class_names or tuple(f"class{i}" for i in range(classes)),
        class_colors=tuple(COLORS[i % len(COLORS)] for i in range(classes)),
        output_stride=output_stride,
        tile_size=tile_size,
        architecture=model.name,
        nodata=nodata,
        band_indexes=band_indexes,
        label_values=label_values,
    ).save(directory)
    return directory


def smooth_image(
    bands: int, height: int, width: int, seed: int = 0, dtype: str = "uint16"
) -> np.ndarray:
    """(bands, H, W) image of smooth random blobs (structure for models and SLIC), values ~0..4000."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 4000, (bands, height // 16 + 2, width // 16 + 2))
    rows = np.linspace(0, small.shape[1] - 1.001, height)
    cols = np.linspace(0, small.shape[2] - 1.001, width)
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    a = small[:, r0][:, :, c0] * (1 - fr) * (1 - fc) + small[:, r0 + 1][:, :, c0] * fr * (1 - fc)
    a += small[:, r0][:, :, c0 + 1] * (1 - fr) * fc + small[:, r0 + 1][:, :, c0 + 1] * fr * fc
    a += rng.normal(0, 50, a.shape)
    return np.clip(a, 1, 4000).astype(dtype)


def learnable_labels(img: np.ndarray, classes: int = 4) -> np.ndarray:
    """(H, W) uint8 classes: quantile bins of a band contrast of `smooth_image` (learnable)."""
    x = img[0].astype(np.float32) - img[1].astype(np.float32) + 0.5 * img[2].astype(np.float32)
    edges = np.quantile(x, np.linspace(0, 1, classes + 1)[1:-1])
    return np.digitize(x, edges).astype(np.uint8)


def trained_unet(directory: str | Path, steps: int = 150, seed: int = 0) -> Path:
    """A U-Net (depth 2, base 8, batch norm) trained on `learnable_labels` of a smooth
    256 x 256 x 4 uint16 image, saved as a model directory (4 classes, output stride 4).

    Trained, so that its class maps are not decided by near-ties (agreement between
    precisions of an untrained network measures ties, not arithmetic).
    """
    import keras

    from reseg.models import build_model

    keras.utils.set_random_seed(seed)
    img = smooth_image(4, 256, 256, seed=seed)
    y = learnable_labels(img)
    x = ((np.moveaxis(img, 0, -1).astype(np.float32) - 2000.0) / 1000.0).astype(np.float32)
    model = build_model("unet", 4, 4, depth=2, base_filters=8)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        r, c = rng.integers(0, 256 - 64, 8), rng.integers(0, 256 - 64, 8)
        xb = np.stack([x[i : i + 64, j : j + 64] for i, j in zip(r, c, strict=True)])
        yb = np.stack([y[i : i + 64, j : j + 64] for i, j in zip(r, c, strict=True)])
        model.train_on_batch(xb, yb)
    return save_model(directory, model, bands=4, classes=4, output_stride=4)
