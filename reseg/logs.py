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


def quiet_libraries() -> None:
    """Keep libraries' own logs at warnings (TensorFlow's C++ logs too, when set early)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
