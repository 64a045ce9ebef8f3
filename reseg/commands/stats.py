"""`reseg stats CONFIG --root DIR [-- BEAM_OPTIONS]`."""

import argparse

from reseg import layout
from reseg.commands._common import add_config_and_root, writing
from reseg.pipeline import steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)


def run(args: argparse.Namespace) -> int:
    with writing(args) as ctx:
        st = steps.stats(ctx)
        print(f"stats: {st.path / layout.STATS_JSON} ({st.valid_pixels} valid pixels)")
        for i, b in enumerate(st.bands, 1):
            print(
                f"  band {i}: mean {b.mean:.4g} std {b.std:.4g} min {b.min:.4g} p2 {b.p2:.4g} p98 {b.p98:.4g} max {b.max:.4g}"
            )
        return 0
