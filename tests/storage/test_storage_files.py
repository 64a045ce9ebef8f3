"""The storage functions that keep "on a disk or in a bucket" out of the callers: one file's
version and bytes, a local folder whose files end up in a bucket, a location written in a file,
an output folder that cannot be made."""

import hashlib
import os

import pytest

from reseg import storage
from reseg.errors import OutputError
from reseg.raster import fingerprint_file


def _expected(data: bytes, version: str) -> str:
    """The fingerprint tile sets record: size, version, first and last MiB (the value existing
    roots were fingerprinted with; a change would retile them)."""
    h = hashlib.sha256(f"{len(data)}:{version}".encode())
    h.update(data[: 1 << 20])
    if len(data) > 2 << 20:
        h.update(data[-(1 << 20) :])
    return h.hexdigest()[:16]


@pytest.fixture
def data() -> bytes:
    return os.urandom((3 << 20) + 123)


def test_a_local_file_is_fingerprinted_by_size_mtime_and_its_ends(tmp_path, data):
    p = tmp_path / "a.bin"
    p.write_bytes(data)
    assert storage.stat(p) == (len(data), str(os.stat(p).st_mtime_ns))
    assert storage.read_range(p, 10, 20) == data[10:20]
    assert fingerprint_file(p) == _expected(data, str(os.stat(p).st_mtime_ns))


def test_an_object_is_fingerprinted_by_size_etag_and_its_ends(s3_bucket, tmp_path, data):
    p = tmp_path / "a.bin"
    p.write_bytes(data)
    uri = f"{s3_bucket}/x/a.bin"
    storage.upload(p, uri)
    size, etag = storage.stat(uri)
    assert size == len(data) and etag.strip('"')
    assert storage.read_range(uri, len(data) - 5, len(data)) == data[-5:]
    assert fingerprint_file(uri) == _expected(data, etag)


def test_written_locally_uploads_the_files_after_the_block_and_nothing_after_an_error(
    s3_bucket, tmp_path, monkeypatch
):
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    final = storage.path(f"{s3_bucket}/blocks/b0")
    with storage.written_locally(final, "k") as local:
        assert not storage.is_remote(local)
        (local / "a.tif").write_bytes(b"a")
        (local / "b.tif").write_bytes(b"bb")
    assert storage.files_under(final) == ["a.tif", "b.tif"]
    assert not local.exists()
    failed = storage.path(f"{s3_bucket}/blocks/b1")
    with pytest.raises(RuntimeError), storage.written_locally(failed, "k") as local:
        (local / "a.tif").write_bytes(b"a")
        raise RuntimeError("a failed block")
    assert storage.files_under(failed) == []


def test_written_locally_is_the_folder_itself_on_a_disk(tmp_path):
    with storage.written_locally(tmp_path / "out" / "b0", "k") as local:
        assert local == tmp_path / "out" / "b0" and local.is_dir()


def test_a_location_in_a_file_is_made_absolute_against_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert storage.against("s3://b/scene.tif", tmp_path) == "s3://b/scene.tif"
    assert storage.against("scenes/a.tif", tmp_path) == str(
        (tmp_path / "scenes" / "a.tif").resolve()
    )
    assert storage.against("/data/a.tif", tmp_path) == "/data/a.tif"
    assert storage.against("~/a.tif", tmp_path) == str(tmp_path / "home" / "a.tif")


def test_an_output_folder_under_a_file_is_refused_on_a_disk_too(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, expected a folder"):
        storage.check_output(tmp_path / "f" / "out")
    storage.check_output(tmp_path / "new" / "out")  # can be made: nothing raised, nothing made
    assert not (tmp_path / "new").exists()


def test_a_growing_file_is_written_locally_and_mirrored_into_a_bucket(
    s3_bucket, tmp_path, monkeypatch
):
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    logs = storage.path(f"{s3_bucket}/study/logs")
    local = storage.local_mirror(logs)
    assert local == storage.local_mirror(logs) and str(tmp_path / "cache") in str(local)
    local.mkdir(parents=True)
    (local / "job.log").write_text("line 1\n")
    with open(local / "job.log", "a") as fh:
        fh.write("line 2\n")
    storage.mirror_back(local / "job.log", logs)
    assert (logs / "job.log").read_text() == "line 1\nline 2\n"
    on_disk = tmp_path / "study" / "logs"
    assert storage.local_mirror(on_disk) == on_disk
    storage.mirror_back(on_disk / "absent.log", on_disk)  # nothing to copy on a disk
