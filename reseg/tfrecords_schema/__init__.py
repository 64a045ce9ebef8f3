"""The TFRecord schema of reseg tiles: keys, dtypes and version, in one place.

Encoder (`encode`), decoder (`decode`), the tf.data parser (`make_parser`) and
the shard writer (`TFRecordShardWriter`) all live in `schema`.
"""

from reseg.tfrecords_schema.schema import (
    IMAGE_DTYPES,
    SCHEMA_VERSION,
    TFRecordShardWriter,
    Tile,
    check_file,
    decode,
    encode,
    make_parser,
    read_tiles,
)

__all__ = [
    "IMAGE_DTYPES",
    "SCHEMA_VERSION",
    "TFRecordShardWriter",
    "Tile",
    "check_file",
    "decode",
    "encode",
    "make_parser",
    "read_tiles",
]
