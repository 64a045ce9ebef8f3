"""`reseg demo [--root DIR]`: the bundled Landsat example, end to end."""

import argparse
import os

from reseg import demo, layout, storage
from reseg.config import load_config
from reseg.pipeline import run_pipeline
from reseg.report import collect, convention, round_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=storage.argument,
        default=storage.path("runs/demo"),
        help="pipeline root (default runs/demo; s3:// or gs:// too)",
    )


def run(args: argparse.Namespace) -> int:

    data = demo.fetch_landsat()
    os.environ["RESEG_DEMO_DATA"] = str(data)
    cfg = load_config(demo.example_config())
    results = run_pipeline(cfg, args.root)
    tiles = results["tile"]
    counts = tiles.manifest["counts"]
    root = args.root
    print()
    print(f"demo scene:  {data}")
    print(
        f"tiles:       {tiles.path}  ({counts['tiles']} tiles of {tiles.tile_size} px, per fold {counts['tiles_per_fold']})"
    )
    print(f"statistics:  {layout.stats_dir(root) / 'stats.json'}")
    for view in collect(root):
        print(
            f"\nconfidence rounds, evaluation {view.fold} "
            f"(top {cfg.rounds.selection.percent}% by {cfg.rounds.selection.score}):\n"
        )
        print(round_table(view))
        print(convention(view))
    for name, value in results.items():
        if name in ("predict", "export") and value:
            print(f"{name + ':':<12} {value}")
    print(f"\nreport:      {root / 'report' / 'report.html'}")
    print(f"MLflow:      mlflow ui --backend-store-uri {layout.tracking_uri(root)}")
    return 0
