"""Logging set-up shared by the CLI and the study's worker processes."""

from __future__ import annotations

import logging
import os

NOISY = (
    "tensorflow",
    "absl",
    "apache_beam",
    "rasterio",
    "fiona",
    "matplotlib",
    "PIL",
    "h5py",
    "urllib3",
)


def quiet_libraries(verbose: bool = False) -> None:
    """Keep libraries' own logs at warnings (TensorFlow's C++ logs too, when set early)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not verbose:
        # Beam logs each failed bundle with its traceback before re-raising the error,
        # which the handler in `reseg.cli.main` reports on one line (all of it with -v)
        logging.getLogger("apache_beam.runners").setLevel(logging.CRITICAL)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
