"""Fixtures of the trainer tests: a small tiled root (synthetic scene, 9 tiles of 32 px, 3 folds)."""

from __future__ import annotations

import os

import pytest

from tests.components.trainer.tiles import write_root

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiled(tmp_path_factory):
    """(root, scene, tiles): read-only; tests that train copy or use their own root."""
    root = tmp_path_factory.mktemp("tiled")
    scene, tiles = write_root(root)
    return root, scene, tiles


@pytest.fixture
def root(tmp_path, tiled):
    """A fresh pipeline root sharing the session's tiles and stats (symlinked, read-only)."""
    src = tiled[0]
    for name in ("tiles", "stats"):
        (tmp_path / name).symlink_to(src / name, target_is_directory=True)
    return tmp_path
