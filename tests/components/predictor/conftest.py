"""Tiny saved models shared by the predictor's tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.components.predictor.helpers import conv1x1, save_model, small_cnn


@pytest.fixture(scope="session")
def cnn_dir(tmp_path_factory) -> Path:
    """3 x 3 CNN, output stride 2, 4 x uint16 bands, 3 classes, label values 10/20/30."""
    return save_model(
        tmp_path_factory.mktemp("cnn") / "model",
        small_cnn(4, 3, seed=1),
        bands=4,
        classes=3,
        output_stride=2,
        label_values={"10": 0, "20": 1, "30": 2, "0": 255},
    )


@pytest.fixture(scope="session")
def px_dir(tmp_path_factory) -> Path:
    """Per-pixel (1 x 1 convolutions) model, exactly D4-equivariant; 4 x uint16 bands, 3 classes."""
    return save_model(
        tmp_path_factory.mktemp("px") / "model", conv1x1(4, 3, seed=2), bands=4, classes=3
    )


@pytest.fixture(scope="session")
def cnn(cnn_dir):
    from reseg.components.predictor import load_backend

    return load_backend(cnn_dir)
