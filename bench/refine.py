"""What refinement costs: DenseCRF and SLIC per megapixel, relative to plain prediction.

One run, one machine: each scene is predicted with `predict_scene` (default tiles of
1024, overlap 32; refinement runs per tile in the writer thread) with refine = none,
crf and slic, interleaved, `--repeats` times each, and the fastest of each kept.
Reported per scene and method: wall seconds, seconds per megapixel, the ratio to
plain prediction (wall time), and the refinement's own share (refined minus plain,
per megapixel). Scenes:

- `landsat`: the demo scene (443 x 489, 5 bands, 7 classes) with a U-Net (depth 3,
  base 16, as the demo config), untrained: refinement's cost does not depend on the
  weights;
- `synthetic`: a `--size`^2 scene of 4 uint16 bands (smooth random fields), the same
  U-Net with 4 bands and 7 classes.

Parameters: `PredictConfig()`'s `crf` and `slic` (pixels: gaussian 1, bilateral 10,
colour 0.5 std, 5 iterations; SLIC superpixels of 10 px) and, for CRF, a wide kernel
(bilateral 30 px) and 10 iterations, to show how the cost moves with them.
Prints a table and writes bench/results/refine.json.

    python bench/refine.py [--size 2048] [--repeats 2]

`--smoke`: the synthetic scene alone at 128², once (seconds; checks that it runs).

`shared_data()` is also bench/minority.py's lookup of the sample data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import _env
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLASSES = tuple(f"c{i}" for i in range(7))
COLORS = ("#000000", "#ff0000", "#00ff00", "#0000ff", "#ffff00", "#00ffff", "#ff00ff")


def shared_data() -> Path:
    for c in (
        os.environ.get("RESEG_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        "/work/shared/data",
    ):
        if c and Path(c).is_dir():
            return Path(c)
    raise SystemExit("sample data not found: set RESEG_SHARED_DATA to the shared/data folder")


def _model(out: Path, bands: int, mean: list[float], std: list[float], dtype: str) -> Path:
    import keras

    from reseg.artifacts import ModelInfo
    from reseg.models import build_model
    from reseg.models.registry import output_stride

    keras.utils.set_random_seed(0)
    model = build_model("unet", len(CLASSES), bands, depth=3, base_filters=16, batch_norm=True)
    out.mkdir(parents=True)
    model.save(out / "model.keras")
    ModelInfo(
        bands=bands,
        image_dtype=dtype,
        mean=tuple(mean),
        std=tuple(std),
        class_names=CLASSES,
        class_colors=COLORS,
        output_stride=output_stride("unet", depth=3, base_filters=16),
        tile_size=64,
        architecture="unet",
    ).save(out)
    return out


def _synthetic(path: Path, size: int) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    small = rng.normal(size=(4, size // 32 + 2, size // 32 + 2))
    from scipy.ndimage import zoom

    img = np.stack([zoom(b, 32, order=3)[:size, :size] for b in small])
    img = np.clip(1000 + 300 * img + rng.normal(0, 30, img.shape), 0, 65535).astype(np.uint16)
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=from_origin(5e5, 5e6, 10, 10),
        tiled=True,
        blockxsize=512,
        blockysize=512,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(img)
    return path


def _stats(path: Path) -> tuple[list[float], list[float], str, int]:
    import rasterio

    with rasterio.open(path) as ds:
        x = ds.read().reshape(ds.count, -1).astype(np.float64)
        return list(x.mean(1)), list(x.std(1) + 1e-6), ds.dtypes[0], ds.count


SETTINGS = {
    "none": {"refine": "none"},
    "crf": {"refine": "crf"},
    "crf wide": {"refine": "crf", "crf": {"bilateral_sxy": 30, "iterations": 10}},
    "slic": {"refine": "slic"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="side of the synthetic scene, px")
    ap.add_argument("--repeats", type=int, default=2)
    _env.add_arguments(ap)
    args = ap.parse_args(argv)
    run = _env.Run(args)
    if run.smoke:
        args.size, args.repeats = 128, 1

    from reseg import demo
    from reseg.components.predictor import predict_scene
    from reseg.config import PredictConfig
    from reseg.serving import load_backend

    results: dict = {"size": args.size, "repeats": args.repeats, "scenes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-refine-") as t:
        tmp = Path(t)
        scenes = {
            "landsat": None if run.smoke else demo.fetch_landsat() / "landsat_multiband.tif",
            "synthetic": _synthetic(tmp / "synthetic.tif", args.size),
        }
        scenes = {k: v for k, v in scenes.items() if v is not None}
        for name, image in scenes.items():
            mean, std, dtype, bands = _stats(image)
            backend = load_backend(_model(tmp / name / "model", bands, mean, std, dtype))
            best: dict[str, float] = {}
            mp = _megapixels(image)
            warm = PredictConfig(progress=False, preview=False, jit_compile=False)
            predict_scene(backend, image, tmp / name / "warm-up", warm)  # traces the model
            for rep in range(args.repeats):
                for label, over in SETTINGS.items():
                    cfg = PredictConfig.model_validate(
                        {"progress": False, "preview": False, "jit_compile": False, **over}
                    )
                    t0 = time.perf_counter()
                    r = predict_scene(backend, image, tmp / name / f"{label}{rep}", cfg)
                    s = time.perf_counter() - t0
                    best[label] = min(best.get(label, float("inf")), s)
                    assert r.stats["tiles"] >= 1
                    print(f"{name:<10} {label:<9} {s:7.2f} s", flush=True)
            plain = best["none"]
            results["scenes"][name] = {
                "megapixels": mp,
                "rows": {
                    label: {
                        "seconds": s,
                        "s_per_mp": s / mp,
                        "ratio_to_plain": s / plain,
                        "refine_s_per_mp": (s - plain) / mp,
                    }
                    for label, s in best.items()
                },
            }
    _table(results)
    run.write("refine.json", results)
    return 0


def _megapixels(path: Path) -> float:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.height * ds.width / 1e6


def _table(results: dict) -> None:
    print(
        f"\n{'scene':<10} {'MP':>5} {'refine':<9} {'s':>7} {'s/MP':>7} {'× plain':>8} "
        f"{'refine s/MP':>11}"
    )
    for name, sc in results["scenes"].items():
        for label, r in sc["rows"].items():
            print(
                f"{name:<10} {sc['megapixels']:5.2f} {label:<9} {r['seconds']:7.2f} "
                f"{r['s_per_mp']:7.2f} {r['ratio_to_plain']:8.2f} {r['refine_s_per_mp']:11.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
