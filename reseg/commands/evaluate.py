"""`reseg evaluate CONFIG --root DIR [--round r|merged] [--fold F]`.

Metrics of fold k's pixels (`eval/`, the reported figures) and, for a round, of its
validation fold's (`val/`, what merge weights and stopping rounds read)."""

import argparse

from reseg.commands._common import add_config_and_root, add_round_and_fold, round_of, writing
from reseg.layout import fold_name
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    add_round_and_fold(parser, merged=True)


def run(args: argparse.Namespace) -> int:
    with writing(args) as ctx:
        r = round_of(args, merged=True)
        for k in ctx.folds(args.fold, allow_full=False):
            m = steps.evaluate(ctx, r, k)
            title = f"{'merged' if r == steps.MERGED else f'round {r}'} {fold_name(k)}"
            print(
                f"{title}: mIoU {fmt(m.mean_iou)}  OA {fmt(m.overall_accuracy)}  "
                f"kappa {fmt(m.kappa)}  ({m.path})"
            )
            for name, pc in m.per_class.items():
                print(
                    f"  {name:>16}: IoU {fmt(pc['iou'])}  F1 {fmt(pc['f1'])}  support {pc['support']}"
                )
            absent = m.values.get("false_positives") or {}
            if absent:
                fp = ", ".join(f"{n} {v['pixels']} px" for n, v in absent.items())
                print(
                    f"  predicted but absent from the labels (false positives, not in mIoU): {fp}"
                )
            if r != steps.MERGED:
                v = steps.validate(ctx, int(r), k)
                if v is not None:
                    print(
                        f"  validation fold {v.values['fold']}: mIoU {fmt(v.mean_iou)}  ({v.path})"
                    )
            t = steps.evaluate_target(ctx, r, k)  # None without target pixels
            if t is not None:
                print(
                    f"{title} target: mIoU {fmt(t.mean_iou)}  OA {fmt(t.overall_accuracy)}  "
                    f"kappa {fmt(t.kappa)}  ({t.path})"
                )
        return 0


def fmt(v: float | None) -> str:
    """A metric to 4 decimals; "–" where it is undefined (e.g. kappa with one class)."""
    return "–" if v is None else f"{v:.4f}"
