"""`reseg train CONFIG --root DIR [--fold k|all|none] [--round r]`.

Trains `model.name` of the config on the tiles of `<root>/tiles`:

- `--fold k`: train on the tiles of the other folds, validate on fold k's cores;
- `--fold all`: every fold in turn (one nested MLflow run per fold);
- `--fold none` (default): train on every tile, no validation (`rounds/r<r>/all`).

With `--round r > 0` the training reads the previous round's selection
(`rounds/r<r-1>/<fold>/selection`, tiles with per-pixel weights) when it exists,
unless `--tiles` names other TFRecords. Multi-worker training: start the same
command on every worker with its own `TF_CONFIG`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from reseg.commands._common import add_config_and_root, load
from reseg.errors import ConfigError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    parser.add_argument(
        "--fold",
        default="none",
        help="validation fold k, 'all' (every fold in turn) or 'none' (all tiles, no validation; default)",
    )
    parser.add_argument("--round", type=int, default=0, help="confidence round r (default 0)")
    parser.add_argument(
        "--tiles",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="TFRecord files or folders to train on (default: the tiles, or the previous round's selection)",
    )
    parser.add_argument(
        "--init-model",
        type=Path,
        metavar="MODEL",
        help="model directory or .keras file to fine-tune",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default sqlite:///<root>/mlflow.db)",
    )
    parser.add_argument("--epochs", type=int, help="override train.epochs")


def _folds(value: str, k: int) -> list[int | None]:
    if value == "none":
        return [None]
    if value == "all":
        return list(range(k))
    try:
        fold = int(value)
    except ValueError:
        raise ConfigError(
            f"--fold must be a fold number, 'all' or 'none'; received {value!r}"
        ) from None
    if not 0 <= fold < k:
        raise ConfigError(f"--fold must be in 0..{k - 1} (tiling.folds), received {fold}")
    return [fold]


def run(args: argparse.Namespace) -> int:
    from reseg import layout, tracking
    from reseg.artifacts import TileSet
    from reseg.components.trainer import train

    cfg = load(args)
    updates = {}
    if args.tracking_uri:
        updates["tracking"] = cfg.tracking.model_copy(update={"uri": args.tracking_uri})
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, received {args.epochs}")
        updates["train"] = cfg.train.model_copy(update={"epochs": args.epochs})
    if args.round < 0:
        raise ConfigError(f"--round must be >= 0, received {args.round}")
    cfg = cfg.model_copy(update=updates)
    folds = _folds(args.fold, TileSet.load(layout.tiles_dir(args.root)).folds)

    def one(fold: int | None, run: tracking.Run | None) -> Path:
        tiles = args.tiles
        if tiles is None and args.round > 0:
            selection = layout.selection_dir(args.root, args.round - 1, fold)
            if selection.is_dir():
                log.info("training on the selection of round %d: %s", args.round - 1, selection)
                tiles = [selection]
        return train(
            cfg,
            args.root,
            fold=fold,
            round=args.round,
            tile_files=tiles,
            init_model=args.init_model,
            tracking=run,
        )

    if len(folds) == 1:
        out = one(folds[0], None)
        print(f"model: {out}")
        return 0
    # --fold all: one parent run, a nested run per fold
    from reseg.components.trainer.distribute import get_cluster

    cluster = get_cluster(cfg.train.distribute)
    parent = (
        tracking.open_run(
            cfg, args.root, run_name=f"train r{args.round} all folds", tags={"reseg.step": "train"}
        )
        if cluster.is_chief
        else _null()
    )
    with parent as p:
        for fold in folds:
            with p.nested(
                f"train r{args.round} fold{fold}", tags={"reseg.fold": f"fold{fold}"}
            ) as run:
                out = one(fold, run)
            print(f"model: {out}")
    return 0


def _null():
    import contextlib

    from reseg.tracking import NULL_RUN

    return contextlib.nullcontext(NULL_RUN)
