"""Manifests that are checked: every published file listed with its size and checksum;
`reseg verify ROOT` names what is missing or damaged and the step that remakes it, and the
next run remakes it (on a disk here; on a bucket in `storage/test_s3_verify.py`)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from reseg import artifacts, layout
from reseg.artifacts import Artifact, Model, TileSet, read_manifest
from reseg.cli import main
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def small_root(tmp_path_factory, demo_config, demo_root):
    """(config file, a root with tiles, stats and round 0's model of fold 0, one epoch)."""
    tmp = tmp_path_factory.mktemp("verify")
    raw = tiny_config(demo_config).model_dump(mode="json")
    raw["train"]["epochs"] = 1
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    root = tmp / "root"
    root.mkdir()
    for name in ("tiles", "stats"):  # a copy: the tests below damage it
        shutil.copytree(demo_root / name, root / name)
    assert main(["train", str(cfg), "--root", str(root), "--fold", "0"]) == 0
    return cfg, root


def test_a_manifest_lists_every_file_with_size_and_checksum(demo_root):
    m = read_manifest(layout.tiles_dir(demo_root))
    listed = m[artifacts.store.CONTENTS]
    tiles = TileSet.load(layout.tiles_dir(demo_root))
    for f in tiles.files:
        entry = listed[f.name]
        assert entry["size"] == f.stat().st_size and len(entry["crc32"]) == 8
    assert layout.MANIFEST not in listed


def test_verify_names_a_deleted_shard_and_a_corrupt_model_then_the_rerun_remakes_them(
    small_root, capsys
):
    cfg, root = small_root
    assert main(["verify", str(root)]) == 0
    shard = TileSet.load(layout.tiles_dir(root)).files[2]
    shard.unlink()
    model_file = Model.load(layout.model_dir(root, 0, 0)).path / layout.MODEL_KERAS
    size = model_file.stat().st_size
    with open(model_file, "r+b") as fh:  # damaged in place: same size, other bytes
        fh.seek(size // 2)
        fh.write(b"\0" * 64)
    capsys.readouterr()

    assert main(["verify", str(root)]) == 5
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 2, out.out
    assert f"{shard}: missing; the step tile makes it again" in lines[1]
    assert f"{model_file}: damaged (its checksum differs" in lines[0]
    assert "the step train makes it again" in lines[0]
    assert "2 missing or damaged" in out.err

    assert main(["verify", str(root), "--sizes"]) == 5  # the shard shows by its size alone
    assert capsys.readouterr().out.count("\n") == 1

    # a run notices the missing shard by itself; the model damaged in place needs --repair
    assert main(["verify", str(root), "--repair"]) == 5
    assert "train" in capsys.readouterr().out
    assert not (layout.model_dir(root, 0, 0) / layout.MANIFEST).exists()
    assert main(["run", str(cfg), "--root", str(root), "--steps", "tile,stats"]) == 0
    assert main(["train", str(cfg), "--root", str(root), "--fold", "0"]) == 0
    capsys.readouterr()
    assert main(["verify", str(root)]) == 0
    assert shard.exists() and model_file.exists()
    assert "0 missing or damaged" in capsys.readouterr().err


def test_an_artifact_made_again_keeps_its_version_so_dependents_stay_current(tmp_path):
    """Later steps' fingerprints take `version`, which is the fingerprint: a model remade
    with other bytes (timings, zip timestamps) from the same inputs does not make every
    later step run again, and two roots made alike fingerprint alike."""
    final = tmp_path / "model"

    def publish(data: bytes):
        with artifacts.stage(final, "fp-model", "train") as st:
            (st.dir / layout.MODEL_KERAS).write_bytes(data)
        return Artifact.load(final)

    first = publish(b"weights one")
    assert first.version == first.fingerprint == "fp-model"
    other = publish(b"weights two")
    assert other.version == first.version
    assert artifacts.read_manifest(final)["contents"][layout.MODEL_KERAS]["size"] == 11
