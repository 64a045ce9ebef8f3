"""`reseg merge CONFIG --root DIR [--fold F] [-- BEAM_OPTIONS]`: merge the scored rounds."""

import argparse

from reseg import layout
from reseg.artifacts import Metrics
from reseg.commands._common import add_config_and_root, add_fold, writing
from reseg.commands.evaluate import fmt
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)
    add_fold(parser)


def run(args: argparse.Namespace) -> int:
    with writing(args) as ctx:
        for k in ctx.folds(args.fold, allow_full=False):
            merged = steps.merge(ctx, k)
            m = Metrics.load(layout.merged_eval_dir(ctx.root, k))
            rounds = steps.scored_rounds(ctx, k)
            print(
                f"merged rounds {rounds} of {layout.fold_name(k)} ({ctx.cfg.rounds.merge}): "
                f"mIoU {fmt(m.mean_iou)} -> {merged.path}"
            )
        return 0
