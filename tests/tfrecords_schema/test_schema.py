"""Tile schema v1: round trips through our writer, tf.data and Beam's reader agree."""

import gzip

import numpy as np
import pytest
import tensorflow as tf

from reseg.errors import SchemaError
from reseg.tfrecords_schema import (
    SCHEMA_VERSION,
    TFRecordShardWriter,
    Tile,
    decode,
    encode,
    make_parser,
    read_tiles,
)
from reseg.tfrecords_schema import schema as S


def make_tile(dtype="uint16", bands=4, h=8, w=6, seed=0, **kw):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 1000, (h, w, bands)).astype(dtype)
    return Tile(
        image=img,
        label=rng.integers(0, 3, (h, w)).astype("uint8"),
        valid=np.ones((h, w), "uint8"),
        fold_map=np.full((h, w), 2, "uint8"),
        scene="s1",
        row=16,
        col=32,
        core=(20, 36, 4, 2),
        fold=2,
        crs="EPSG:4326",
        transform=(10.0, 1.0, 0.0, 20.0, 0.0, -1.0),
        **kw,
    )


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_encode_decode_round_trip(dtype):
    t = make_tile(dtype)
    probs = np.random.default_rng(1).random((8, 6, 3)).astype("float32")
    t = t.with_scores(probs, 4).with_weight(np.full((8, 6), 2.5))
    back = decode(encode(t))
    np.testing.assert_array_equal(back.image, t.image)
    assert back.image.dtype == np.dtype(dtype)
    for name in ("label", "valid", "fold_map", "probs", "weight"):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name))
    assert (back.scene, back.row, back.col, back.core, back.fold, back.score_round) == (
        "s1",
        16,
        32,
        (20, 36, 4, 2),
        2,
        4,
    )
    assert back.core_slice() == (slice(4, 8), slice(4, 6))


def test_unknown_version_is_refused_by_every_reader(tmp_path):
    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example.FromString(encode(make_tile()))
    ex.features.feature[S.K_VERSION].int64_list.value[0] = SCHEMA_VERSION + 1
    rec = ex.SerializeToString()
    with pytest.raises(SchemaError, match="version 2 is not supported"):
        decode(rec, source="x.tfrecord.gz")
    parse = make_parser("uint16", 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="schema version"):
        parse(tf.constant(rec))


def test_our_shards_read_back_in_tf_data_with_gzip(tmp_path):
    path = tmp_path / "part-0.tfrecord.gz"
    tiles = [make_tile(seed=i) for i in range(3)]
    with TFRecordShardWriter(path) as w:
        for t in tiles:
            w.write(encode(t))
    assert not (tmp_path / "part-0.tfrecord.gz.partial").exists()
    ds = tf.data.TFRecordDataset([str(path)], compression_type="GZIP").map(
        make_parser("uint16", 4, num_classes=3)
    )
    got = list(ds.as_numpy_iterator())
    assert len(got) == 3
    for t, g in zip(tiles, got, strict=True):
        np.testing.assert_array_equal(g["image"], t.image.astype("float32"))
        np.testing.assert_array_equal(g["label"], t.label)
        assert (g["weight"] == 1).all() and (g["probs"] == 0).all()
    assert [t.label.tolist() for t in read_tiles(path)] == [t.label.tolist() for t in tiles]


def test_writer_output_is_byte_identical_for_equal_records(tmp_path):
    for name in ("a", "b"):
        with TFRecordShardWriter(tmp_path / f"{name}.tfrecord.gz") as w:
            w.write(encode(make_tile()))
    assert (tmp_path / "a.tfrecord.gz").read_bytes() == (tmp_path / "b.tfrecord.gz").read_bytes()


def test_corruption_is_detected(tmp_path):
    path = tmp_path / "p.tfrecord.gz"
    with TFRecordShardWriter(path) as w:
        w.write(encode(make_tile()))
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[40] ^= 0xFF
    bad = tmp_path / "bad.tfrecord.gz"
    bad.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(SchemaError, match="checksum"):
        list(read_tiles(bad))
    cut = tmp_path / "cut.tfrecord.gz"
    cut.write_bytes(gzip.compress(bytes(raw[:-10])))
    with pytest.raises(SchemaError, match="truncated"):
        list(read_tiles(cut))


def test_encode_rejects_bad_shapes():
    t = make_tile()
    with pytest.raises(SchemaError, match="label must be uint8"):
        encode(Tile(**{**t.__dict__, "label": t.label[:2]}))
