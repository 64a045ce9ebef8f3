"""Does refinement help? DenseCRF and SLIC on the ISPRS Potsdam and Vaihingen samples.

A tiny experiment, not a result about these data sets: each sample is one 512 x 512
crop. A small U-Net (registry `unet`, depth 3, base 16, no batch norm) is trained for
a few minutes on the crop's left half (columns 0-255) and the whole crop is then
predicted with `predict_scene` (tiles of 256 with overlap 32, so refinement runs
windowed, as on a large scene), with refine = none, crf, slic (default parameters
of `PredictConfig`). Metrics count the right half only (the left half's labels are
set to 0 = ignore). Prints a table and writes bench/results/refine.json.

    python bench/refine.py [--steps 150]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLASSES = ("impervious", "building", "low_vegetation", "tree", "car", "clutter")
COLORS = ("#ffffff", "#0000ff", "#00ffff", "#00ff00", "#ffff00", "#ff0000")
DATASETS = {
    "potsdam": ("potsdam/img_dir/2_10_0_0_512_512.png", "potsdam/ann_dir/2_10_0_0_512_512.png"),
    "vaihingen": (
        "vaihingen/img_dir/area1_0_0_512_512.png",
        "vaihingen/ann_dir/area1_0_0_512_512.png",
    ),
}


def shared_data() -> Path:
    for c in (
        os.environ.get("RESEG_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        "/work/shared/data",
    ):
        if c and Path(c).is_dir():
            return Path(c)
    raise SystemExit("sample data not found: set RESEG_SHARED_DATA to the shared/data folder")


def read(path: Path) -> np.ndarray:
    import warnings

    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            return ds.read()


def train(img: np.ndarray, lab: np.ndarray, out: Path, steps: int, seed: int = 0) -> Path:
    """U-Net trained on the left half; saved with its model.json. img (3, H, W) uint8, lab (H, W) raw."""
    import keras

    from reseg.artifacts import ModelInfo
    from reseg.models import build_model

    keras.utils.set_random_seed(seed)
    left = img[:, :, :256]
    mean = left.reshape(3, -1).mean(1)
    std = left.reshape(3, -1).std(1) + 1e-6
    x = ((np.moveaxis(left, 0, -1).astype(np.float32) - mean) / std).astype(np.float32)
    y = np.where(lab[:, :256] == 0, 255, lab[:, :256].astype(np.int64) - 1).astype(np.int32)
    model = build_model("unet", len(CLASSES), 3, depth=3, base_filters=16, batch_norm=False)
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=255)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=loss)
    rng = np.random.default_rng(seed)
    size = 96
    for _ in range(steps):
        r = rng.integers(0, x.shape[0] - size, 8)
        c = rng.integers(0, x.shape[1] - size, 8)
        xb = np.stack([x[i : i + size, j : j + size] for i, j in zip(r, c, strict=True)])
        yb = np.stack([y[i : i + size, j : j + size] for i, j in zip(r, c, strict=True)])
        if rng.random() < 0.5:
            xb, yb = xb[:, :, ::-1], yb[:, :, ::-1]
        k = int(rng.integers(0, 4))
        xb, yb = np.rot90(xb, k, (1, 2)), np.rot90(yb, k, (1, 2))
        model.train_on_batch(np.ascontiguousarray(xb), np.ascontiguousarray(yb))
    out.mkdir(parents=True)
    model.save(out / "model.keras")
    ModelInfo(
        bands=3,
        image_dtype="uint8",
        mean=tuple(map(float, mean)),
        std=tuple(map(float, std)),
        class_names=CLASSES,
        class_colors=COLORS,
        output_stride=8,
        tile_size=96,
        architecture="unet",
        label_values={"0": 255, **{str(v): v - 1 for v in range(1, 7)}},
    ).save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--steps", type=int, default=150, help="training steps per data set (batch 8 of 96^2)"
    )
    args = ap.parse_args(argv)
    import rasterio

    from reseg.components.predictor import predict_scene
    from reseg.config import PredictConfig
    from reseg.serving import load_backend

    data = shared_data()
    results: dict = {"steps": args.steps, "tile_size": 256, "overlap": 32, "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-refine-") as t:
        tmp = Path(t)
        for name, (img_rel, lab_rel) in DATASETS.items():
            img, lab = read(data / img_rel), read(data / lab_rel)[0]
            t0 = time.perf_counter()
            backend = load_backend(train(img, lab, tmp / name / "model", args.steps))
            train_s = time.perf_counter() - t0
            right = lab.copy()
            right[:, :256] = 0  # evaluate on the right half only
            labels = tmp / name / "right_labels.tif"
            with rasterio.open(
                labels, "w", driver="GTiff", height=512, width=512, count=1, dtype="uint8"
            ) as ds:
                ds.write(right, 1)
            for method in ("none", "crf", "slic"):
                cfg = PredictConfig(
                    tile_size=256, overlap=32, refine=method, progress=False, preview=False
                )
                t1 = time.perf_counter()
                r = predict_scene(backend, data / img_rel, tmp / name / method, cfg, labels=labels)
                m = r.metrics
                row = {
                    "dataset": name,
                    "refine": method,
                    "overall_accuracy": m["overall_accuracy"],
                    "mean_iou": m["mean_iou"],
                    "kappa": m["kappa"],
                    "pixels": m["pixels"],
                    "seconds": time.perf_counter() - t1,
                    "train_s": train_s,
                    "iou": {k: v["iou"] for k, v in m["per_class"].items()},
                }
                results["rows"].append(row)
                print(
                    f"{name:<10} {method:<5} OA {row['overall_accuracy']:.3f} mIoU {row['mean_iou']:.3f} "
                    f"({row['seconds']:.1f} s)",
                    flush=True,
                )
    _table(results)
    out = REPO / "bench" / "results" / "refine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


def _table(results: dict) -> None:
    rows = results["rows"]
    base = {r["dataset"]: r for r in rows if r["refine"] == "none"}
    print(
        f"\n{'data set':<10} {'refine':<6} {'OA':>6} {'mIoU':>6} {'kappa':>6} {'d mIoU':>7} {'time s':>7}"
    )
    for r in rows:
        d = r["mean_iou"] - base[r["dataset"]]["mean_iou"]
        print(
            f"{r['dataset']:<10} {r['refine']:<6} {r['overall_accuracy']:6.3f} {r['mean_iou']:6.3f} "
            f"{r['kappa']:6.3f} {d:+7.3f} {r['seconds']:7.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
