"""`reseg run` with its scenes and its root in an S3 bucket (moto's server on loopback), Beam on
worker processes: the same artifacts as on a local disk, and nothing written locally."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from reseg import artifacts, layout, storage
from reseg.cli import main
from tests.storage.conftest import BEAM_PROCESSES


def scenes_in_bucket(cfg, bucket: str) -> dict:
    """The config as a dict with every scene file copied into `bucket/scenes/`."""
    raw = cfg.model_dump(mode="json")
    for scene in raw["data"]["scenes"]:
        for key in ("image", "labels"):
            if scene.get(key):
                uri = f"{bucket}/scenes/{os.path.basename(scene[key])}"
                storage.upload(scene[key], uri)
                scene[key] = uri
    raw["beam"] = {"args": BEAM_PROCESSES}
    return raw


def write_config(raw: dict, folder) -> str:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def read_bytes(p) -> bytes:
    return storage.path(p).read_bytes()


@pytest.mark.slow
def test_tile_and_stats_in_a_bucket_equal_the_local_run(
    demo_config, demo_root, s3_bucket, tmp_path, no_local_writes
):
    cfg_file = write_config(scenes_in_bucket(demo_config, s3_bucket), tmp_path)
    root = f"{s3_bucket}/runs/demo"
    assert main(["run", cfg_file, "--root", root, "--steps", "tile,stats"]) == 0
    no_local_writes()

    remote = artifacts.TileSet.load(layout.tiles_dir(root))
    local = artifacts.TileSet.load(layout.tiles_dir(demo_root))
    assert [f.name for f in remote.files] == [f.name for f in local.files]
    for r, loc in zip(remote.files, local.files, strict=True):
        assert read_bytes(r) == loc.read_bytes(), r.name  # tiles byte for byte
    assert remote.manifest["counts"] == local.manifest["counts"]
    stats_remote = json.loads(read_bytes(layout.stats_dir(root) / layout.STATS_JSON))
    stats_local = json.loads((layout.stats_dir(demo_root) / layout.STATS_JSON).read_text())
    assert stats_remote["class_pixels_per_fold"] == stats_local["class_pixels_per_fold"]
    for a, b in zip(stats_remote["bands"], stats_local["bands"], strict=True):
        assert a == pytest.approx(b, rel=1e-9)
    # nothing staged is left, and a rerun trusts what is there
    assert not [n for n in storage.files_under(root) if ".tmp-" in n]
    before = read_bytes(layout.tiles_dir(root) / layout.MANIFEST)
    assert main(["run", cfg_file, "--root", root, "--steps", "tile,stats"]) == 0
    assert read_bytes(layout.tiles_dir(root) / layout.MANIFEST) == before
