"""The tf.data views of K-fold training: masking, normalisation, weights, no leakage."""

from __future__ import annotations

import numpy as np
import pytest

from reseg import layout
from reseg.artifacts import Stats, TileSet
from reseg.components.trainer import data
from reseg.config.train import AugmentConfig
from reseg.folds import held_folds, validation_fold
from tests.components.trainer.tiles import scene_tiles, write_tiles


def _spec(root) -> data.InputSpec:
    ts, st = TileSet.load(layout.tiles_dir(root)), Stats.load(layout.stats_dir(root))
    return data.InputSpec(ts.image_dtype, ts.bands, ts.num_classes, tuple(st.mean), tuple(st.std))


def _examples(root, view, fold, k=3):
    """Every example of a view of evaluation fold `fold`, unbatched, with its tile offset, in
    file order: "train" holds out folds `fold` and its validation fold, "val" reads the
    validation fold's tiles (`fold` itself when `view` is "eval")."""
    import tensorflow as tf

    from reseg.tfrecords_schema import make_parser

    ts = TileSet.load(layout.tiles_dir(root))
    spec = _spec(root)
    ds = tf.data.TFRecordDataset([str(f) for f in ts.files], compression_type="GZIP").map(
        make_parser(spec.image_dtype, spec.bands)
    )
    held = held_folds(fold, k)
    read = fold if view == "eval" else validation_fold(fold, k)
    out = []
    for ex in ds:
        if view == "train" and int(ex["fold"]) in held:
            continue
        if view != "train" and int(ex["fold"]) != read:
            continue
        fn = (
            data.training_view(ex, spec, held)
            if view == "train"
            else data.validation_view(ex, spec)
        )
        image, label, weight = (t.numpy() for t in fn)
        out.append((int(ex["row"]), int(ex["col"]), image, label, weight))
    return out


def _scene_mask(examples, shape):
    """Scene pixels carrying a label in any example (count per pixel)."""
    count = np.zeros(shape, np.int64)
    for r, c, _, label, _ in examples:
        h, w = label.shape
        sub = label[max(0, -r) : shape[0] - r, max(0, -c) : shape[1] - c] != 255
        count[r : r + sub.shape[0], c : c + sub.shape[1]] += sub
    return count


def _scene_fold(tiles, shape):
    """The fold of the core owning each scene pixel."""
    out = np.full(shape, 255, np.uint8)
    for t in tiles:
        r, c, h, w = t.core
        out[r : r + h, c : c + w] = t.fold
    return out


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_three_roles_no_evaluated_or_validated_pixel_is_ever_trained_on(tiled, fold):
    """Pixel by pixel in scene coordinates: the training view's labelled pixels lie in the
    training folds only; the validation view's are exactly the validation fold's labelled
    pixels, once each; the evaluation fold is read by neither."""
    root, scene, tiles = tiled
    owner = _scene_fold(tiles, scene.label.shape)
    trained = _scene_mask(_examples(root, "train", fold), scene.label.shape)
    validated = _scene_mask(_examples(root, "val", fold), scene.label.shape)
    v = validation_fold(fold, 3)
    assert v == (fold + 1) % 3
    assert validated.sum() > 0 and trained.sum() > 0
    assert not np.any((trained > 0) & (validated > 0))
    assert not np.any((trained > 0) & (owner == fold))  # no evaluation pixel trains
    assert not np.any((trained > 0) & (owner == v))  # no validation pixel trains
    labelled = scene.label != 255
    np.testing.assert_array_equal(validated, (labelled & (owner == v)).astype(np.int64))
    # every labelled pixel of the one training fold trains
    (train_fold,) = {0, 1, 2} - {fold, v}
    assert np.all(trained[labelled & (owner == train_fold)] > 0)


def test_every_labelled_pixel_is_validated_exactly_once_over_the_folds(tiled):
    root, scene, tiles = tiled
    total = sum(_scene_mask(_examples(root, "val", k), scene.label.shape) for k in range(3))
    np.testing.assert_array_equal(total, (scene.label != 255).astype(np.int64))


