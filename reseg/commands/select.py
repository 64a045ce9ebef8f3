"""`reseg select CONFIG --root DIR [--round r] [--fold k|all]`: next round's weights from round r's scores."""

import argparse

from reseg.commands._common import add_config_and_root, add_round_and_fold, folds_of, load, round_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    add_round_and_fold(parser)


def run(args: argparse.Namespace) -> int:
    import json

    from reseg import artifacts, layout
    from reseg.components.scorer import score_files
    from reseg.components.selector import select

    cfg = load(args)
    r = round_of(args)
    tiles = artifacts.TileSet.load(layout.tiles_dir(args.root))
    for k in folds_of(args, cfg):
        scores = layout.scores_dir(args.root, r, k)
        prev = layout.selection_dir(args.root, r - 1, k) if r > 0 else None
        out = select(
            score_files(scores),
            tiles,
            layout.selection_dir(args.root, r, k),
            cfg.rounds.selection,
            k,
            r,
            previous=prev if prev is not None and prev.exists() else None,
            fingerprint_inputs=artifacts.read_manifest(scores)["fingerprint"],
        )
        rep = json.loads((out / "selection.json").read_text())
        print(f"selection: {out} ({rep['selected']} pixels)")
        for name, pc in rep["per_class"].items():
            short = " (short)" if pc["short"] else ""
            print(f"  {name:>16}: {pc['selected']:>8} of {pc['pixels']:>8}{short}")
    return 0
