"""Joint augmentation: labels stay labels, image and label stay aligned, photometric is image-only."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reseg.components.trainer.augment import JointAugment
from reseg.config.train import AugmentConfig


def _batch(n=4, size=24, bands=2, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.choice(np.array([0, 3, 5, 255], np.int32), size=(n, size, size))
    image = rng.normal(size=(n, size, size, bands)).astype(np.float32)
    weight = rng.uniform(0.5, 2, size=(n, size, size)).astype(np.float32)
    weight[label == 255] = 0
    return image, label, weight


@settings(max_examples=10, deadline=None)
@given(
    rotation=st.floats(0, 180),
    flips=st.booleans(),
    rot90=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_labels_stay_within_original_values_plus_255(rotation, flips, rot90, seed):
    image, label, weight = _batch(seed=seed)
    cfg = AugmentConfig(
        rotation=rotation, flips=flips, rot90=rot90, brightness=0.5, contrast=0.5, noise_std=0.3
    )
    _, out_label, out_weight = (
        t.numpy() for t in JointAugment(cfg, seed=seed)(image, label, weight)
    )
    assert set(np.unique(out_label)) <= {0, 3, 5, 255}
    # a pixel without a label carries no weight (rotated-in border or an ignored pixel)
    assert (out_weight[out_label == 255] == 0).all()
    # weights only take original values (nearest neighbour) or 0
    assert set(np.unique(out_weight)) <= set(np.unique(weight)) | {0.0}


def test_known_edge_stays_aligned_between_image_and_label_after_rotation():
    n, size = 8, 48
    cols = np.arange(size)
    label = np.broadcast_to(np.where(cols < size // 2, 1, 2), (n, size, size)).astype(np.int32)
    image = np.where(label == 1, -1.0, 1.0).astype(np.float32)[..., None]  # the band shows the edge
    weight = np.ones((n, size, size), np.float32)
    cfg = AugmentConfig(rotation=45, flips=True, rot90=True)
    out_image, out_label, out_weight = (
        t.numpy() for t in JointAugment(cfg, seed=7)(image, label, weight)
    )
    band = out_image[..., 0]
    rotated_in = out_label == 255
    assert rotated_in.any(), "45 degree rotations must bring in filled corners"
    assert (out_weight[rotated_in] == 0).all() and (out_weight[~rotated_in] == 1).all()
    # away from the edge (bilinear mixes the two sides only there) image and label agree
    clear = np.abs(band) > 0.9
    assert clear[~rotated_in].mean() > 0.8
    agree = np.where(band > 0, 2, 1)
    np.testing.assert_array_equal(agree[clear & ~rotated_in], out_label[clear & ~rotated_in])
    # the edge moved: the tiles were really turned, not left as they were
    assert not all((out_label[i] == label[i]).all() for i in range(n))


def test_photometric_transforms_touch_the_image_only():
    image, label, weight = _batch()
    cfg = AugmentConfig(
        flips=False, rot90=False, rotation=0, brightness=0.5, contrast=0.5, noise_std=0.5
    )
    out_image, out_label, out_weight = (
        t.numpy() for t in JointAugment(cfg, seed=1)(image, label, weight)
    )
    np.testing.assert_array_equal(out_label, label)
    np.testing.assert_array_equal(out_weight, weight)
    assert not np.allclose(out_image, image)
    # brightness and contrast are not clipped for normalised images
    assert out_image.min() < -2 and out_image.max() > 2


def test_no_augmentation_is_identity():
    image, label, weight = _batch()
    cfg = AugmentConfig(flips=False, rot90=False)
    out = [t.numpy() for t in JointAugment(cfg)(image, label, weight)]
    for a, b in zip(out, (image, label, weight), strict=True):
        np.testing.assert_array_equal(a, b)
