"""Arguments shared by the step commands: `CONFIG --root DIR [-- beam options]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseg.config import Config, load_config


def add_config_and_root(parser: argparse.ArgumentParser, beam: bool = False) -> None:
    parser.add_argument("config", metavar="CONFIG", help="YAML configuration file")
    parser.add_argument(
        "--root", required=True, type=Path, help="pipeline root directory (artifacts)"
    )
    if beam:
        parser.add_argument(
            "beam_args",
            nargs="*",
            metavar="BEAM_OPTION",
            help="Beam pipeline options after `--`, e.g. -- --runner=DataflowRunner --setup_file=./setup.py",
        )


def load(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    args.root.mkdir(parents=True, exist_ok=True)
    return cfg


def beam_args(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "beam_args", []) or [])


def add_round_and_fold(parser: argparse.ArgumentParser, merged: bool = False) -> None:
    parser.add_argument(
        "--round",
        default="0",
        help="round r" + (" or 'merged'" if merged else "") + " (default 0)",
    )
    parser.add_argument(
        "--fold", default=None, help="validation fold k or 'all' (default: rounds.folds)"
    )


def folds_of(args: argparse.Namespace, cfg: Config) -> list[int]:
    """The folds named by --fold (default the config's rounds.folds)."""
    from reseg.artifacts import TileSet
    from reseg.errors import ConfigError
    from reseg.layout import tiles_dir

    k = TileSet.load(tiles_dir(args.root)).folds
    if args.fold is None:
        return cfg.rounds.fold_list(k)
    if args.fold == "all":
        return list(range(k))
    try:
        fold = int(args.fold)
    except ValueError:
        raise ConfigError(f"--fold must be an integer or 'all', received {args.fold!r}") from None
    if not 0 <= fold < k:
        raise ConfigError(f"--fold must be in 0..{k - 1}, received {fold}")
    return [fold]


def round_of(args: argparse.Namespace) -> int:
    from reseg.errors import ConfigError

    try:
        r = int(args.round)
    except ValueError:
        raise ConfigError(
            f"--round must be a non-negative integer, received {args.round!r}"
        ) from None
    if r < 0:
        raise ConfigError(f"--round must be a non-negative integer, received {r}")
    return r
