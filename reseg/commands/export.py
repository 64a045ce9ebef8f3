"""`reseg export CONFIG --root DIR [--round r|merged|last] [--fold k|full]`: a SavedModel for TF Serving.

Writes `<root>/export/<model_name>/<version>/` (the next version number), checked in a
fresh process before it is published, logged to MLflow and registered there under
the same version number. Serve it with

    docker run -p 8501:8501 \\
      --mount type=bind,source=$PWD/<root>/export/<model_name>,target=/models/<model_name> \\
      -e MODEL_NAME=<model_name> -t tensorflow/serving
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from reseg.commands._common import add_config_and_root, writing
from reseg.errors import ConfigError
from reseg.layout import FULL
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    parser.add_argument(
        "--round",
        dest="source",
        default=None,
        help="what to export: a round r, 'last' or 'merged' (default: export.source, 'merged')",
    )
    parser.add_argument(
        "--fold",
        default=None,
        help="fold k whose models to export, or 'full' for the models trained on every tile "
        "(default: export.fold, else the first of rounds.folds)",
    )
    parser.add_argument("--name", help="TF Serving model name (default: export.model_name)")
    parser.add_argument(
        "--no-validate",
        dest="validation",
        action="store_false",
        default=None,
        help="publish without the fresh-process check (not recommended)",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default sqlite:///<root>/mlflow.db)",
    )


def _fold(ctx, value: str | None):
    """`--fold`: absent = export.fold or the first of rounds.folds; k; or `full`."""
    if value is None:
        return steps.DEFAULT_FOLD
    folds = ctx.folds(value)
    if len(folds) != 1:
        raise ConfigError(f"--fold: export takes one fold (k or '{FULL}'), received {value!r}")
    return folds[0]


def run(args: argparse.Namespace) -> int:
    with writing(args) as ctx:
        cfg = ctx.cfg
        over = {
            k: v
            for k, v in (("model_name", args.name), ("validation", args.validation))
            if v is not None
        }
        if over:
            try:
                section = cfg.export.model_validate({**cfg.export.model_dump(), **over})
            except ValidationError as e:
                raise ConfigError(
                    f"--name: {e.errors()[0]['msg']} (received {args.name!r})"
                ) from None
            cfg = cfg.model_copy(update={"export": section})
        if args.tracking_uri:
            cfg = cfg.model_copy(
                update={"tracking": cfg.tracking.model_copy(update={"uri": args.tracking_uri})}
            )
        ctx = steps.Context(cfg, ctx.root)
        source = args.source
        if source is not None and source.isdigit():
            source = int(source)
        final = steps.export(ctx, source, _fold(ctx, args.fold))
        m = steps.export_info(final.path)
        reg = m.get("registry_version")
        print(
            f"exported {m['source']} of fold {m['fold']} ({m['method']} of {len(m['members'])} "
            f"model{'s' * (len(m['members']) > 1)}) as {cfg.export.model_name} version {final.version}: {final.path}"
            + (f"; registered as version {reg}" if reg is not None else ""),
            file=sys.stdout,
        )
        return 0
