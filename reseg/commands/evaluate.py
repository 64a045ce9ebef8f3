"""`reseg evaluate CONFIG --root DIR [--round r|merged] [--fold k|all]`."""

import argparse

from reseg.commands._common import add_config_and_root, add_round_and_fold, folds_of, load, round_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    add_round_and_fold(parser, merged=True)


def run(args: argparse.Namespace) -> int:
    from reseg import layout
    from reseg.components.evaluator import evaluate

    cfg = load(args)
    names = [c.name for c in cfg.data.classes]
    for k in folds_of(args, cfg):
        if args.round == "merged":
            d = layout.merged_dir(args.root, k)
            scores, out, title = d / "scores", d / "eval", f"merged fold{k}"
        else:
            r = round_of(args)
            scores, out, title = (
                layout.scores_dir(args.root, r, k),
                layout.eval_dir(args.root, r, k),
                f"round {r} fold{k}",
            )
        m = evaluate(scores, out, k, names, title=title)
        print(
            f"{title}: mIoU {m['mean_iou']:.4f}  OA {m['overall_accuracy']:.4f}  kappa {m['kappa']:.4f}  ({out})"
        )
        for name, pc in m["per_class"].items():
            iou = "–" if pc["iou"] is None else f"{pc['iou']:.4f}"
            f1 = "–" if pc["f1"] is None else f"{pc['f1']:.4f}"
            print(f"  {name:>16}: IoU {iou}  F1 {f1}  support {pc['support']}")
    return 0
