"""Published scores and models that decay, on a disk (on a bucket in `storage/test_s3_decay.py`):
deleted, the next step command names the file in one warning and makes the artifact again;
damaged in place (the same size), `reseg verify` names it and the step that remakes it, and
after `--repair` the step remakes it. What depends on a remade artifact stays current."""

from __future__ import annotations

import logging
import shutil

import pytest
import yaml

from reseg import layout
from reseg.artifacts import Model, Scores, read_manifest
from reseg.cli import main
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def scored_root(tmp_path_factory, demo_config, demo_root):
    """(config file, root): tiles and stats (copied), round 0 of fold 0 trained (one epoch) and
    scored. The tests below damage it, in order."""
    tmp = tmp_path_factory.mktemp("decay")
    raw = tiny_config(demo_config).model_dump(mode="json")
    raw["train"]["epochs"] = 1
    raw["tracking"] = {"enabled": False}
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    root = tmp / "root"
    root.mkdir()
    for name in ("tiles", "stats"):
        shutil.copytree(demo_root / name, root / name)
    assert main(["train", str(cfg), "--root", str(root), "--fold", "0"]) == 0
    assert main(["score", str(cfg), "--root", str(root), "--fold", "0"]) == 0
    return str(cfg), root


def step(name: str, cfg: str, root) -> list[str]:
    return [name, cfg, "--root", str(root), "--fold", "0"]


def test_a_deleted_score_file_is_named_and_remade(scored_root, caplog, capsys):
    cfg, root = scored_root
    scores = Scores.load(layout.scores_dir(root, 0, 0))
    before = read_manifest(scores.path)["published_at"]
    gone = scores.files[0]
    gone.unlink()
    with caplog.at_level(logging.WARNING, logger="reseg"):
        assert main(step("score", cfg, root)) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{gone}: missing; the step score makes it again" in warned
    remade = Scores.load(scores.path)
    assert remade.files and all(f.exists() for f in remade.files)  # shard names are new
    assert read_manifest(scores.path)["published_at"] >= before
    capsys.readouterr()
    assert main(["verify", str(root)]) == 0


def test_a_damaged_score_file_is_named_by_verify_and_remade_after_repair(scored_root, capsys):
    cfg, root = scored_root
    bad = Scores.load(layout.scores_dir(root, 0, 0)).files[0]
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte, the same size
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(root)]) == 5
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line == (
        f"{bad}: damaged (its checksum differs from the published one); the step score makes "
        "it again (run it, or reseg run)"
    )
    assert main(["verify", str(root), "--repair"]) == 5
    assert main(step("score", cfg, root)) == 0
    remade = Scores.load(layout.scores_dir(root, 0, 0))
    assert all(f.exists() and f.read_bytes() != bytes(data) for f in remade.files)
    capsys.readouterr()
    assert main(["verify", str(root)]) == 0


def test_a_deleted_model_is_named_and_retrained_and_its_scores_stay_current(
    scored_root, caplog, capsys
):
    cfg, root = scored_root
    model = Model.load(layout.model_dir(root, 0, 0))
    scored = read_manifest(layout.scores_dir(root, 0, 0))["published_at"]
    model.keras_file.unlink()
    with caplog.at_level(logging.WARNING, logger="reseg"):
        assert main(step("train", cfg, root)) == 0
        assert main(step("score", cfg, root)) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{model.keras_file}: missing; the step train makes it again" in warned
    assert model.keras_file.exists()
    # the model's version is its fingerprint: the remade model leaves its scores current
    assert read_manifest(layout.scores_dir(root, 0, 0))["published_at"] == scored
    capsys.readouterr()
    assert main(["verify", str(root)]) == 0