def test_with_two_folds_only_the_evaluation_fold_is_held_out(tiled):
    """K < 3: no validation fold; the training view holds out fold k alone."""
    root, scene, tiles = tiled
    assert validation_fold(0, 2) is None and held_folds(0, 2) == (0,)
    owner = _scene_fold(tiles, scene.label.shape)
    trained = _scene_mask(_examples(root, "train", 0, k=2), scene.label.shape)
    labelled = scene.label != 255
    assert not np.any((trained > 0) & (owner == 0))
    assert np.all(trained[labelled & (owner != 0)] > 0)


def test_training_view_normalises_masks_invalid_and_weights_ignored(tiled):
    root, scene, tiles = tiled
    spec = _spec(root)
    ex = _examples(root, "train", None)
    by_offset = {(t.row, t.col): t for t in tiles}
    for r, c, image, label, weight in ex:
        t = by_offset[(r, c)]
        np.testing.assert_array_equal(label, t.label.astype(np.int32))  # fold None: nothing masked
        expected = (t.image.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)
        expected[t.valid == 0] = 0
        np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(weight, (t.label != 255).astype(np.float32))  # no weights: 1
    assert any((t.valid == 0).any() for t in tiles)  # the nodata corner was exercised


def test_per_pixel_weights_are_read_and_zeroed_on_ignored_pixels(tmp_path, tiled):
    import tensorflow as tf

    from reseg.tfrecords_schema import make_parser

    root, scene, tiles = tiled
    t = tiles[4]
    w = np.linspace(0, 2, t.label.size, dtype=np.float32).reshape(t.label.shape)
    (path,) = write_tiles([t.with_weight(w)], tmp_path / "sel", shards=1)
    spec = _spec(root)
    (ex,) = list(
        tf.data.TFRecordDataset(str(path), compression_type="GZIP").map(
            make_parser(spec.image_dtype, 3)
        )
    )
    _, label, weight = (v.numpy() for v in data.training_view(ex, spec, ()))
    expected = np.where(t.label == 255, 0, w.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(weight, expected)
    assert (label == 255).any() == (t.label == 255).any()


def test_count_examples_by_fold(tiled):
    root, _, tiles = tiled
    files = TileSet.load(layout.tiles_dir(root)).files
    for k in range(3):
        n_val = sum(t.fold == k for t in tiles)
        assert data.count_examples(files, [k], validation=True) == n_val
        assert data.count_examples(files, [k], validation=False) == len(tiles) - n_val
        held = held_folds(k, 3)
        n_held = sum(t.fold in held for t in tiles)
        assert data.count_examples(files, held, validation=False) == len(tiles) - n_held
    assert data.count_examples(files, (), validation=False) == len(tiles)
    assert data.count_examples(files, (), validation=True) == 0


def test_training_dataset_batches_endlessly_and_validation_once(tiled):
    root, _, tiles = tiled
    files = TileSet.load(layout.tiles_dir(root)).files
    spec = _spec(root)
    train = data.training_dataset(
        files,
        spec,
        held=(0, 1),
        batch_size=4,
        seed=1,
        augment=AugmentConfig(rotation=30, noise_std=0.1),
    )
    n_train = sum(t.fold == 2 for t in tiles)
    batches = list(train.take(2 * n_train))  # more batches than tiles: the stream repeats
    assert len(batches) == 2 * n_train
    image, label, weight = batches[0]
    assert image.shape == (4, 32, 32, 3) and image.dtype.name == "float32"
    assert label.shape == (4, 32, 32) and label.dtype.name == "int32"
    assert weight.shape == (4, 32, 32) and weight.dtype.name == "float32"
    val = list(data.validation_dataset(files, spec, fold=0, batch_size=2))
    assert sum(int(b[0].shape[0]) for b in val) == sum(t.fold == 0 for t in tiles)


def test_input_spec_checks_band_count():
    with pytest.raises(ValueError, match="one value per band"):
        data.InputSpec("uint16", 3, 2, (0.0, 0.0), (1.0, 1.0, 1.0))


def test_scene_tiles_helper_cores_partition_the_scene(tiled):
    _, scene, _ = tiled
    tiles = scene_tiles(scene, "s", 32, 8, 3)
    cover = np.zeros(scene.label.shape, np.int64)
    for t in tiles:
        r, c, h, w = t.core
        cover[r : r + h, c : c + w] += 1
    assert (cover == 1).all()
