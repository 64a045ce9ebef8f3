"""`reseg score CONFIG --root DIR [--round r] [--fold F] [-- BEAM_OPTIONS]`."""

import argparse

from reseg.commands._common import add_config_and_root, add_round_and_fold, round_of, writing
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)
    add_round_and_fold(parser)


def run(args: argparse.Namespace) -> int:
    with writing(args) as ctx:
        r = round_of(args)
        for k in ctx.folds(args.fold):
            print(f"scores: {steps.score(ctx, r, k).path}")
        return 0
