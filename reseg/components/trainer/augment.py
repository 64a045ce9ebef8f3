"""Joint augmentation of image, label and weight map, from Keras 3 preprocessing layers.

Geometric transforms (flip, 90-degree turn, rotation) must move the image, the
labels and the weights together. Keras' image layers transform a dict
`{"images", "segmentation_masks"}` with one random draw, masks with
nearest-neighbour interpolation, so label and weight travel as a two-channel mask

    mask = [label + 1, weight]      (float32; 0 is what the layers fill with)

and come back as `label = mask[0] - 1` (255 where the fill value 0 arrived) and
`weight = mask[1]` (0 where filled). Labels therefore only ever take original
values or 255, and a pixel rotated in from outside the tile carries no loss.
Images are interpolated bilinearly and filled with 0, the band mean after
normalisation. Photometric transforms (brightness, contrast, Gaussian noise)
touch the image only.

Keras' brightness and contrast layers clip to a `value_range`; for normalised
images (no natural range) the range is set so wide that clipping never acts:
RandomBrightness adds factor * (hi - lo), so factor = brightness / (hi - lo).
"""

from __future__ import annotations

from reseg.config.data import IGNORE
from reseg.config.train import AugmentConfig

_RANGE = (-1.0e4, 1.0e4)  # never reached by normalised images


class JointAugment:
    """Callable on batches: `(image (N,H,W,B), label (N,H,W) int32, weight (N,H,W))` -> same.

    Args:
        cfg: the `train.augment` section.
        seed: base seed of the layers' random draws.
    """

    def __init__(self, cfg: AugmentConfig, seed: int = 0):
        import keras

        self.cfg = cfg
        self.flip = (
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed, name="aug_flip")
            if cfg.flips
            else None
        )
        self.rotate = None
        if cfg.rotation > 0:
            f = cfg.rotation / 360.0
            self.rotate = keras.layers.RandomRotation(
                (-f, f),
                fill_mode="constant",
                fill_value=0.0,
                interpolation="bilinear",
                seed=seed + 1,
                name="aug_rotate",
            )
        self.brightness = None
        if cfg.brightness > 0:
            factor = cfg.brightness / (_RANGE[1] - _RANGE[0])
            self.brightness = keras.layers.RandomBrightness(
                factor, value_range=_RANGE, seed=seed + 2, name="aug_brightness"
            )
        self.contrast = None
        if cfg.contrast > 0:
            self.contrast = keras.layers.RandomContrast(
                cfg.contrast, value_range=_RANGE, seed=seed + 3, name="aug_contrast"
            )
        self.noise = (
            keras.layers.GaussianNoise(cfg.noise_std, seed=seed + 4, name="aug_noise")
            if cfg.noise_std > 0
            else None
        )
        self.seed = seed

    def _rot90(self, image, mask):
        """Turn each example by k * 90 degrees, k uniform in 0..3 (0 or 2 for non-square tiles)."""
        import keras
        import tensorflow as tf

        n = tf.shape(image)[0]
        square = image.shape[1] is not None and image.shape[1] == image.shape[2]
        k = tf.random.uniform([n], 0, 4 if square else 2, dtype=tf.int32, seed=self.seed + 5)
        if not square:
            k = 2 * k

        def turn(x):
            out = x
            for j in (1, 2, 3) if square else (2,):
                sel = tf.reshape(k == j, [-1, 1, 1, 1])
                out = tf.where(sel, keras.ops.rot90(x, k=j, axes=(1, 2)), out)
            return out

        return turn(image), turn(mask)

    def __call__(self, image, label, weight):
        import tensorflow as tf

        cfg = self.cfg
        image = tf.convert_to_tensor(image, tf.float32)
        label = tf.convert_to_tensor(label, tf.int32)
        weight = tf.convert_to_tensor(weight, tf.float32)
        mask = tf.stack([tf.cast(label, tf.float32) + 1.0, weight], axis=-1)
        if self.flip is not None:
            out = self.flip({"images": image, "segmentation_masks": mask}, training=True)
            image, mask = out["images"], out["segmentation_masks"]
        if cfg.rot90:
            image, mask = self._rot90(image, mask)
        if self.rotate is not None:
            out = self.rotate({"images": image, "segmentation_masks": mask}, training=True)
            image, mask = out["images"], out["segmentation_masks"]
        if self.brightness is not None:
            image = self.brightness(image, training=True)
        if self.contrast is not None:
            image = self.contrast(image, training=True)
        if self.noise is not None:
            image = self.noise(image, training=True)
        code = tf.cast(tf.round(mask[..., 0]), tf.int32)
        label = tf.where(code == 0, IGNORE, code - 1)
        weight = tf.where(code == 0, 0.0, mask[..., 1])
        return image, label, weight
