"""Publishing on object storage, where nothing renames: a reader trusts an artifact only with
its manifest, written last; a crash leaves nothing trusted and a rerun resumes."""

from __future__ import annotations

import pytest

from reseg import artifacts, layout, storage
from reseg.errors import ArtifactError, InputError


class Crash(Exception):
    pass


def test_stage_publishes_with_the_manifest_last(s3_bucket):
    final = f"{s3_bucket}/root/thing"
    with artifacts.stage(final, "fp1", "test") as st:
        (st.dir / "a.txt").write_text("one")
        st.manifest["n"] = 1
    assert artifacts.is_current(final, "fp1")
    assert storage.files_under(final) == ["a.txt", layout.MANIFEST]
    assert storage.path(f"{final}/a.txt").read_text() == "one"
    assert not [n for n in storage.files_under(f"{s3_bucket}/root") if ".tmp-" in n]


def test_a_crash_in_the_block_keeps_the_staging_and_a_rerun_resumes(s3_bucket):
    final = f"{s3_bucket}/root/thing"
    with pytest.raises(Crash), artifacts.stage(final, "fp1", "test") as st:
        (st.dir / "done.txt").write_text("kept")
        raise Crash
    assert not artifacts.is_current(final, "fp1")
    assert not storage.path(final).exists()
    with artifacts.stage(final, "fp1", "test") as st:
        assert (st.dir / "done.txt").read_text() == "kept"  # what the killed run finished
        (st.dir / "rest.txt").write_text("new")
    assert storage.files_under(final) == ["done.txt", layout.MANIFEST, "rest.txt"]


def test_an_input_error_leaves_nothing(s3_bucket):
    final = f"{s3_bucket}/root/thing"
    with pytest.raises(InputError), artifacts.stage(final, "fp1", "test") as st:
        (st.dir / "half.txt").write_text("x")
        raise InputError("bad scene")
    assert storage.files_under(f"{s3_bucket}/root") == []


def test_a_crash_while_publishing_leaves_nothing_trusted(s3_bucket, monkeypatch):
    """Publishing a new version over an old one dies after the first copied object: the old
    manifest is gone (readers stop trusting the old files), the new one is not there yet,
    and the rerun publishes the new version whole."""
    final = f"{s3_bucket}/root/thing"
    with artifacts.stage(final, "old", "test") as st:
        (st.dir / "a.txt").write_text("old a")
    fs = storage.path(final).fs
    copy = fs.copy
    calls = []

    def dying_copy(*args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise Crash
        return copy(*args, **kwargs)

    monkeypatch.setattr(fs, "copy", dying_copy)
    with pytest.raises(Crash), artifacts.stage(final, "new", "test") as st:
        (st.dir / "a.txt").write_text("new a")
        (st.dir / "b.txt").write_text("new b")
    assert not storage.path(f"{final}/{layout.MANIFEST}").exists()
    assert not artifacts.is_current(final, "old") and not artifacts.is_current(final, "new")
    with pytest.raises(ArtifactError, match="no manifest.json"):
        artifacts.read_manifest(final)
    monkeypatch.setattr(fs, "copy", copy)
    with artifacts.stage(final, "new", "test") as st:
        pass  # the staged files of the crashed publish are still there
    assert artifacts.is_current(final, "new")
    assert storage.path(f"{final}/b.txt").read_text() == "new b"


def test_json_and_shards_are_whole_objects_or_nothing(s3_bucket):
    from reseg.tfrecords_schema import TFRecordShardWriter
    from reseg.tfrecords_schema.schema import iter_records

    shard = f"{s3_bucket}/x/part-0.tfrecord.gz"
    with pytest.raises(Crash), TFRecordShardWriter(shard) as w:
        w.write(b"record")
        raise Crash
    assert not storage.path(shard).exists()
    with TFRecordShardWriter(shard) as w:
        w.write(b"one")
        w.write(b"two")
    assert list(iter_records(shard)) == [b"one", b"two"]


def test_local_copy_is_bounded_and_follows_rewrites(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RESEG_CACHE_BYTES", "2500")
    for i in range(4):
        storage.path(f"{s3_bucket}/f{i}.bin").write_bytes(bytes([i]) * 1000)
    copies = [storage.local_copy(f"{s3_bucket}/f{i}.bin") for i in range(4)]
    kept = sorted(p.name for p in (tmp_path / "objects").iterdir())
    assert len(kept) == 2 and copies[-1].name in kept  # oldest evicted, the bound holds
    storage.path(f"{s3_bucket}/f3.bin").write_bytes(b"rewritten")
    assert storage.local_copy(f"{s3_bucket}/f3.bin").read_bytes() == b"rewritten"
    with pytest.raises(Exception, match="RESEG_CACHE_BYTES"):
        storage.local_copies([f"{s3_bucket}/f{i}.bin" for i in range(4)])
