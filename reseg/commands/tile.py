"""`reseg tile CONFIG --root DIR [-- BEAM_OPTIONS]`."""

import argparse

from reseg.commands._common import add_config_and_root, beam_args, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)


def run(args: argparse.Namespace) -> int:
    from reseg.components.tiling import tile

    cfg = load(args)
    ts = tile(cfg, args.root, beam_args(args))
    print(f"tiles: {ts.path} ({ts.manifest['counts']['tiles']} tiles, {len(ts.files)} shards)")
    return 0
