"""`reseg report ROOT`: report.md and report.html of a pipeline root."""

import argparse

from reseg import layout, storage
from reseg.errors import ArtifactError
from reseg.report import collect, convention, round_table, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=storage.argument, metavar="ROOT", help="pipeline root")


def run(args: argparse.Namespace) -> int:
    storage.check_uri(args.root)
    if not layout.tiles_dir(layout.Shared.load(args.root).data_root(args.root)).exists():
        raise ArtifactError(f"{args.root}: not a pipeline root (no tiles/)")
    md = write_report(args.root)
    for view in collect(args.root):
        print(f"\nevaluation {view.fold}\n{round_table(view)}\n{convention(view)}")
    print(f"\nreport: {md} and {md.with_suffix('.html')}")
    return 0
