"""`reseg weights convert SOURCE.pth OUT.weights.h5 [--encoder E] [--band-order B,...]`.

Converts a torchvision / timm / TorchGeo ResNet-18/34/50 state dict into the weights
file of the matching U-Net backbone (`model.params.encoder: resnet18 | resnet34 |
resnet50_torchvision`, `encoder_weights: OUT.weights.h5`), with the band order of
the weights recorded beside it (`OUT.weights.h5.json`). Nothing is downloaded:
SOURCE is a local file (TorchGeo's and timm's weights are downloaded by those
libraries, or by hand). Reading it needs PyTorch (`pip install torch`).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    convert = sub.add_parser(
        "convert",
        help="PyTorch ResNet-18/34/50 state dict (.pth) -> Keras backbone weights (.weights.h5)",
    )
    convert.add_argument("source", metavar="SOURCE", help="state dict file (.pth, .pt)")
    convert.add_argument("out", metavar="OUT", help="weights file to write (*.weights.h5)")
    convert.add_argument(
        "--encoder",
        choices=["resnet18", "resnet34", "resnet50_torchvision"],
        help="the network the weights must be of (default: read from the state dict)",
    )
    convert.add_argument(
        "--band-order",
        metavar="B1,B2,...",
        type=lambda s: [b.strip() for b in s.split(",") if b.strip()],
        help="names of the bands the weights take, in order (e.g. R,G,B or B2,B3,B4,B8), "
        "recorded beside the file",
    )


def run(args: argparse.Namespace) -> int:
    from reseg.models.convert import convert  # imports Keras (and torch to read SOURCE)

    info = convert(args.source, args.out, encoder=args.encoder, band_order=args.band_order)
    print(
        f"wrote {args.out}: {info['encoder']}, {info['bands']} bands, band order "
        f"{info['band_order'] or 'not given'}",
        file=sys.stderr,
    )
    return 0
