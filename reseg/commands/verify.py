"""`reseg verify ROOT`: every published file of a root checked against its manifest.

One line per missing or damaged file, naming it and the step that makes it again, then a
summary; exit 5 (an artifact error) when anything is wrong. Reads only, with no lease, unless
`--repair`: then, holding the root's lease, it removes the manifests of the damaged
artifacts, so the next run makes them again (a run notices missing files and changed sizes by
itself; a file damaged in place with its size kept only a checksum shows).
"""

import argparse
import sys

from reseg import storage
from reseg.artifacts import hold
from reseg.artifacts.verify import verify_root, withdraw
from reseg.errors import ArtifactError, InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=storage.argument, metavar="ROOT", help="pipeline root")
    parser.add_argument(
        "--sizes",
        action="store_true",
        help="check sizes only (one listing), not checksums (which read every file on a disk)",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="withdraw the damaged artifacts (remove their manifests): the next run remakes them",
    )


def run(args: argparse.Namespace) -> int:
    storage.check_uri(args.root)
    if not storage.path(args.root).exists():
        raise InputError(f"{args.root}: not found")
    if args.repair:
        with hold(args.root):
            report = verify_root(args.root, checksums=not args.sizes)
            withdrawn = withdraw(report)
    else:
        report = verify_root(args.root, checksums=not args.sizes)
        withdrawn = []
    for d in report.damage:
        print(d.line())
    for folder in withdrawn:
        print(f"{folder}: withdrawn; the next run makes it again")
    summary = (
        f"{report.artifacts} artifacts, {report.files} files checked"
        + (f" ({'sizes' if args.sizes else 'sizes and checksums'})")
        + f": {len(report.damage)} missing or damaged"
    )
    if report.unchecked:
        summary += f"; {len(report.unchecked)} manifests without a file list not checked"
    print(summary, file=sys.stderr)
    return ArtifactError.exit_code if report.damage else 0
