"""`reseg tune-refine CONFIG --root DIR [--fold F] [--source S]`: CRF and SLIC tuned on the
validation pixels of each fold's models (`predict.tune`'s grid), into `<root>/refine/fold<k>`.

Prints the table of the settings tried (validation mIoU and OA), the best setting of
each method, whether it beats no refinement, and the held-out (evaluation fold)
mIoU of no refinement and of each best setting.
"""

import argparse

from reseg.commands._common import add_config_and_root, add_fold, writing
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    add_fold(parser)
    parser.add_argument(
        "--source",
        default=None,
        help="the models tuned for: merged, last or r<k> (default the config's export.source)",
    )


def run(args: argparse.Namespace) -> int:
    with writing(args) as ctx:
        for k in ctx.folds(args.fold, allow_full=False):
            tuning = steps.tune_refine(ctx, k, args.source)
            print(steps.refine_table(tuning.record))
            print(f"-> {tuning.path}")
        return 0
