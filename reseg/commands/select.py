"""`reseg select CONFIG --root DIR [--round r] [--fold F]`: next round's weights from round r's scores
(or, with `rounds.pseudo`, round r's pseudo-labels)."""

import argparse

from reseg.artifacts import PseudoLabels
from reseg.commands._common import add_config_and_root, add_round_and_fold, round_of, writing
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser)
    add_round_and_fold(parser)


def run(args: argparse.Namespace) -> int:
    with writing(args) as ctx:
        r = round_of(args)
        for k in ctx.folds(args.fold):
            chosen = steps.next_labels(ctx, r, k)  # pseudo-labels with rounds.pseudo
            rep = chosen.report
            if isinstance(chosen, PseudoLabels):
                print(f"pseudo-labels: {chosen.path} ({rep['selected']} pixels)")
                for name, pc in rep["per_class"].items():
                    prec = "" if pc["precision"] is None else f"  precision {pc['precision']:.3f}"
                    print(f"  {name:>16}: {pc['selected']:>8} of {pc['pixels']:>8}{prec}")
                continue
            print(f"selection: {chosen.path} ({rep['selected']} pixels)")
            for name, pc in rep["per_class"].items():
                short = " (short)" if pc["short"] else ""
                print(f"  {name:>16}: {pc['selected']:>8} of {pc['pixels']:>8}{short}")
        return 0
