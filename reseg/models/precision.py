"""A built or reloaded model run in another floating-point precision.

`with_precision(model, "bfloat16")` clones the model with Keras' `mixed_bfloat16`
dtype policy on every layer: variables stay float32, each layer casts its inputs
and weights to bfloat16 and computes in bfloat16 (8 bits of mantissa, float32's
exponent range). The softmax layers (`blocks.softmax`, pinned to float32 by the
builders) stay float32, so the model still returns float32 probabilities, and
batch normalisation computes its statistics in float32 under a mixed policy.
`float16` uses `mixed_float16` the same way (10 bits of mantissa, range up to
65504: fine for inference of batch-normalised networks, loss scaling for training).

The clone shares no state with `model`; its weights are copied, so the same
model serialises to the same float32 `.keras` file whatever precision it ran in.
"""

from __future__ import annotations

import keras
from keras import layers

PRECISIONS = ("float32", "bfloat16", "float16")
"""Inference precisions (the `auto` of the configs is resolved by `reseg.inference.precision`)."""

POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
"""Precision -> Keras dtype policy."""


def policy_of(precision: str) -> str:
    """The Keras dtype policy of `precision` (a name of `PRECISIONS` or a policy name)."""
    if precision in POLICIES.values():
        return precision
    if precision not in POLICIES:
        raise ValueError(
            f"Argument `precision` must be one of {PRECISIONS} or a policy of "
            f"{sorted(set(POLICIES.values()))}. Received: precision={precision!r}"
        )
    return POLICIES[precision]


def _pinned_float32(layer: keras.layers.Layer) -> bool:
    """Layers that stay float32 under any policy: the output softmax."""
    return isinstance(layer, layers.Activation) and layer.get_config().get("activation") in (
        "softmax",
        keras.activations.softmax,
    )


def model_policy(model: keras.Model) -> str:
    """The policy of the model's computing layers ("float32" when none differs)."""
    names = {
        model_policy(layer) if isinstance(layer, keras.Model) else layer.dtype_policy.name
        for layer in model.layers
        if not isinstance(layer, layers.InputLayer) and not _pinned_float32(layer)
    }
    names.discard("float32")
    return names.pop() if len(names) == 1 else ("float32" if not names else "mixed")


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """`model` cloned under the dtype policy of `precision` (module docstring).

    Args:
        model: a functional model (built by the registry or reloaded).
        precision: `float32`, `bfloat16`, `float16` or a Keras policy name
            (`mixed_bfloat16`, `mixed_float16`).

    Returns:
        `model` itself when it already runs in that policy, else a clone with the
        same name, layers and (float32) weights whose layers compute in `precision`;
        the softmax stays float32, so the output is float32 (B, H, W, C).
    """
    policy = policy_of(precision)
    if model_policy(model) == policy:
        return model
    return _clone(model, policy)


def _clone(model: keras.Model, policy: str) -> keras.Model:
    """A clone of `model` (nested models included) whose layers compute under `policy`."""

    def clone(layer):
        if isinstance(layer, keras.Model):  # a nested backbone (U-Net's "encoder")
            return _clone(layer, policy)
        config = layer.get_config()
        if "dtype" in config and not _pinned_float32(layer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    out = keras.models.clone_model(model, clone_function=clone)
    out.set_weights(model.get_weights())
    return out
