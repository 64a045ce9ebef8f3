"""Bad object-store inputs through the CLI: one line naming the URI and the problem, a non-zero
exit, and nothing in the bucket that a reader trusts (or anything at all)."""

from __future__ import annotations

import pytest
import yaml

from reseg import storage
from reseg.cli import main
from tests.rasters import config_dict, scene
from tests.storage.conftest import free_port


@pytest.fixture
def fresh_clients():
    """fsspec caches one client per settings; tests that change the settings need new ones."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def scene_in_bucket(s3_bucket, tmp_path):
    image, labels = scene(tmp_path, seed=3)
    storage.upload(image, f"{s3_bucket}/in/image.tif")
    storage.upload(labels, f"{s3_bucket}/in/labels.tif")
    return s3_bucket, f"{s3_bucket}/in/image.tif", f"{s3_bucket}/in/labels.tif"


def run(tmp_path, capsys, image, labels, root, command="tile") -> tuple[int, str]:
    raw = config_dict(image, labels)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    code = main([command, str(cfg), "--root", str(root)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return code, err


def test_missing_object_names_the_uri(scene_in_bucket, tmp_path, capsys):
    bucket, _, labels = scene_in_bucket
    code, err = run(tmp_path, capsys, f"{bucket}/in/nope.tif", labels, f"{bucket}/root")
    assert code != 0
    assert f"{bucket}/in/nope.tif" in err and "not found" in err
    assert storage.files_under(f"{bucket}/root") == []


def test_missing_bucket_is_not_created(scene_in_bucket, tmp_path, capsys):
    bucket, image, labels = scene_in_bucket
    code, err = run(tmp_path, capsys, image, labels, "s3://reseg-no-such-bucket/root")
    assert code != 0
    assert "s3://reseg-no-such-bucket/root" in err and "does not exist" in err
    assert not storage.path("s3://reseg-no-such-bucket").fs.exists("reseg-no-such-bucket")


def test_unsupported_scheme(tmp_path, capsys):
    image, labels = scene(tmp_path, seed=3)
    code, err = run(tmp_path, capsys, image, labels, "ftp://host/root")
    assert code != 0
    assert "ftp://host/root" in err and "unsupported URI scheme" in err
    code, err = run(tmp_path, capsys, "hdfs://nn/image.tif", labels, tmp_path / "root")
    assert code != 0
    assert "hdfs://nn/image.tif" in err and "unsupported URI scheme" in err
    assert not (tmp_path / "root").exists()


def test_unreachable_endpoint(scene_in_bucket, tmp_path, capsys, monkeypatch, fresh_clients):
    bucket, image, labels = scene_in_bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    code, err = run(tmp_path, capsys, image, labels, f"{bucket}/root")
    assert code != 0
    assert f"{bucket}/root" in err and "unreachable" in err


def test_missing_credentials(scene_in_bucket, tmp_path, capsys, monkeypatch, fresh_clients):
    bucket, image, labels = scene_in_bucket
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, err = run(tmp_path, capsys, image, labels, f"{bucket}/root")
    assert code != 0
    assert f"{bucket}/root" in err and "credentials" in err
