"""`reseg tile CONFIG --root DIR [-- BEAM_OPTIONS]`."""

import argparse

from reseg.commands._common import add_config_and_root, load, writing
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    steps.check_scenes(cfg)  # every scene's header checked before the root is created
    with writing(args, cfg) as ctx:
        ts = steps.tile(ctx)
        print(f"tiles: {ts.path} ({ts.manifest['counts']['tiles']} tiles, {len(ts.files)} shards)")
        return 0
