"""The `reseg` command line.

Each subcommand lives in `reseg/commands/<name>.py` with two functions,
`add_arguments(parser)` and `run(args) -> int`, imported only when that
subcommand runs (so `reseg --help` stays fast). User errors (`ResegError`, and the
operating-system, decoding and GDAL I/O errors that `reseg.errors.user_error` maps to
it) print one line and exit with the code of their kind (table in `reseg.errors`),
without a traceback unless `-v`. Progress bars are drawn on a terminal only, unless
`--progress` (before or after the command) forces them (`reseg.quiet.progress_bars`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from reseg import __version__, quiet, storage
from reseg.errors import ResegError, user_error

log = logging.getLogger("reseg")

# name -> (module under reseg.commands, one-line help); order is the help's order
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the whole pipeline (resumable): tile, stats, rounds, merge, evaluate, ..."),
    "tile": ("tile", "cut scenes into overlapping tiles (TFRecords) with spatial folds [Beam]"),
    "stats": ("stats", "per-band statistics and class counts of the tiles [Beam]"),
    "train": ("train", "train a model of the registry on the tiles of a fold"),
    "score": ("score", "write per-pixel confidences of a round's model into TFRecords [Beam]"),
    "select": (
        "select",
        "pick per class the top/bottom x%% pixels by score as next round's weights",
    ),
    "merge": ("merge", "merge the per-pixel probabilities of all rounds"),
    "evaluate": ("evaluate", "OA, IoU/F1 per class, mIoU, kappa, confusion on the validation fold"),
    "tune-refine": (
        "tune_refine",
        "tune CRF and SLIC refinement on the validation pixels of each fold's models",
    ),
    "export": ("export", "export a SavedModel for TF Serving"),
    "predict": ("predict", "segment whole scenes into georeferenced class and confidence GeoTIFFs"),
    "serve-predict": ("serve_predict", "segment a scene through a TF Serving endpoint"),
    "report": ("report", "write report.md/report.html of a pipeline root"),
    "study": ("study", "sweep selection settings, models, resolutions and folds; one report"),
    "demo": ("demo", "run the bundled Landsat example end to end"),
    "weights": (
        "weights",
        "convert PyTorch ResNet weights (torchvision, timm, TorchGeo) for U-Net",
    ),
    "verify": ("verify", "check every published file of a root against its manifest"),
    "schema": ("schema", "print the JSON Schema of the config (or --study) files"),
    "info": ("info", "versions, processor and GPUs, what precision auto picks, cache, storage"),
}


def build_parser(with_commands: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reseg",
        description="Semantic segmentation of remote sensing imagery with confidence rounds.",
    )
    parser.add_argument("--version", action="version", version=f"reseg {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging, tracebacks, and the other libraries' messages (TensorFlow, Beam)",
    )
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument(
        "--progress",
        dest="force_progress",
        action="store_true",
        default=argparse.SUPPRESS,  # a command's parser leaves the top level's value alone
        help="draw progress bars even where stderr is not a terminal (a log file, CI)",
    )
    parser.add_argument(
        "--progress",
        dest="force_progress",
        action="store_true",
        help="draw progress bars even where stderr is not a terminal (also after COMMAND)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"reseg.commands.{module}") is None:
            help_text += " (not in this version yet)"
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[progress])
        if name == with_commands and importlib.util.find_spec(f"reseg.commands.{module}"):
            importlib.import_module(f"reseg.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    # before anything imports TensorFlow or Beam (adding a command's arguments imports it)
    head = argv[: argv.index(command)] if command else argv
    quiet.configure(any(a in ("-v", "--verbose") for a in head))
    parser = build_parser(with_commands=command)
    tail = None
    if "--" in argv and _takes_beam_options(parser, command):
        # `... -- BEAM_OPTIONS`: split first, so that a command whose SCENE... is optional
        # (predict --root) does not take the options for scenes
        argv, tail = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args, extra = parser.parse_known_args(argv)
    if tail is not None:
        args.beam_args = [*(args.beam_args or []), *tail]
    if extra[:1] == ["--"] and hasattr(args, "beam_args"):
        # `CONFIG --root R -- BEAM_OPTIONS`: argparse gave the positional its empty list at
        # CONFIG already and left what follows `--` over
        args.beam_args, extra = [*args.beam_args, *extra[1:]], []
    args.extra = extra
    if args.force_progress:
        quiet.force_progress()
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    name = f"reseg.commands.{COMMANDS[args.command][0]}"
    if importlib.util.find_spec(name) is None:
        print(f"reseg {args.command}: not in this version of reseg yet", file=sys.stderr)
        return 1
    module = importlib.import_module(name)
    try:
        return int(module.run(args) or 0)
    except ResegError as e:
        return _report(args, e)
    except Exception as e:
        where = getattr(args, "root", None) or getattr(args, "out", None)
        err = user_error(e, fallback=where) or storage.client_error(e, where)
        if err is None:
            raise  # a bug: keep the traceback
        return _report(args, err)
    except KeyboardInterrupt:
        print(f"reseg {args.command}: interrupted", file=sys.stderr)
        return 130


def _takes_beam_options(parser: argparse.ArgumentParser, command: str | None) -> bool:
    """Whether `command` takes Beam options after `--` (its parser has a `beam_args`)."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    p = sub.choices.get(command) if sub is not None and command else None
    return p is not None and (
        p.get_default("beam_args") is not None or any(a.dest == "beam_args" for a in p._actions)
    )


def _report(args: argparse.Namespace, e: ResegError) -> int:
    """One line on stderr (the traceback too with -v); the exit code of the error's kind."""
    if args.verbose:
        log.exception("failed")
    message = " ".join(line.strip() for line in str(e).splitlines())
    print(f"reseg {args.command}: error: {message}", file=sys.stderr)
    return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
