"""Published scores and models that decay in a bucket (moto's S3 server on loopback): a deleted
model is named by the next `reseg train` and trained again, its scores staying current; a score
overwritten with other bytes of the same size is named by `reseg verify` and, after `--repair`,
made again by `reseg score`."""

from __future__ import annotations

import logging

import pytest

from reseg import layout, storage
from reseg.artifacts import Model, Scores, read_manifest
from reseg.cli import main
from tests.conftest import tiny_config
from tests.lease_helpers import config_file


@pytest.fixture(scope="module")
def bucket_scored(s3_endpoint, demo_config, tmp_path_factory):
    import uuid

    import boto3

    name = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    cfg = tiny_config(demo_config)
    train = cfg.train.model_copy(update={"epochs": 1})
    cfg = cfg.model_copy(update={"train": train})
    cfg_file = str(config_file(cfg, tmp_path_factory.mktemp("s3_decay")))
    root = f"s3://{name}/runs/decay"
    assert main(["run", cfg_file, "--root", root, "--steps", "tile,stats"]) == 0
    for command in ("train", "score"):
        assert main([command, cfg_file, "--root", root, "--fold", "0"]) == 0
    return cfg_file, root


def test_a_deleted_model_in_a_bucket_is_named_and_trained_again(bucket_scored, caplog, capsys):
    cfg, root = bucket_scored
    model = Model.load(layout.model_dir(root, 0, 0))
    scored = read_manifest(layout.scores_dir(root, 0, 0))["published_at"]
    storage.rmtree(model.keras_file)
    with caplog.at_level(logging.WARNING, logger="reseg"):
        assert main(["train", cfg, "--root", root, "--fold", "0"]) == 0
        assert main(["score", cfg, "--root", root, "--fold", "0"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{model.keras_file}: missing; the step train makes it again" in warned
    assert storage.path(model.keras_file).exists()
    assert read_manifest(layout.scores_dir(root, 0, 0))["published_at"] == scored
    capsys.readouterr()
    assert main(["verify", root]) == 0


def test_an_overwritten_score_in_a_bucket_is_named_and_made_again(bucket_scored, capsys):
    cfg, root = bucket_scored
    bad = Scores.load(layout.scores_dir(root, 0, 0)).files[0]
    data = bytearray(storage.path(bad).read_bytes())
    data[len(data) // 2] ^= 0xFF
    storage.path(bad).write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", root]) == 5
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"{bad}: damaged (its checksum differs from the published one); ")
    assert "the step score makes it again" in line
    assert main(["verify", root, "--repair"]) == 5
    assert main(["score", cfg, "--root", root, "--fold", "0"]) == 0
    capsys.readouterr()
    assert main(["verify", root]) == 0
