"""tf.data input of training: TFRecord tiles -> normalised (image, label, weight) batches.

Every example goes through the schema's parser (`reseg.tfrecords_schema.make_parser`)
and then one of two views. A model of evaluation fold k holds out the folds
`held` = {k, v}, v = `reseg.folds.validation_fold(k, K)` (just {k} when K < 3):

- training (tiles whose `fold` is not held): label := 255 where `fold_map` is a
  held fold. Those pixels belong to a core of fold k or v but lie in the overlap
  margin of a training tile; masking them keeps every evaluated and every
  validated pixel out of training (no leakage).
- validation (`fold == v` tiles): label := 255 outside the tile's core, so each
  scene pixel is validated exactly once although tiles overlap. Fold k's tiles
  are never read here: they are evaluated after training, by the evaluator.

With nothing held (the `full` models) every tile trains and nothing validates. In
both views

    image  = (raw - mean) / std,  0 where `valid == 0`        (H, W, B) float32
    label  = class id, 255 = ignore                            (H, W)    int32
    weight = per-pixel weight (1 when absent) * (label != 255) (H, W)    float32
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reseg import storage
from reseg.components.trainer.augment import JointAugment
from reseg.config.data import IGNORE
from reseg.config.train import AugmentConfig
from reseg.tfrecords_schema import make_parser
from reseg.tfrecords_schema.schema import K_FOLD


@dataclass(frozen=True)
class InputSpec:
    """What the parser and the normalisation need to know about the tiles."""

    image_dtype: str
    bands: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != self.bands or len(self.std) != self.bands:
            raise ValueError(
                f"mean and std need one value per band ({self.bands}), received "
                f"{len(self.mean)} means and {len(self.std)} stds"
            )


def _records(
    files: Sequence[Path],
    *,
    shuffle: bool,
    seed: int,
    deterministic: bool,
    shard: tuple[int, int] | None = None,
):
    """Parallel interleaved reads of gzip TFRecord files (file order shuffled when training).

    `shard = (n, i)` keeps records i, i + n, i + 2n, ... of every file: disjoint shards for
    n input pipelines whatever the number of files and the interleave order.
    """
    import tensorflow as tf

    def read(name):
        ds = tf.data.TFRecordDataset(name, compression_type="GZIP")
        return ds if shard is None else ds.shard(*shard)

    files = storage.local_copies(list(files))  # TF has no s3://: shards staged in the cache
    names = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    if shuffle:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    return names.interleave(
        read,
        cycle_length=max(1, min(len(files), 8)),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )


def _options(deterministic: bool):
    import tensorflow as tf

    opts = tf.data.Options()
    opts.deterministic = deterministic
    opts.autotune.enabled = True
    # input pipelines shard themselves (`shard=`); a strategy must not shard again
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return opts


def _normalise(ex: dict, spec: InputSpec):
    import tensorflow as tf

    mean = tf.constant(np.asarray(spec.mean, np.float32))
    std = tf.constant(np.asarray(spec.std, np.float32))
    image = (ex["image"] - mean) / std
    return tf.where(ex["valid"][..., None] > 0, image, tf.zeros_like(image))


def _finish(image, label, weight):
    import tensorflow as tf

    label = tf.cast(label, tf.int32)
    weight = tf.where(label == IGNORE, tf.zeros_like(weight), weight)
    return image, label, weight


def _core_mask(ex: dict):
    """(H, W) bool, True inside the tile's core (`core` is row, col, height, width in the scene)."""
    import tensorflow as tf

    shape = tf.shape(ex["label"], out_type=tf.int64)
    rows = ex["row"] + tf.range(shape[0])
    cols = ex["col"] + tf.range(shape[1])
    r0, c0, h, w = ex["core"][0], ex["core"][1], ex["core"][2], ex["core"][3]
    in_rows = (rows >= r0) & (rows < r0 + h)
    in_cols = (cols >= c0) & (cols < c0 + w)
    return in_rows[:, None] & in_cols[None, :]


