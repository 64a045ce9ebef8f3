"""Tile examples, version 1.

| feature | type | meaning |
|---|---|---|
| schema/version | int64 | refused by readers unless it is `SCHEMA_VERSION` |
| image/raw | bytes | H x W x B, row-major, band last, dtype `image/dtype` |
| image/dtype | bytes | uint8, uint16, int16 or float32 |
| image/height, image/width, image/bands | int64 | |
| image/valid | bytes | H x W uint8, 1 where every band holds data (not nodata, not NaN, not padding) |
| label/raw | bytes | H x W uint8 class ids, 255 = ignore |
| tile/scene | bytes | scene id |
| tile/row, tile/col | int64 | offset of the tile in the scene, pixels (may be negative: never, see tiling) |
| tile/core | int64 x 4 | row, col, height, width of the core, scene pixels |
| tile/fold | int64 | fold of the tile's core |
| tile/fold_map | bytes | H x W uint8, fold of the core owning each pixel; 255 outside the scene |
| geo/crs | bytes | WKT ('' when not georeferenced) |
| geo/transform | float x 6 | affine of the tile, GDAL order (c, a, b, f, d, e) |
| score/probs | bytes, optional | H x W x C float16 class probabilities |
| score/round | int64, optional | round that wrote `score/probs` |
| weight/raw | bytes, optional | H x W float16 per-pixel loss weight |
| tile/role_map | bytes, optional | H x W uint8 role of each pixel: 0 labelled, 1 unlabelled, 2 target; 255 outside the scene (absent: every pixel labelled) |
| target/raw | bytes, optional | H x W uint8 class ids of target pixels, 255 elsewhere: read by target evaluation only |

Target and unlabelled pixels carry 255 in `label/raw`: training, statistics and
selection read only `label/raw`, so a target label cannot reach them. The trainer's
parser does not read the two optional maps; readers that ignore them stay correct.

`tile/fold_map` is what makes folds leakage-free: training for validation fold k
masks the labels of pixels whose owner core is in fold k, even when they lie in
the overlap margin of a tile of another fold.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import google_crc32c
import numpy as np

from reseg import storage
from reseg.errors import SchemaError

SCHEMA_VERSION = 1
IMAGE_DTYPES = ("uint8", "uint16", "int16", "float32")

K_VERSION = "schema/version"
K_IMAGE = "image/raw"
K_DTYPE = "image/dtype"
K_HEIGHT = "image/height"
K_WIDTH = "image/width"
K_BANDS = "image/bands"
K_VALID = "image/valid"
K_LABEL = "label/raw"
K_SCENE = "tile/scene"
K_ROW = "tile/row"
K_COL = "tile/col"
K_CORE = "tile/core"
K_FOLD = "tile/fold"
K_FOLD_MAP = "tile/fold_map"
K_CRS = "geo/crs"
K_TRANSFORM = "geo/transform"
K_PROBS = "score/probs"
K_ROUND = "score/round"
K_WEIGHT = "weight/raw"
K_ROLE_MAP = "tile/role_map"
K_TARGET = "target/raw"

ROLE_LABELLED, ROLE_UNLABELLED, ROLE_TARGET = 0, 1, 2
"""Values of `tile/role_map` (`reseg.config.data.ROLES` in order)."""


@dataclass(frozen=True)
class Tile:
    """One tile as numpy arrays. Shapes: image (H, W, B), the maps (H, W)."""

    image: np.ndarray
    label: np.ndarray
    valid: np.ndarray
    fold_map: np.ndarray
    scene: str
    row: int
    col: int
    core: tuple[int, int, int, int]
    fold: int
    crs: str = ""
    transform: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    probs: np.ndarray | None = None
    score_round: int | None = None
    weight: np.ndarray | None = field(default=None)
    role_map: np.ndarray | None = field(default=None)
    target: np.ndarray | None = field(default=None)

    @property
    def key(self) -> str:
        """Unique id of the tile in a tile set: scene and offset."""
        return f"{self.scene}/{self.row}/{self.col}"

    def core_slice(self) -> tuple[slice, slice]:
        """Index of the core inside the tile arrays."""
        r, c, h, w = self.core
        r0, c0 = r - self.row, c - self.col
        return slice(r0, r0 + h), slice(c0, c0 + w)

    def with_scores(self, probs: np.ndarray, score_round: int) -> Tile:
        return replace(self, probs=probs.astype(np.float16), score_round=score_round)

    def with_weight(self, weight: np.ndarray) -> Tile:
        return replace(self, weight=weight.astype(np.float16))

    def roles(self) -> np.ndarray:
        """(H, W) uint8 role of each pixel (`role_map`; every pixel labelled when absent)."""
        if self.role_map is not None:
            return self.role_map
        return np.where(self.fold_map == 255, 255, ROLE_LABELLED).astype(np.uint8)


def _example_pb2():
    from tensorflow.core.example import example_pb2

    return example_pb2


def encode(tile: Tile) -> bytes:
    """Serialise a tile to a `tf.train.Example`."""
    pb = _example_pb2()
    h, w, b = tile.image.shape
    dtype = tile.image.dtype.name
    if dtype not in IMAGE_DTYPES:
        raise SchemaError(f"image dtype must be one of {IMAGE_DTYPES}, received {dtype}")
    for name, arr in (("label", tile.label), ("valid", tile.valid), ("fold_map", tile.fold_map)):
        if arr.shape != (h, w) or arr.dtype != np.uint8:
            raise SchemaError(f"{name} must be uint8 {(h, w)}, received {arr.dtype} {arr.shape}")
    ex = pb.Example()
    f = ex.features.feature
    f[K_VERSION].int64_list.value.append(SCHEMA_VERSION)
    f[K_IMAGE].bytes_list.value.append(np.ascontiguousarray(tile.image).tobytes())
    f[K_DTYPE].bytes_list.value.append(dtype.encode())
    f[K_HEIGHT].int64_list.value.append(h)
    f[K_WIDTH].int64_list.value.append(w)
    f[K_BANDS].int64_list.value.append(b)
    f[K_VALID].bytes_list.value.append(np.ascontiguousarray(tile.valid).tobytes())
    f[K_LABEL].bytes_list.value.append(np.ascontiguousarray(tile.label).tobytes())
    f[K_SCENE].bytes_list.value.append(tile.scene.encode())
    f[K_ROW].int64_list.value.append(tile.row)
    f[K_COL].int64_list.value.append(tile.col)
    f[K_CORE].int64_list.value.extend(tile.core)
    f[K_FOLD].int64_list.value.append(tile.fold)
    f[K_FOLD_MAP].bytes_list.value.append(np.ascontiguousarray(tile.fold_map).tobytes())
    f[K_CRS].bytes_list.value.append(tile.crs.encode())
    f[K_TRANSFORM].float_list.value.extend(tile.transform)
    if tile.probs is not None:
        if tile.probs.shape[:2] != (h, w):
            raise SchemaError(f"probs must be {(h, w)} x C, received {tile.probs.shape}")
        f[K_PROBS].bytes_list.value.append(tile.probs.astype("<f2").tobytes())
        f[K_ROUND].int64_list.value.append(int(tile.score_round or 0))
    if tile.weight is not None:
        if tile.weight.shape != (h, w):
            raise SchemaError(f"weight must be {(h, w)}, received {tile.weight.shape}")
        f[K_WEIGHT].bytes_list.value.append(tile.weight.astype("<f2").tobytes())
    for key, name, arr in (
        (K_ROLE_MAP, "role_map", tile.role_map),
        (K_TARGET, "target", tile.target),
    ):
        if arr is not None:
            if arr.shape != (h, w) or arr.dtype != np.uint8:
                raise SchemaError(
                    f"{name} must be uint8 {(h, w)}, received {arr.dtype} {arr.shape}"
                )
            f[key].bytes_list.value.append(np.ascontiguousarray(arr).tobytes())
    return ex.SerializeToString(deterministic=True)


def _version_of(f) -> int | None:
    v = f[K_VERSION].int64_list.value if K_VERSION in f else []
    return int(v[0]) if v else None


def decode(record: bytes, source: str = "<record>") -> Tile:
    """Parse a serialised example back into a `Tile`; refuses unknown schema versions."""
    pb = _example_pb2()
    try:
        ex = pb.Example.FromString(record)
    except Exception as e:  # protobuf's DecodeError
        raise SchemaError(f"{source}: not a tf.train.Example ({e})") from None
    f = ex.features.feature
    version = _version_of(f)
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{source}: tile schema version {version} is not supported; this reseg reads "
            f"version {SCHEMA_VERSION} (re-run `reseg tile`)"
        )

    def i64(k: str) -> int:
        return int(f[k].int64_list.value[0])

    h, w, b = i64(K_HEIGHT), i64(K_WIDTH), i64(K_BANDS)
    dtype = f[K_DTYPE].bytes_list.value[0].decode()

    def raw(k: str, dt: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.frombuffer(f[k].bytes_list.value[0], dtype=dt).reshape(shape)

    probs = None
    score_round = None
    if K_PROBS in f and f[K_PROBS].bytes_list.value:
        probs = raw(K_PROBS, "<f2", (h, w, -1))
        score_round = i64(K_ROUND)
    weight = (
        raw(K_WEIGHT, "<f2", (h, w)) if K_WEIGHT in f and f[K_WEIGHT].bytes_list.value else None
    )

    def optional_u8(k: str) -> np.ndarray | None:
        return raw(k, "uint8", (h, w)) if k in f and f[k].bytes_list.value else None

    return Tile(
        image=raw(K_IMAGE, dtype, (h, w, b)),
        label=raw(K_LABEL, "uint8", (h, w)),
        valid=raw(K_VALID, "uint8", (h, w)),
        fold_map=raw(K_FOLD_MAP, "uint8", (h, w)),
        scene=f[K_SCENE].bytes_list.value[0].decode(),
        row=i64(K_ROW),
        col=i64(K_COL),
        core=tuple(int(v) for v in f[K_CORE].int64_list.value),  # type: ignore[arg-type]
        fold=i64(K_FOLD),
        crs=f[K_CRS].bytes_list.value[0].decode(),
        transform=tuple(float(v) for v in f[K_TRANSFORM].float_list.value),
        probs=probs,
        score_round=score_round,
        weight=weight,
        role_map=optional_u8(K_ROLE_MAP),
        target=optional_u8(K_TARGET),
    )


# --- TFRecord framing (what tf.io.TFRecordWriter writes), gzip-compressed ---------------


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordShardWriter:
    """Writes one gzip TFRecord shard to `path + '.partial'` and renames it on `close`; on
    object storage the shard is put as one object on `close` (`storage.atomic_write`).

    The gzip header carries no name and mtime 0, so equal records give equal bytes.
    """

    def __init__(self, path: str | Path, compresslevel: int = 6):
        self.path = storage.path(path)
        self._target = storage.atomic_write(self.path, "wb")
        self._raw = self._target.__enter__()
        self._gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._raw, compresslevel=compresslevel, mtime=0
        )
        self.count = 0

    def write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self._gz.write(
            header
            + struct.pack("<I", _masked_crc(header))
            + record
            + struct.pack("<I", _masked_crc(record))
        )
        self.count += 1

    def close(self) -> None:
        self._gz.close()
        self._target.__exit__(None, None, None)

    def abort(self) -> None:
        self._gz.close()
        err = OSError("shard aborted")
        try:
            self._target.__exit__(OSError, err, None)
        except OSError as e:
            if e is not err:
                raise

    def __enter__(self) -> TFRecordShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_records(path: str | Path) -> Iterator[bytes]:
    """Records of a gzip TFRecord file, with length and data checksums verified."""
    path = storage.path(path)
    with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as fh:
        while True:
            header = fh.read(12)
            if not header:
                return
            if len(header) < 12:
                raise SchemaError(f"{path}: truncated TFRecord (partial header)")
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != _masked_crc(header[:8]):
                raise SchemaError(f"{path}: corrupt TFRecord (length checksum)")
            data = fh.read(length)
            footer = fh.read(4)
            if len(data) < length or len(footer) < 4:
                raise SchemaError(f"{path}: truncated TFRecord (partial record)")
            if struct.unpack("<I", footer)[0] != _masked_crc(data):
                raise SchemaError(f"{path}: corrupt TFRecord (data checksum)")
            yield data


def read_tiles(paths: str | Path | list[str] | list[Path]) -> Iterator[Tile]:
    """Decode every tile of one or more gzip TFRecord files, in file order."""
    if isinstance(paths, (str, Path)) or storage.is_remote(paths):
        paths = [paths]  # type: ignore[list-item]
    for p in paths:
        for i, rec in enumerate(iter_records(p)):
            yield decode(rec, source=f"{p} record {i}")


def check_file(path: str | Path) -> None:
    """Raise SchemaError unless the file's first record is a tile of this schema version."""
    for rec in iter_records(path):
        decode(rec, source=str(path))
        return


