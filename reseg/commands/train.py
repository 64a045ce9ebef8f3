"""`reseg train CONFIG --root DIR [--fold F] [--round r]`: round r's model, as `reseg run` trains it.

Round 0 trains `model` on the tiles of the folds other than k; round r >= 1 trains on
round r - 1's selection, fine-tuning round r - 1's model (`rounds.init`) for
`rounds.epochs` (see `reseg.pipeline.steps`). `--fold`: k, `all` (every fold in
turn, one nested MLflow run per fold), `full` (every tile, nothing held out) or,
by default, the config's `rounds.folds`. `--tiles`, `--init-model` and `--epochs`
override the round's inputs (a different model, with its own fingerprint).
Multi-worker training: start the same command on every worker with its own `TF_CONFIG`.
"""

from __future__ import annotations

import argparse
import contextlib

from reseg import storage
from reseg.commands._common import (
    add_config_and_root,
    add_round_and_fold,
    add_seed,
    context,
    round_of,
)
from reseg.errors import ConfigError
from reseg.pipeline import steps
from reseg.pipeline.run import hold_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    add_round_and_fold(parser)
    add_seed(parser)
    parser.add_argument(
        "--tiles",
        nargs="+",
        type=storage.argument,
        metavar="PATH",
        help="TFRecord files or folders to train on (default: the tiles, or the previous round's selection)",
    )
    parser.add_argument(
        "--init-model",
        type=storage.argument,
        metavar="MODEL",
        help="model directory or .keras file to fine-tune (default: rounds.init)",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default sqlite:///<root>/mlflow.db)",
    )
    parser.add_argument("--epochs", type=int, help="override train.epochs")


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    # the workers of a multi-worker training write into the chief's root: the chief holds it
    chief = steps.is_chief(ctx.cfg)
    with hold_root(ctx.root, args.wait) if chief else contextlib.nullcontext():
        return _train(args, ctx, chief)


def _train(args: argparse.Namespace, ctx: steps.Context, chief: bool) -> int:
    cfg = ctx.cfg
    updates = {}
    if args.tracking_uri:
        updates["tracking"] = cfg.tracking.model_copy(update={"uri": args.tracking_uri})
    if args.epochs is not None:
        if args.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, received {args.epochs}")
        field = "rounds" if round_of(args) > 0 and cfg.rounds.epochs is not None else "train"
        section = getattr(cfg, field).model_copy(update={"epochs": args.epochs})
        updates[field] = section
    r = round_of(args)
    ctx = steps.Context(cfg.model_copy(update=updates), ctx.root, ctx.beam_args)
    steps.train_folds(
        ctx,
        r,
        ctx.folds(args.fold),
        chief=chief,
        tile_files=args.tiles,
        init_model=args.init_model,
        done=lambda model: print(f"model: {model.path}"),
    )
    return 0
