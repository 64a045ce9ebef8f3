"""Arguments shared by the step commands: `CONFIG --root DIR [-- beam options]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from reseg.config import Config, load_config


def add_config_and_root(parser: argparse.ArgumentParser, beam: bool = False) -> None:
    parser.add_argument("config", metavar="CONFIG", help="YAML configuration file")
    parser.add_argument(
        "--root", required=True, type=Path, help="pipeline root directory (artifacts)"
    )
    if beam:
        parser.add_argument(
            "beam_args",
            nargs="*",
            metavar="BEAM_OPTION",
            help="Beam pipeline options after `--`, e.g. -- --runner=DataflowRunner --setup_file=./setup.py",
        )


def load(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    args.root.mkdir(parents=True, exist_ok=True)
    return cfg


def beam_args(args: argparse.Namespace) -> list[str]:
    return list(getattr(args, "beam_args", []) or [])
