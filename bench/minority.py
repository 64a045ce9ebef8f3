"""Do the `train` defaults learn a minority class? Old defaults against the new ones.

A new user writes a config from the README and keeps the `train` section's defaults.
This trains that way on

- `synthetic`: a seeded 2-class scene (3 x uint8 bands, 384 x 384, 10 m, EPSG:32632)
  whose foreground is ~4% of the pixels: small "buildings" (rectangles of 4-12 px)
  and thin "roads" (2-3 px lines), a little brighter in band 1 and darker in band 3
  than the textured background (contrast about one noise standard deviation);
- `potsdam` (and `vaihingen`, `--datasets`): an ISPRS 512 x 512 sample of
  `../shared/data` with the example configs' tiling (128 px tiles, 4 folds), where
  `car` is 3.3% of the labelled pixels (Vaihingen: `tree` 2.0%, `car` 1.7%);

with the `train` section's defaults (batch 8, adam 1e-3, 10 epochs on the synthetic
scene; 30 on the ISPRS crop, where 10 epochs are 30 steps and no variant learns
anything), a small U-Net (depth 3, base 16), on validation fold 0 of 4, per variant
and seed:

    old              loss crossentropy, class_weights none   (the defaults before issue 15)
    isqrt            loss crossentropy, class_weights inverse_sqrt
    inverse          loss crossentropy, class_weights inverse
    ce+dice          loss crossentropy+dice, class_weights none
    ce+dice+isqrt    loss crossentropy+dice, class_weights inverse_sqrt
    ce+dice+inverse  loss crossentropy+dice, class_weights inverse
    new              the defaults now (`TrainConfig()`: auto, auto)

and reports the validation IoU per class at the saved (best) epoch, averaged over
seeds; "minority" is the mean IoU of the classes under 5% of the labelled pixels,
"others" that of the classes above. A small experiment on one crop each, not a
result about these data sets: it shows whether a class is learnt at all.

    python bench/minority.py [--seeds 2] [--variants old,isqrt,inverse,new]
        [--datasets synthetic,potsdam] [--isprs-epochs 30] [--isprs-seeds 2]
        [--isprs-variants old,new]

About 5 minutes of CPU (synthetic: 8 trainings of ~15 s; Potsdam: 4 of ~80 s);
`--datasets vaihingen` adds Vaihingen's entry in about as long again.

Prints a table and writes bench/results/minority.json (the entries of datasets not run
this time are kept from the file). `--smoke`: the synthetic scene, variants old and new,
one seed, one epoch (seconds; checks that it runs).
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
import _env  # noqa: E402
from refine import shared_data  # noqa: E402  (bench/ is on the path: one lookup of the samples)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MINORITY_SHARE = 0.05
"""A class with pixels but under this share of the labelled pixels counts as a minority class."""
VARIANTS = {
    "old": {"loss": "crossentropy", "class_weights": "none"},
    "isqrt": {"loss": "crossentropy", "class_weights": "inverse_sqrt"},
    "ce+dice": {"loss": "crossentropy+dice", "class_weights": "none"},
    "ce+dice+isqrt": {"loss": "crossentropy+dice", "class_weights": "inverse_sqrt"},
    "inverse": {"loss": "crossentropy", "class_weights": "inverse"},
    "ce+dice+inverse": {"loss": "crossentropy+dice", "class_weights": "inverse"},
    "new": {},
}
ISPRS_CLASSES = [
    {"name": "impervious", "color": "#ffffff"},
    {"name": "building", "color": "#0000ff"},
    {"name": "low_vegetation", "color": "#00ffff"},
    {"name": "tree", "color": "#00ff00"},
    {"name": "car", "color": "#ffff00"},
    {"name": "clutter", "color": "#ff0000"},
]
ISPRS = {
    "potsdam": "2_10_0_0_512_512.png",
    "vaihingen": "area1_0_0_512_512.png",
}


def synthetic_scene(directory: Path, size: int = 384, seed: int = 0) -> tuple[Path, Path, float]:
    """Write image.tif and labels.tif (EPSG:32632, 10 m); returns their paths and the fg share."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)
    target = 0.04 * size * size
    while label.sum() < 0.6 * target:  # buildings: rectangles of 4-12 px
        h, w = rng.integers(4, 13, 2)
        r, c = rng.integers(0, size - h), rng.integers(0, size - w)
        label[r : r + h, c : c + w] = 1
    while label.sum() < target:  # roads: straight lines 2-3 px wide
        width = int(rng.integers(2, 4))
        pos, a, b = rng.integers(0, size - width), *sorted(rng.integers(0, size, 2))
        if rng.random() < 0.5:
            label[pos : pos + width, a:b] = 1
        else:
            label[a:b, pos : pos + width] = 1
    coarse = rng.normal(0, 1, (3, size // 16 + 1, size // 16 + 1))
    texture = np.kron(coarse, np.ones((16, 16)))[:, :size, :size] * 12
    noise = rng.normal(0, 14, (3, size, size))
    signal = np.array([14.0, 0.0, -14.0])[:, None, None] * label[None]
    image = np.clip(110 + texture + noise + signal, 0, 255).astype(np.uint8)
    profile = {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "crs": "EPSG:32632",
        "transform": from_origin(500_000.0, 6_200_000.0, 10.0, 10.0),
    }
    img, lab = directory / "image.tif", directory / "labels.tif"
    with rasterio.open(img, "w", count=3, dtype="uint8", **profile) as ds:
        ds.write(image)
    with rasterio.open(lab, "w", count=1, dtype="uint8", **profile) as ds:
        ds.write(label[None])
    return img, lab, float(label.mean())


def base_config(name: str, work: Path) -> dict:
    """The config of a dataset, without its `train` section."""
    beam = {"args": ["--direct_num_workers=1", "--direct_running_mode=in_memory"]}
    model = {"name": "unet", "params": {"depth": 3, "base_filters": 16}}
    if name == "synthetic":
        img, lab, share = synthetic_scene(work)
        print(f"synthetic scene: foreground {100 * share:.1f}% of the pixels")
        data = {
            "scenes": [{"id": "synthetic", "image": str(img), "labels": str(lab)}],
            "classes": [
                {"name": "background", "color": "#cccccc"},
                {"name": "foreground", "color": "#e31a1c"},
            ],
        }
        tiling = {"tile_size": 64, "overlap": 16, "folds": 4, "block_size": 96, "shard_rows": 2}
    else:
        root = shared_data() / name
        data = {
            "scenes": [
                {
                    "id": name,
                    "image": str(root / "img_dir" / ISPRS[name]),
                    "labels": str(root / "ann_dir" / ISPRS[name]),
                }
            ],
            "classes": ISPRS_CLASSES,
            "label_values": {0: None, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5},
        }
        tiling = {"tile_size": 128, "overlap": 32, "folds": 4, "block_size": 192, "shard_rows": 2}
    raw = {
        "name": f"minority-{name}",
        "data": data,
        "tiling": tiling,
        "model": model,
        "rounds": {"folds": [0]},
        "tracking": {"enabled": False},
        "beam": beam,
    }
    return raw


def run_variant(raw: dict, root: Path, variant: str, seed: int, epochs: int | None) -> dict:
    """Train one variant on fold 0 of `root` (tiles and stats shared); IoU per class at the best epoch."""
    from reseg import artifacts, layout
    from reseg.components.trainer import train
    from reseg.config import parse_config

    train_cfg = {**VARIANTS[variant], "seed": seed, "progress": "log"}
    if epochs is not None:
        train_cfg["epochs"] = epochs
    cfg = parse_config({**raw, "train": train_cfg})
    run_root = root / f"{variant}-s{seed}"
    run_root.mkdir()
    tiles = artifacts.TileSet.load(layout.tiles_dir(root))
    stats = artifacts.Stats.load(layout.stats_dir(root))
    t0 = time.perf_counter()
    model_dir = train(cfg, tiles, stats, layout.model_dir(run_root, 0, 0), fold=0)
    seconds = time.perf_counter() - t0
    history = json.loads((model_dir / "history.json").read_text())
    best = max(history, key=lambda h: -1.0 if h["val_miou"] is None else h["val_miou"])
    names = [c.name for c in cfg.data.classes]
    return {
        "variant": variant,
        "seed": seed,
        "loss": cfg.train.loss,
        "class_weights": cfg.train.class_weights,
        "best_epoch": best["epoch"],
        "val_miou": best["val_miou"],
        "val_iou": dict(zip(names, best["val_iou"], strict=True)),
        "seconds": round(seconds, 1),
    }


def summarise(runs: list[dict], minority: list[str], majority: list[str]) -> dict:
    """Mean over seeds of every class's IoU (None: class absent from the fold), of mIoU and
    of the minority and the other classes' IoU (classes with validation pixels only)."""
    names = list(runs[0]["val_iou"])

    def mean(values) -> float | None:
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    per_class = {n: mean([r["val_iou"][n] for r in runs]) for n in names}
    return {
        "runs": len(runs),
        "miou": mean([r["val_miou"] for r in runs]),
        "minority_iou": mean([per_class[n] for n in minority]),
        "majority_iou": mean([per_class[n] for n in majority]),
        "per_class": per_class,
        "seconds": mean([r["seconds"] for r in runs]),
    }


def class_groups(cfg, stats) -> dict:
    """Pixel shares, validation (fold 0) pixels, minority and other classes of a tiled dataset.

    Minority: under `MINORITY_SHARE` of the labelled pixels; others: above. Only classes
    with validation pixels count (a class absent from fold 0 has no IoU to learn).
    """
    names = [c.name for c in cfg.data.classes]
    pixels = np.asarray(stats.class_pixels, np.float64)
    shares = dict(zip(names, (pixels / pixels.sum()).tolist(), strict=True))
    val = dict(zip(names, map(int, stats.class_pixels_per_fold[0]), strict=True))
    return {
        "class_share": shares,
        "val_pixels": val,
        "minority": [c for c, f in shares.items() if 0 < f < MINORITY_SHARE and val[c] > 0],
        "majority": [c for c, f in shares.items() if f >= MINORITY_SHARE and val[c] > 0],
    }


def main(argv: list[str] | None = None) -> int:
    # long: the benchmark's procedure in the order it runs
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="seeds per variant (0, 1, ...)")
    ap.add_argument("--variants", default="old,isqrt,inverse,new", help="of " + ",".join(VARIANTS))
    ap.add_argument("--isprs-seeds", type=int, default=2, help="seeds on the ISPRS crops")
    ap.add_argument(
        "--resummarise",
        action="store_true",
        help="recompute the summaries of the results file from its runs (tiles and stats only)",
    )
    ap.add_argument(
        "--isprs-variants", default="old,inverse,new", help="variants on the ISPRS crops"
    )
    ap.add_argument(
        "--datasets", default="synthetic,potsdam", help="of synthetic, potsdam, vaihingen"
    )
    ap.add_argument(
        "--isprs-epochs",
        type=int,
        default=30,
        help="epochs on the ISPRS crops (the default 10 are 30 steps there: nothing is learnt)",
    )
    _env.add_arguments(ap)
    args = ap.parse_args(argv)
    run = _env.Run(args)
    if run.smoke:
        args.datasets, args.variants, args.seeds = "synthetic", "old,new", 1
    results_file = run.path("minority.json")
    import logging

    from reseg import quiet

    quiet.configure(verbose=False)  # reseg's warnings (a class not learnt) and nothing else
    logging.getLogger().setLevel(logging.WARNING)
    from reseg import layout
    from reseg.components.statistics import compute_stats
    from reseg.components.tiling import tile
    from reseg.config import TrainConfig, parse_config

    defaults = TrainConfig()
    print(f"defaults now: loss {defaults.loss}, class_weights {defaults.class_weights}")
    variants = {"synthetic": args.variants.split(",")}
    datasets = args.datasets.split(",")
    results: dict = {
        "defaults": {"loss": defaults.loss, "class_weights": defaults.class_weights},
        "variants": VARIANTS,
        "datasets": {},
    }
    with tempfile.TemporaryDirectory(prefix="reseg-minority-") as tmp:
        for name in datasets:
            work = Path(tmp) / name
            work.mkdir()
            raw = base_config(name, work)
            cfg = parse_config(raw)
            tiles = tile(cfg.data, cfg.tiling, layout.tiles_dir(work), cfg.beam.args)
            stats = compute_stats(tiles, layout.stats_dir(work), cfg.beam.args)
            groups = class_groups(cfg, stats)
            minority, majority = groups["minority"], groups["majority"]
            if args.resummarise:
                entry = json.loads(results_file.read_text())["datasets"][name]
                entry.update(groups)
                for v, old in entry["variants"].items():
                    runs = old["per_run"]
                    entry["variants"][v] = {**summarise(runs, minority, majority), "per_run": runs}
                results["datasets"][name] = entry
                continue
            entry: dict = {
                "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "epochs": (1 if run.smoke else TrainConfig().epochs)
                if name == "synthetic"
                else args.isprs_epochs,
                **groups,
                "variants": {},
            }
            synthetic = name == "synthetic"
            epochs = (1 if run.smoke else None) if synthetic else args.isprs_epochs
            seeds = args.seeds if synthetic else args.isprs_seeds
            entry["seeds"] = seeds
            for v in variants.get(name, args.isprs_variants.split(",")):
                runs = [run_variant(raw, work, v, s, epochs) for s in range(seeds)]
                entry["variants"][v] = {**summarise(runs, minority, majority), "per_run": runs}
                s = entry["variants"][v]
                print(
                    f"{name:10s} {v:14s} mIoU {_f(s['miou'])}  minority IoU {_f(s['minority_iou'])}  "
                    f"others {_f(s['majority_iou'])}  ({s['seconds']:.0f} s per run)",
                    flush=True,
                )
            results["datasets"][name] = entry
    if results_file.exists():  # keep the other datasets' entries of an earlier run
        earlier = json.loads(results_file.read_text()).get("datasets", {})
        results["datasets"] = {**earlier, **results["datasets"]}
    print_table(results)
    run.write("minority.json", results)
    return 0


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def print_table(results: dict) -> None:
    print()
    for name, entry in results["datasets"].items():
        classes = list(entry["class_share"])
        shares = " ".join(f"{c} {100 * entry['class_share'][c]:.1f}%" for c in classes)
        print(
            f"{name}, {entry['epochs']} epochs, {entry['seeds']} seed(s) (validation fold 0; "
            f"pixel shares: {shares}; n/a: no pixels in fold 0)"
        )
        print(f"| variant | mIoU | minority IoU | other IoU | {' | '.join(classes)} |")
        print("|---|---|---|---|" + "---|" * len(classes))
        for v, s in entry["variants"].items():
            cells = " | ".join(
                "n/a" if entry["val_pixels"][c] == 0 else _f(s["per_class"][c]) for c in classes
            )
            print(
                f"| {v} | {_f(s['miou'])} | {_f(s['minority_iou'])} | {_f(s['majority_iou'])} | {cells} |"
            )
        print()


if __name__ == "__main__":
    sys.exit(main())