def _held(folds, held: Sequence[int]):
    """Elementwise: is `folds` (any shape, integer) one of the `held` folds."""
    import tensorflow as tf

    out = tf.zeros_like(folds, tf.bool)
    for f in held:
        out |= tf.equal(folds, tf.cast(f, folds.dtype))
    return out


def training_view(ex: dict, spec: InputSpec, held: Sequence[int]):
    """(image, label, weight) of a training tile; labels of the `held` folds' pixels masked."""
    import tensorflow as tf

    label = ex["label"]
    if held:
        label = tf.where(_held(ex["fold_map"], held), tf.constant(IGNORE, tf.uint8), label)
    return _finish(_normalise(ex, spec), label, ex["weight"])


def validation_view(ex: dict, spec: InputSpec):
    """(image, label, weight) of a validation tile; labels outside its core masked; weights 1."""
    import tensorflow as tf

    label = tf.where(_core_mask(ex), ex["label"], tf.constant(IGNORE, tf.uint8))
    return _finish(_normalise(ex, spec), label, tf.ones_like(ex["weight"]))


def count_examples(
    files: Sequence[Path],
    folds: Sequence[int],
    *,
    validation: bool,
    shard: tuple[int, int] | None = None,
) -> int:
    """Number of tiles a view keeps: those whose fold is not in `folds` for training (the held
    folds), those whose fold is in `folds` for validation (the validation fold).

    Parses only `tile/fold`, so it costs one decompression pass over the files. `shard`
    as in `training_dataset`.
    """
    import tensorflow as tf

    if not files:
        return 0
    spec = {K_FOLD: tf.io.FixedLenFeature([], tf.int64)}

    def fold_of(record):
        return tf.io.parse_single_example(record, spec)[K_FOLD]

    def keep(f):
        inside = _held(f, folds)
        return inside if validation else tf.logical_not(inside)

    def count(n, _):
        return n + 1

    ds = _records(files, shuffle=False, seed=0, deterministic=False, shard=shard)
    tile_folds = ds.map(fold_of, num_parallel_calls=tf.data.AUTOTUNE)
    return int(tile_folds.filter(keep).reduce(np.int64(0), count))


def training_dataset(
    files: Sequence[Path],
    spec: InputSpec,
    *,
    held: Sequence[int] = (),
    batch_size: int,
    shuffle_buffer: int = 512,
    seed: int = 0,
    augment: AugmentConfig | None = None,
    cache: bool = False,
    deterministic: bool = False,
    repeat: bool = True,
    shard: tuple[int, int] | None = None,
):
    """Endless shuffled, augmented batches of the training view (`held`: the folds held out).

    Yields `(image (N, H, W, B) float32, label (N, H, W) int32, weight (N, H, W) float32)`
    with N = `batch_size`: the batch of one input pipeline (one replica). `shard = (n, i)`
    makes this pipeline i of n, reading a disjoint share of the records (`_records`).
    """
    import tensorflow as tf

    parse = make_parser(spec.image_dtype, spec.bands)
    ds = _records(files, shuffle=True, seed=seed, deterministic=deterministic, shard=shard)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if held:
        ds = ds.filter(lambda ex: tf.logical_not(_held(ex["fold"], held)))
    ds = ds.map(lambda ex: training_view(ex, spec, held), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=repeat, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None and augment.enabled:
        aug = JointAugment(augment, seed=seed)
        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(deterministic))


def validation_dataset(files: Sequence[Path], spec: InputSpec, *, fold: int, batch_size: int):
    """Batches of the validation view of fold `fold`, in file order, one pass."""
    import tensorflow as tf

    parse = make_parser(spec.image_dtype, spec.bands)
    ds = _records(files, shuffle=False, seed=0, deterministic=True)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.filter(lambda ex: tf.equal(ex["fold"], fold))
    ds = ds.map(lambda ex: validation_view(ex, spec), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(True))
