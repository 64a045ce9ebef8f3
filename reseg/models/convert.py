"""PyTorch ResNet weights (torchvision, timm, TorchGeo) as a Keras backbone weights file.

A state dict of torchvision's or timm's `resnet18/34/50` (TorchGeo's Sentinel-2
and Landsat ResNets are timm ResNets) becomes the `.weights.h5` of the matching
`reseg.models.resnet` backbone, which U-Net loads with `model.params.encoder`
and `encoder_weights`. Names map one to one ("." -> "_": `layer2.0.downsample.1`
is the Keras layer `layer2_0_downsample_1`); values:

    Conv2D kernel (kh, kw, in, out)  = conv.weight (out, in, kh, kw) transposed (2, 3, 1, 0)
    BatchNormalization [gamma, beta, moving_mean, moving_variance]
                                     = [bn.weight, bn.bias, bn.running_mean, bn.running_var]

The classifier (`fc.*`) and `num_batches_tracked` are left out; a prefix
`module.`, `model.`, `backbone.` or `encoder.` is removed. The band count is
that of `conv1.weight`, and the network (18, 34 or 50) follows from the keys.
The band order of the weights is recorded in a sidecar `<file>.json`
(`reseg.models.backbones.sidecar`), which U-Net logs when it loads the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from reseg.errors import InputError
from reseg.models import backbones, resnet

log = logging.getLogger(__name__)

PREFIXES = ("module.", "model.", "backbone.", "encoder.")
SKIPPED = re.compile(r"^fc\.|num_batches_tracked$")

__all__ = ["convert", "encoder_of", "keras_encoder", "load_state_dict"]


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """The float32 arrays of a `.pth` / `.pt` state dict (or a checkpoint holding one under
    "state_dict" or "model"), prefixes removed. Needs PyTorch (`pip install torch`)."""
    try:
        import torch  # optional heavy dependency: only this command reads PyTorch files
    except ImportError:
        raise InputError(
            f"{path}: reading PyTorch weights needs torch (pip install torch)"
        ) from None
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: not a state dict
        raise InputError(f"{path}: not a PyTorch state dict ({type(err).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    out = {}
    for key, value in obj.items():
        for prefix in PREFIXES:
            key = key.removeprefix(prefix)
        if hasattr(value, "detach"):
            out[key] = value.detach().cpu().float().numpy()
    return out


def encoder_of(state: Mapping[str, np.ndarray]) -> str:
    """The `reseg.models.resnet` network a state dict is of (from its keys)."""
    blocks = [
        len({k.split(".")[1] for k in state if k.startswith(f"layer{s}.")}) for s in (1, 2, 3, 4)
    ]
    kind = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    for name, depths in resnet.DEPTHS.items():
        if depths == (kind, tuple(blocks)):
            return name
    raise InputError(
        f"not a torchvision/timm ResNet-18/34/50 state dict: {kind} blocks per stage {blocks}"
    )


def keras_encoder(state: Mapping[str, np.ndarray], encoder: str | None = None) -> keras.Model:
    """The backbone of `reseg.models.resnet` holding the weights of `state`.

    Args:
        state: float arrays by PyTorch name (`load_state_dict`).
        encoder: "resnet18", "resnet34" or "resnet50_torchvision"; None: from the keys.

    Raises:
        InputError: not a ResNet of that kind, or keys missing or left over.
    """
    found = encoder_of(state)
    if encoder is not None and encoder != found:
        raise InputError(f"the state dict is a {found}, not a {encoder}")
    bands = int(state["conv1.weight"].shape[1])
    model = resnet.build(found, bands)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        key = layer.name.replace("_", ".")
        if isinstance(layer, keras.layers.Conv2D):
            names = [f"{key}.weight"]
        else:
            names = [f"{key}.{n}" for n in ("weight", "bias", "running_mean", "running_var")]
        missing = [n for n in names if n not in state]
        if missing:
            raise InputError(f"the state dict lacks {missing} for layer {layer.name}")
        values = [state[n] for n in names]
        if isinstance(layer, keras.layers.Conv2D):
            values = [values[0].transpose(2, 3, 1, 0)]
        layer.set_weights([v.astype("float32") for v in values])
        used.update(names)
    left = sorted(k for k in set(state) - used if not SKIPPED.search(k))
    if left:
        raise InputError(f"the state dict has weights no layer of {found} takes: {left[:5]}")
    return model


def convert(
    source: str,
    out: str,
    *,
    encoder: str | None = None,
    band_order: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Convert the state dict `source` to the backbone weights file `out` (`.weights.h5`).

    Writes `out` and its sidecar `<out>.json`: encoder, bands, band order, source.

    Returns:
        The sidecar's content.
    """
    if not out.endswith(".weights.h5"):
        raise InputError(f"{out}: the output must end in .weights.h5 (a Keras weights file)")
    state = load_state_dict(source)
    model = keras_encoder(state, encoder)
    bands = int(model.inputs[0].shape[-1])
    if band_order is not None and len(band_order) != bands:
        raise InputError(f"--band-order names {len(band_order)} bands but the weights take {bands}")
    model.save_weights(out)
    info = {
        "encoder": encoder_of(state),
        "bands": bands,
        "band_order": list(band_order) if band_order is not None else None,
        "source": os.path.basename(source),
    }
    with open(backbones.sidecar(out), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    log.info(
        "wrote %s (%s, %d bands, band order %s)", out, info["encoder"], bands, info["band_order"]
    )
    return info
