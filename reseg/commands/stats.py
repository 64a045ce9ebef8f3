"""`reseg stats CONFIG --root DIR [-- BEAM_OPTIONS]`."""

import argparse

from reseg.commands._common import add_config_and_root, beam_args, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_and_root(parser, beam=True)


def run(args: argparse.Namespace) -> int:
    from reseg.components.statistics import compute_stats

    cfg = load(args)
    st = compute_stats(cfg, args.root, beam_args(args))
    print(f"stats: {st.path / 'stats.json'} ({st.valid_pixels} valid pixels)")
    for i, b in enumerate(st.bands, 1):
        print(
            f"  band {i}: mean {b.mean:.4g} std {b.std:.4g} min {b.min:.4g} p2 {b.p2:.4g} p98 {b.p98:.4g} max {b.max:.4g}"
        )
    return 0
