"""`reseg score CONFIG --root DIR [--round r] [--fold k|all] [-- BEAM_OPTIONS]`."""

import argparse

from reseg.commands._common import (
    add_config_and_root,
    add_round_and_fold,
    beam_args,
    folds_of,
    load,
    round_of,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)
    add_round_and_fold(parser)


def run(args: argparse.Namespace) -> int:
    from reseg import artifacts, layout
    from reseg.components.scorer import score

    cfg = load(args)
    r = round_of(args)
    tiles = artifacts.TileSet.load(layout.tiles_dir(args.root))
    for k in folds_of(args, cfg):
        model = layout.model_dir(args.root, r, k)
        artifacts.read_manifest(model)  # a clear error when the round was not trained
        out = score(
            cfg, model, list(tiles.files), layout.scores_dir(args.root, r, k), r, beam_args(args)
        )
        print(f"scores: {out}")
    return 0
