"""`reseg study STUDY.yaml --root DIR [--profile NAME] [--parallel N] [-- BEAM_OPTIONS]`."""

from __future__ import annotations

import argparse

from reseg import storage
from reseg.errors import ConfigError
from reseg.study import run_study


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="STUDY", help="study YAML (grid, baselines, profiles)")
    parser.add_argument(
        "--root",
        required=True,
        type=storage.argument,
        help="study root directory (a local path, s3:// or gs://)",
    )
    parser.add_argument("--profile", default=None, help="a profile of the study, e.g. quick")
    parser.add_argument(
        "--parallel", type=int, default=None, help="cells at a time (default: the study's)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only write the report of what is on disk (no jobs run)",
    )
    parser.add_argument(
        "beam_args",
        nargs="*",
        metavar="BEAM_OPTION",
        help="Beam options after `--`, appended to every cell's",
    )


def run(args: argparse.Namespace) -> int:

    if args.parallel is not None and args.parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, received {args.parallel}")
    result = run_study(
        args.study,
        args.root,
        profile=args.profile,
        beam_args=list(args.beam_args or []),
        parallel=args.parallel,
        report_only=args.report_only,
    )
    print((result.report.parent / "results.md").read_text())
    o = result.outcome
    jobs = (
        "no jobs run (--report-only)"
        if args.report_only
        else (f"study jobs: {len(o.ran)} run, {len(o.skipped)} already done")
    )
    print(f"{jobs}; report: {result.report} and {result.report.with_suffix('.html')}")
    return 0
