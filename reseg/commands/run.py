"""`reseg run CONFIG --root DIR [-- BEAM_OPTIONS]`: the whole pipeline, resumable."""

import argparse

from reseg.commands._common import add_config_and_root, beam_args, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)


def run(args: argparse.Namespace) -> int:
    from reseg.pipeline import run_pipeline

    cfg = load(args)
    run_pipeline(cfg, args.root, beam_args(args))
    print(f"pipeline outputs: {args.root}")
    return 0
