"""Checked manifests in a bucket (moto's S3 server on loopback): each object listed with its
size and ETag; `reseg verify` names a deleted and an overwritten shard; the next run remakes
a deleted one by itself, and an overwritten one after `--repair`."""

from __future__ import annotations

import pytest

from reseg import layout, storage
from reseg.artifacts import TileSet, read_manifest
from reseg.artifacts.store import CONTENTS
from reseg.cli import main
from tests.lease_helpers import config_file


@pytest.fixture
def bucket_root(s3_bucket, demo_config, tmp_path):
    cfg = config_file(demo_config, tmp_path)
    root = f"{s3_bucket}/runs/v"
    assert main(["run", str(cfg), "--root", root, "--steps", "tile,stats"]) == 0
    return cfg, root


def test_verify_a_bucket_root_and_remake_what_it_names(bucket_root, capsys):
    cfg, root = bucket_root
    tiles = TileSet.load(layout.tiles_dir(root))
    listed = read_manifest(tiles.path)[CONTENTS]
    gone, bad = tiles.files[0], tiles.files[1]
    size = storage.path(bad).stat().st_size
    assert listed[bad.name]["size"] == size and listed[bad.name]["etag"]
    assert main(["verify", root]) == 0
    storage.rmtree(gone)
    data = bytearray(storage.path(bad).read_bytes())
    data[size // 2] ^= 0xFF  # the same size, one byte changed
    storage.path(bad).write_bytes(bytes(data))
    capsys.readouterr()

    assert main(["verify", root]) == 5
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(lines) == [
        f"{gone}: missing; the step tile makes it again (run it, or reseg run)",
        f"{bad}: damaged (its checksum differs from the published one); the step tile makes "
        "it again (run it, or reseg run)",
    ]
    run = ["run", str(cfg), "--root", root, "--steps", "tile,stats"]
    assert main(run) == 0
    assert storage.path(gone).exists(), "the run remakes the tiles with a deleted shard by itself"
    assert main(["verify", root]) == 0

    storage.path(bad).write_bytes(bytes(data))  # damaged again, alone: same size
    assert main(run) == 0
    assert main(["verify", root]) == 5, "a changed byte of the same size shows only in a checksum"
    assert main(["verify", root, "--repair"]) == 5
    assert not storage.path(layout.tiles_dir(root) / layout.MANIFEST).exists()
    assert main(run) == 0
    capsys.readouterr()
    assert main(["verify", root]) == 0
    assert storage.path(bad).read_bytes() != bytes(data)
