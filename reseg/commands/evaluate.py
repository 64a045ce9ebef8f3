"""`reseg evaluate CONFIG --root DIR [--round r|merged] [--fold F]`."""

import argparse

from reseg.commands._common import add_config_and_root, add_round_and_fold, context, round_of
from reseg.layout import fold_name
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    add_round_and_fold(parser, merged=True)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    r = round_of(args, merged=True)
    for k in ctx.folds(args.fold, allow_full=False):
        m = steps.evaluate(ctx, r, k)
        title = f"{'merged' if r == steps.MERGED else f'round {r}'} {fold_name(k)}"
        print(
            f"{title}: mIoU {m.mean_iou:.4f}  OA {m.overall_accuracy:.4f}  kappa {m.kappa:.4f}  ({m.path})"
        )
        for name, pc in m.per_class.items():
            iou = "–" if pc["iou"] is None else f"{pc['iou']:.4f}"
            f1 = "–" if pc["f1"] is None else f"{pc['f1']:.4f}"
            print(f"  {name:>16}: IoU {iou}  F1 {f1}  support {pc['support']}")
    return 0
