"""`reseg export CONFIG --root DIR [--round r|merged|last] [--fold k|all]`: a SavedModel for TF Serving.

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

from reseg.commands._common import add_config_and_root, load


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
        help="fold k whose models to export, or 'all' for the models trained on every tile "
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


def _fold(value: str | None):
    from reseg.errors import ConfigError

    if value is None or value == "all":
        return value
    if value == "none":  # `reseg train --fold none` writes the models trained on every tile
        return "all"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--fold must be a fold number or 'all'; received {value!r}") from None


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from reseg.components.exporter import export, export_info
    from reseg.errors import ConfigError

    cfg = load(args)
    over = {
        k: v
        for k, v in (("model_name", args.name), ("validation", args.validation))
        if v is not None
    }
    if over:
        try:
            section = cfg.export.model_validate({**cfg.export.model_dump(), **over})
        except ValidationError as e:
            raise ConfigError(f"--name: {e.errors()[0]['msg']} (received {args.name!r})") from None
        cfg = cfg.model_copy(update={"export": section})
    if args.tracking_uri:
        cfg = cfg.model_copy(
            update={"tracking": cfg.tracking.model_copy(update={"uri": args.tracking_uri})}
        )
    source = args.source
    if source is not None and source.isdigit():
        source = int(source)
    final = export(cfg, args.root, source, _fold(args.fold))
    m = export_info(final)
    reg = m.get("registry_version")
    print(
        f"exported {m['source']} of fold {m['fold']} ({m['method']} of {len(m['members'])} "
        f"model{'s' * (len(m['members']) > 1)}) as {cfg.export.model_name} version {final.name}: {final}"
        + (f"; registered as version {reg}" if reg is not None else ""),
        file=sys.stdout,
    )
    return 0
