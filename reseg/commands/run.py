"""`reseg run CONFIG --root DIR [--steps a,b] [--seed N] [-- BEAM_OPTIONS]`: the whole pipeline,
resumable. `--seed` overrides `train.seed` (one training run of a study cell per seed)."""

import argparse

from reseg.commands._common import add_config_and_root, add_seed, beam_args, load
from reseg.errors import ConfigError
from reseg.pipeline import STEPS, run_pipeline
from reseg.pipeline.run import step_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)
    add_seed(parser)
    parser.add_argument(
        "--steps",
        help=f"comma-separated steps to run, in pipeline order (default all: {','.join(STEPS)})",
    )


def _steps(text: str | None) -> list[str] | None:
    if text is None:
        return None
    try:
        return step_names(text.split(","))
    except ConfigError as e:
        raise ConfigError(f"--{e}") from None


def run(args: argparse.Namespace) -> int:
    steps = _steps(args.steps)
    cfg = load(args)
    run_pipeline(cfg, args.root, beam_args(args), steps=steps, wait=args.wait)
    print(f"pipeline outputs: {args.root}")
    return 0