# --- tf.data ------------------------------------------------------------------------------


def make_parser(image_dtype: str, bands: int, num_classes: int | None = None):
    """A tf.data map function: serialised example -> dict of tensors.

    Returns `image` (H, W, B) float32 as stored (not normalised), `label` (H, W)
    uint8, `valid` (H, W) uint8, `fold_map` (H, W) uint8, `weight` (H, W) float32
    (ones when the example has none), `core` (4,) int64, `fold` int64, `scene`
    string, `row`/`col` int64, and `probs` (H, W, C) float32 when `num_classes`
    is given (zeros when absent). A record of another schema version fails with
    an InvalidArgumentError naming the version.
    """
    import tensorflow as tf

    if image_dtype not in IMAGE_DTYPES:
        raise SchemaError(f"image dtype must be one of {IMAGE_DTYPES}, received {image_dtype}")
    out_type = tf.as_dtype(image_dtype)
    spec = _feature_spec(tf)

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        tf.debugging.assert_equal(
            ex[K_VERSION],
            tf.constant(SCHEMA_VERSION, tf.int64),
            message=f"tile schema version is not {SCHEMA_VERSION}; re-run `reseg tile`",
        )
        h, w = ex[K_HEIGHT], ex[K_WIDTH]
        hw = tf.stack([h, w])
        image = tf.reshape(tf.io.decode_raw(ex[K_IMAGE], out_type), tf.concat([hw, [bands]], 0))

        def u8(k):
            return tf.reshape(tf.io.decode_raw(ex[k], tf.uint8), hw)

        weight = _float16_or(tf, ex[K_WEIGHT], hw, tf.ones)
        out = {
            "image": tf.cast(image, tf.float32),
            "label": u8(K_LABEL),
            "valid": u8(K_VALID),
            "fold_map": u8(K_FOLD_MAP),
            "weight": weight,
            "core": ex[K_CORE],
            "fold": ex[K_FOLD],
            "scene": ex[K_SCENE],
            "row": ex[K_ROW],
            "col": ex[K_COL],
        }
        if num_classes is not None:
            shape = tf.concat([hw, [num_classes]], 0)
            out["probs"] = _float16_or(tf, ex[K_PROBS], shape, tf.zeros)
        return out

    return parse


