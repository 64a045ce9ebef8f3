"""`reseg demo [--root DIR]`: the bundled Landsat example, end to end."""

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", type=Path, default=Path("runs/demo"), help="pipeline root (default runs/demo)"
    )


def run(args: argparse.Namespace) -> int:
    from reseg import demo
    from reseg.config import load_config
    from reseg.pipeline import run_pipeline

    data = demo.fetch_landsat()
    os.environ["RESEG_DEMO_DATA"] = str(data)
    cfg = load_config(demo.example_config())
    results = run_pipeline(cfg, args.root)
    tiles, stats = results["tile"], results["stats"]
    counts = tiles.manifest["counts"]
    print()
    print(f"demo scene: {data}")
    print(
        f"tiles:      {tiles.path}  ({counts['tiles']} tiles of {tiles.tile_size} px, tiles per fold {counts['tiles_per_fold']})"
    )
    print(
        f"statistics: {stats.path / 'stats.json'}  (class histogram: {stats.path / 'class_pixels.png'})"
    )
    return 0
