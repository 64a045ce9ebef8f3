"""Tiny untrained models laid out in a pipeline root, for the exporter's and the client's tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from reseg import artifacts, layout
from reseg.artifacts import ModelInfo

COLORS = ("#e31a1c", "#33a02c", "#1f78b4", "#ffff99", "#cab2d6", "#fdbf6f", "#b2df8a")


def _build(kind: str, classes: int, bands: int, seed: int):
    import keras

    from reseg.models import build_model

    keras.utils.set_random_seed(seed)
    if kind == "unet":  # output stride 2, spatial context
        return build_model("unet", classes, bands, depth=1, base_filters=4, batch_norm=False)
    return build_model("cnn", classes, bands, filters=8, depth=2, kernel_size=1, batch_norm=False)


def save(directory: Path, kind: str, info: ModelInfo, seed: int) -> Path:
    """`model.keras` + `model.json` of a fresh registry model in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    model = _build(kind, len(info.class_names), info.bands, seed)
    model.save(directory / "model.keras")
    stride = 2 if kind == "unet" else 1
    dataclasses.replace(info, output_stride=stride, architecture=model.name).save(directory)
    _published(directory, f"{kind}-{seed}")
    return directory


def _published(directory: Path, fp: str) -> None:
    """A manifest, written last as the artifact store does: sources are found by manifests."""
    artifacts.write_json(directory / layout.MANIFEST, {"fingerprint": fp, "step": "test"})


def demo_info(root: Path, cfg) -> ModelInfo:
    """The ModelInfo the trainer would write for models trained on `root`'s tiles."""
    tiles = artifacts.TileSet.load(layout.tiles_dir(root))
    stats = artifacts.Stats.load(layout.stats_dir(root))
    return ModelInfo(
        bands=tiles.bands,
        image_dtype=tiles.image_dtype,
        mean=tuple(float(v) for v in stats.mean),
        std=tuple(float(v) for v in stats.std),
        class_names=tuple(c.name for c in cfg.data.classes),
        class_colors=tuple(c.color for c in cfg.data.classes),
        output_stride=1,
        tile_size=tiles.tile_size,
        architecture="",
        nodata=cfg.data.nodata,
        label_values={f"{k:g}": v for k, v in cfg.data.value_to_class().items()},
    )


def plain_info(bands: int = 4, classes: int = 3, dtype: str = "uint16") -> ModelInfo:
    return ModelInfo(
        bands=bands,
        image_dtype=dtype,
        mean=(2000.0,) * bands,
        std=(1000.0,) * bands,
        class_names=tuple(f"class{i}" for i in range(classes)),
        class_colors=COLORS[:classes],
        output_stride=1,
        tile_size=32,
        architecture="",
        nodata=0.0,
    )


def rounds_root(root: Path, info: ModelInfo, fold: int | None = 0, method: str = "mean") -> Path:
    """`root` with rounds r0 (U-Net) and r1 (1 x 1 CNN) of `fold` and their merge (`merged.json`)."""
    r0 = save(layout.model_dir(root, 0, fold), "unet", info, seed=1)
    r1 = save(layout.model_dir(root, 1, fold), "cnn", info, seed=2)
    merged = layout.merged_dir(root, fold)
    merged.mkdir(parents=True, exist_ok=True)
    members = [
        {"model": str(Path("..") / ".." / p.relative_to(root)), "weight": w}
        for p, w in ((r0, 3.0), (r1, 1.0))
    ]
    (merged / "merged.json").write_text(json.dumps({"method": method, "members": members}))
    _published(merged, f"merged-{method}")
    return root
