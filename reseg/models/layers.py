"""Custom layers of the model zoo, written with `keras.ops`.

Every class is registered under the package name "reseg", so a saved model
reloads with `keras.models.load_model(path, safe_mode=True)` once
`reseg.models` is imported, without `custom_objects`. Every `__init__`
argument is returned by `get_config()`.

All layers take channels_last tensors `(batch, height, width, channels)` whose
height and width may be unknown until run time (`None` in the model's input):
they compute sizes with `keras.ops.shape`, never from Python ints, so they
trace into a `tf.function` with an input signature of `(None, None, None, bands)`
(the serving export). Keras' own bilinear `UpSampling2D` does not: it compares
the symbolic size with 0 in Python and fails in graph mode.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

_PACKAGE = "reseg"


def interpolation_matrix(out_size, in_size):
    """Bilinear interpolation weights along one axis, half-pixel centres.

    Row `o` holds the weights of the input samples for output sample `o`:
    `src = (o + 0.5) * in_size / out_size - 0.5`, clamped to `[0, in_size - 1]`;
    weight `1 - (src - floor(src))` on `floor(src)` and `src - floor(src)` on
    `min(floor(src) + 1, in_size - 1)`. This is `tf.image.resize(...,
    "bilinear")` without antialiasing.

    Args:
        out_size: Output length, a Python int or scalar int tensor.
        in_size: Input length, a Python int or scalar int tensor.

    Returns:
        float32 tensor of shape `(out_size, in_size)`.
    """
    in_f = ops.cast(in_size, "float32")
    scale = in_f / ops.cast(out_size, "float32")
    src = (ops.cast(ops.arange(out_size), "float32") + 0.5) * scale - 0.5
    src = ops.clip(src, 0.0, in_f - 1.0)
    low = ops.floor(src)
    frac = src - low
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, ops.cast(in_size, "int32") - 1)
    cols = ops.expand_dims(ops.arange(in_size, dtype="int32"), 0)
    w_low = ops.cast(ops.equal(cols, ops.expand_dims(low, 1)), "float32")
    w_high = ops.cast(ops.equal(cols, ops.expand_dims(high, 1)), "float32")
    return w_low * ops.expand_dims(1.0 - frac, 1) + w_high * ops.expand_dims(frac, 1)


def bilinear_resize(x, height, width):
    """Resize `(B, H, W, C)` to `(B, height, width, C)`, bilinear, half-pixel centres.

    Two small matrix products: `y = Mh @ x @ Mw^T` per image and channel, with
    `Mh = interpolation_matrix(height, H)` and `Mw = interpolation_matrix(width, W)`.
    """
    shape = ops.shape(x)
    mh = ops.cast(interpolation_matrix(height, shape[1]), x.dtype)
    mw = ops.cast(interpolation_matrix(width, shape[2]), x.dtype)
    y = ops.einsum("oh,bhwc->bowc", mh, x)
    return ops.einsum("pw,bowc->bopc", mw, y)


def _scaled(dim: int | None, factor: int) -> int | None:
    return None if dim is None else dim * factor


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InputSizeCheck(keras.layers.Layer):
    """Identity that refuses images whose height or width is not a multiple of `multiple`.

    With known sizes (eager calls) it raises `ValueError`; inside a graph with
    unknown sizes (tf.function, SavedModel) it adds an assertion that fails
    with the same message and both sizes at run time.

    Args:
        multiple: The model's output stride.
        model_name: Named in the error message.
    """

    def __init__(self, multiple: int, model_name: str = "model", **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)
        self.model_name = model_name

    def _message(self) -> str:
        return (
            f"Model '{self.model_name}' needs an input height and width that are multiples "
            f"of its output stride {self.multiple}."
        )

    def call(self, inputs):
        if self.multiple == 1:
            return inputs
        height, width = inputs.shape[1], inputs.shape[2]
        if isinstance(height, int) and isinstance(width, int):
            if height % self.multiple or width % self.multiple:
                raise ValueError(f"{self._message()} Received: height={height}, width={width}")
            return inputs
        if keras.backend.backend() != "tensorflow":
            return inputs
        import tensorflow as tf

        shape = tf.shape(inputs)
        ok = tf.logical_and(
            tf.equal(shape[1] % self.multiple, 0), tf.equal(shape[2] % self.multiple, 0)
        )
        check = tf.debugging.Assert(
            ok, [self._message() + " Received: height=", shape[1], "width=", shape[2]]
        )
        with tf.control_dependencies([check]):
            return tf.identity(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "model_name": self.model_name}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BilinearUpsample(keras.layers.Layer):
    """Bilinear upsampling by an integer factor: `(B, H, W, C) -> (B, f*H, f*W, C)`.

    Args:
        factor: Integer scale of height and width.
    """

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        if self.factor == 1:
            return inputs
        shape = ops.shape(inputs)
        return bilinear_resize(inputs, shape[1] * self.factor, shape[2] * self.factor)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, _scaled(h, self.factor), _scaled(w, self.factor), c)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResizeToMatch(keras.layers.Layer):
    """Bilinear resize of `x` to the height and width of `reference`.

    Called on `[x, reference]`: `(B, h, w, C), (B, H, W, *) -> (B, H, W, C)`.
    From a 1 x 1 map this is a broadcast (image pooling branches).
    """

    def call(self, inputs):
        x, reference = inputs
        shape = ops.shape(reference)
        return bilinear_resize(x, shape[1], shape[2])

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdaptiveAveragePool2D(keras.layers.Layer):
    """Average pooling onto a fixed `bins x bins` grid, whatever the input size.

    Bin `i` along an axis of length `n` covers `[floor(i*n/bins), ceil((i+1)*n/bins))`
    (PyTorch's adaptive pooling), so bins overlap when `n` is not a multiple
    of `bins`. `(B, H, W, C) -> (B, bins, bins, C)`. Used by PSPNet's pyramid
    pooling module.

    Args:
        bins: Number of bins along height and width.
    """

    def __init__(self, bins: int, **kwargs):
        super().__init__(**kwargs)
        self.bins = int(bins)

    def _matrix(self, size):
        i = ops.arange(self.bins, dtype="int32")
        start = ops.expand_dims((i * size) // self.bins, 1)
        end = ops.expand_dims(((i + 1) * size + self.bins - 1) // self.bins, 1)
        pos = ops.expand_dims(ops.arange(size, dtype="int32"), 0)
        inside = ops.logical_and(ops.greater_equal(pos, start), ops.less(pos, end))
        return ops.cast(inside, "float32") / ops.cast(end - start, "float32")

    def call(self, inputs):
        shape = ops.shape(inputs)
        mh = ops.cast(self._matrix(shape[1]), inputs.dtype)
        mw = ops.cast(self._matrix(shape[2]), inputs.dtype)
        y = ops.einsum("ih,bhwc->biwc", mh, inputs)
        return ops.einsum("jw,biwc->bijc", mw, y)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "bins": self.bins}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Non-overlapping max pooling that also returns where each maximum was.

    `(B, H, W, C) -> [(B, H/p, W/p, C) float, (B, H/p, W/p, C) int32]`. The index is
    the position of the maximum inside its `p x p` window, row-major in
    `[0, p*p)` (first one on ties); with the window's position this is the
    SegNet "pooling index". H and W must be multiples of `p`.

    Args:
        pool_size: Window side `p`, also the stride.
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)

    def call(self, inputs):
        p = self.pool_size
        shape = ops.shape(inputs)
        h, w, c = shape[1] // p, shape[2] // p, inputs.shape[3]
        x = ops.reshape(inputs, (-1, h, p, w, p, c))
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4))
        x = ops.reshape(x, (-1, h, w, c, p * p))
        return ops.max(x, axis=-1), ops.cast(ops.argmax(x, axis=-1), "int32")

    def compute_output_spec(self, inputs):
        b, h, w, c = inputs.shape
        p = self.pool_size
        shape = (b, None if h is None else h // p, None if w is None else w // p, c)
        return (
            keras.KerasTensor(shape, dtype=inputs.dtype),
            keras.KerasTensor(shape, dtype="int32"),
        )

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaxUnpooling2D(keras.layers.Layer):
    """SegNet unpooling: put each value back where its pooling window had its maximum.

    Called on `[x, indices]` from `MaxPoolingWithArgmax2D`; the other
    `p*p - 1` positions of each window are zero.
    `(B, h, w, C), (B, h, w, C) int32 -> (B, p*h, p*w, C)`.

    Args:
        pool_size: Window side `p` of the matching pooling layer.
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)

    def call(self, inputs):
        x, indices = inputs
        p = self.pool_size
        shape = ops.shape(x)
        h, w, c = shape[1], shape[2], x.shape[3]
        spread = ops.one_hot(indices, p * p, dtype=x.dtype) * ops.expand_dims(x, -1)
        y = ops.reshape(spread, (-1, h, w, c, p, p))
        y = ops.transpose(y, (0, 1, 4, 2, 5, 3))
        return ops.reshape(y, (-1, h * p, w * p, c))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape[0]
        return (b, _scaled(h, self.pool_size), _scaled(w, self.pool_size), c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BilinearKernel(keras.initializers.Initializer):
    """Initialise a `Conv2DTranspose` kernel to per-channel bilinear interpolation.

    Kernel shape `(k, k, out_channels, in_channels)`; channel `i` maps to channel
    `i` with the separable tent `(1 - |r - c| / f) * (1 - |s - c| / f)`,
    `f = ceil(k / 2)`, `c = f - 1` for odd k and `f - 0.5` for even k (the
    `upsample_filt` of Long et al.'s FCN code). With `k = 2 * stride` and
    "same" padding the layer upsamples bilinearly by `stride`.
    """

    def __call__(self, shape, dtype=None):
        kh, kw, out_c, in_c = shape
        kernel = np.zeros(shape, dtype="float32")
        rows = _tent(kh)[:, None] * _tent(kw)[None, :]
        for i in range(min(out_c, in_c)):
            kernel[:, :, i, i] = rows
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}


def _tent(size: int) -> np.ndarray:
    factor = math.ceil(size / 2)
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - center) / factor