def _feature_spec(tf) -> dict:
    """`tf.io.parse_single_example`'s spec of a tile (version -1 and empty weight and probs
    when a record has none)."""
    return {
        K_VERSION: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        K_IMAGE: tf.io.FixedLenFeature([], tf.string),
        K_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        K_WIDTH: tf.io.FixedLenFeature([], tf.int64),
        K_VALID: tf.io.FixedLenFeature([], tf.string),
        K_LABEL: tf.io.FixedLenFeature([], tf.string),
        K_FOLD_MAP: tf.io.FixedLenFeature([], tf.string),
        K_SCENE: tf.io.FixedLenFeature([], tf.string),
        K_ROW: tf.io.FixedLenFeature([], tf.int64),
        K_COL: tf.io.FixedLenFeature([], tf.int64),
        K_CORE: tf.io.FixedLenFeature([4], tf.int64),
        K_FOLD: tf.io.FixedLenFeature([], tf.int64),
        K_WEIGHT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        K_PROBS: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def _float16_or(tf, data, shape, fill):
    """Graph of an optional float16 array: `data` (bytes) as float32 `shape`, or
    `fill(shape, float32)` (tf.ones, tf.zeros) when `data` is empty. Called once, while
    tf.data traces the parser, so it adds nothing per record."""
    return tf.cond(
        tf.strings.length(data) > 0,
        lambda: tf.cast(tf.reshape(tf.io.decode_raw(data, tf.float16), shape), tf.float32),
        lambda: fill(shape, tf.float32),
    )
