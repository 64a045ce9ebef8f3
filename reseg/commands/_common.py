"""Arguments shared by the step commands: `CONFIG --root DIR [--round r] [--fold F] [-- beam]`.

Every step command builds a `reseg.pipeline.steps.Context` and calls the step
functions, exactly as `reseg run` does. Nothing is created before the inputs are
checked: a user error leaves no `--root` behind.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from reseg import storage
from reseg.config import Config, load_config
from reseg.errors import ConfigError
from reseg.layout import FULL
from reseg.pipeline import run as pipeline_run
from reseg.pipeline.steps import MERGED, Context

FOLD_HELP = (
    f"k (fold k), 'all' (every fold in turn) or '{FULL}' (the models trained on every tile); "
    "default the config's rounds.folds"
)


def add_config_and_root(parser: argparse.ArgumentParser, beam: bool = False) -> None:
    parser.add_argument("config", metavar="CONFIG", help="YAML configuration file")
    parser.add_argument(
        "--root",
        required=True,
        type=storage.argument,
        help="pipeline root: a local folder, s3://bucket/prefix or gs://bucket/prefix",
    )
    add_wait(parser)
    if beam:
        parser.add_argument(
            "beam_args",
            nargs="*",
            metavar="BEAM_OPTION",
            help="Beam pipeline options after `--`, e.g. -- --runner=DataflowRunner --setup_file=./setup.py",
        )


def add_wait(parser: argparse.ArgumentParser, what: str = "root") -> None:
    parser.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=float("inf"),
        default=0.0,
        metavar="SECONDS",
        help=f"when another run writes the {what}, wait for it (at most SECONDS) instead of "
        "stopping with a line naming it",
    )


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="override train.seed (weights initialisation, shuffling, augmentation): another "
        "training run; the folds stay those of tiling.seed",
    )


def add_round_and_fold(parser: argparse.ArgumentParser, merged: bool = False) -> None:
    parser.add_argument(
        "--round",
        default="0",
        help="round r" + (f" or '{MERGED}'" if merged else "") + " (default 0)",
    )
    add_fold(parser)


def add_fold(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fold", default=None, help=FOLD_HELP)


def load(args: argparse.Namespace) -> Config:
    """The config of `args.config` (with `--seed`, where the command has it), after checking
    that `--root` can be a folder."""
    cfg = load_config(args.config).with_seed(getattr(args, "seed", None))
    pipeline_run.check_root(args.root)
    return cfg


def context(args: argparse.Namespace, cfg: Config | None = None) -> Context:
    """The steps' context of a command: config, root and Beam options."""
    cfg = cfg if cfg is not None else load(args)
    return Context(cfg, args.root, tuple(beam_args(args)))


@contextmanager
def writing(args: argparse.Namespace, cfg: Config | None = None) -> Iterator[Context]:
    """`context(args)` with the root's lease held (`--wait` waits for another writer)."""
    ctx = context(args, cfg)
    with pipeline_run.hold_root(ctx.root, args.wait):
        yield ctx


def beam_args(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "beam_args", []) or [])


def round_of(args: argparse.Namespace, merged: bool = False) -> int | str:
    """`--round` as a round number (or `merged` where allowed)."""
    if merged and args.round == MERGED:
        return MERGED
    try:
        r = int(args.round)
    except ValueError:
        r = -1
    if r < 0:
        extra = f" or '{MERGED}'" if merged else ""
        raise ConfigError(f"--round must be a non-negative integer{extra}, received {args.round!r}")
    return r
