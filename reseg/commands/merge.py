"""`reseg merge CONFIG --root DIR [--fold k|all] [-- BEAM_OPTIONS]`: merge every round found."""

import argparse

from reseg.commands._common import add_config_and_root, beam_args, folds_of, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)
    parser.add_argument(
        "--fold", default=None, help="validation fold k or 'all' (default: rounds.folds)"
    )


def run(args: argparse.Namespace) -> int:
    from reseg import artifacts, layout
    from reseg.components.evaluator import evaluate, load_metrics
    from reseg.components.merger import merge
    from reseg.errors import ArtifactError

    cfg = load(args)
    names = [c.name for c in cfg.data.classes]
    for k in folds_of(args, cfg):
        rounds = []
        r = 0
        while (layout.scores_dir(args.root, r, k) / "manifest.json").exists():
            rounds.append(r)
            r += 1
        if not rounds:
            raise ArtifactError(f"{layout.round_dir(args.root, 0, k)}: no scored rounds to merge")
        weights = [
            max(load_metrics(layout.eval_dir(args.root, r, k))["mean_iou"] or 0, 1e-6)
            if (layout.eval_dir(args.root, r, k) / "metrics.json").exists()
            else 1.0
            for r in rounds
        ]
        out = merge(
            [layout.scores_dir(args.root, r, k) for r in rounds],
            [layout.model_dir(args.root, r, k) for r in rounds],
            weights,
            cfg.rounds.merge,
            k,
            layout.merged_dir(args.root, k),
            names,
            [*cfg.beam.args, *beam_args(args)],
        )
        m = evaluate(out / "scores", out / "eval", k, names, title=f"merged fold{k}")
        print(
            f"merged rounds {rounds} of fold{k} ({cfg.rounds.merge}): mIoU {m['mean_iou']:.4f} -> {out}"
        )
        artifacts.read_manifest(out / "scores")
    return 0
