"""The model zoo: one module per architecture and a registry by name.

Each architecture's parameters are its `Params` (`reseg.models.unet.Params`),
defined in the Keras-free `reseg.model_params` so that configs read them
without importing Keras.

Importing this package registers the custom layers (`reseg.models.layers`)
with Keras, so `keras.models.load_model(path, safe_mode=True)` reloads any
saved reseg model without `custom_objects`.
"""

from reseg.models import layers, mit  # noqa: F401  (register the custom layers)
from reseg.models.inference import fold_batch_norm
from reseg.models.registry import (
    build_model,
    encoder_layers,
    load_saved,
    names,
    output_stride,
    parameters,
    params_class,
    training_model,
    validate_params,
)

__all__ = [
    "build_model",
    "encoder_layers",
    "fold_batch_norm",
    "load_saved",
    "names",
    "output_stride",
    "parameters",
    "params_class",
    "training_model",
    "validate_params",
]
