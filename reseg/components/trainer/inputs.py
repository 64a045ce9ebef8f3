"""What training reads: TFRecord files, the initial model, the registry model.

The model trained is the registry's `cfg.model.name` built fresh, or a saved
model (a model directory or `.keras` file) to fine-tune, reloaded with
`keras.models.load_model(safe_mode=True)` after `import reseg.models`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

import reseg.models as models  # also registers the custom layers of the registry's models
from reseg import artifacts, storage
from reseg.artifacts import ModelInfo, TileSet
from reseg.config import Config
from reseg.errors import ArtifactError, ConfigError, InputError
from reseg.models.precision import with_precision

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


def tile_files(given: Sequence[str | Path] | None, tiles: TileSet) -> tuple[Path, ...]:
    """The TFRecord files to train on: given files and folders (`*.tfrecord.gz`), or the tile set's."""
    if not given:
        return tiles.files
    out: list[Path] = []
    for p in map(storage.path, given):
        if p.is_dir():
            found = sorted(p.glob("*.tfrecord.gz"))
            if not found:
                raise InputError(f"{p}: no *.tfrecord.gz files to train on")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: training TFRecords not found")
    return tuple(out)


def files_fingerprint(files: Sequence[Path]) -> list[Any]:
    """Per folder: its manifest's version (`artifacts.version`: fingerprint and files) when it
    has one, else the files' names and sizes."""
    parts: list[Any] = []
    for parent in sorted({f.parent for f in files}):
        fp = None
        if (parent / artifacts.MANIFEST).exists():
            m = artifacts.read_manifest(parent)
            fp = artifacts.version(m) if m.get("fingerprint") else None
        members = sorted(f for f in files if f.parent == parent)
        parts.append(fp or [(f.name, f.stat().st_size) for f in members])
        if fp:
            parts.append([f.name for f in members])
    return parts


def model_file(init_model: Path) -> Path:
    path = init_model / MODEL_FILE if init_model.is_dir() else init_model
    if not path.is_file():
        raise InputError(f"--init-model {init_model}: no {MODEL_FILE} there")
    return path


def init_fingerprint(init_model: Path | None) -> Any:
    if init_model is None:
        return None
    path = model_file(init_model)
    with contextlib.suppress(ArtifactError):
        return artifacts.version(artifacts.read_manifest(path.parent))
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def init_info(init_model: Path | None) -> ModelInfo | None:
    """The `model.json` beside an initial model, when there is one."""
    if init_model is None or not (model_file(init_model).parent / "model.json").is_file():
        return None
    return ModelInfo.load(model_file(init_model).parent)


def load_init(init_model: Path, bands: int, num_classes: int):
    path = model_file(init_model)
    model = models.load_saved(storage.local_copy(path), path, InputError)
    shape_in, shape_out = model.inputs[0].shape, model.outputs[0].shape
    if shape_in[-1] != bands or shape_out[-1] != num_classes:
        raise InputError(
            f"--init-model {init_model}: takes {shape_in[-1]} bands and predicts {shape_out[-1]} classes; "
            f"these tiles have {bands} bands and {num_classes} classes"
        )
    log.info("starting from %s", path)
    return model


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to `name` while the block runs (builders read it)."""
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def build(cfg: Config, bands: int, num_classes: int, init_model: Path | None):
    """Prediction model, model trained (with auxiliary heads), their loss weights, output stride.

    Built under the dtype policy of `train.precision` (a model to fine-tune is cloned into
    it, `reseg.models.precision.with_precision`); the softmax outputs stay float32.
    """
    policy = cfg.train.precision
    with dtype_policy(policy):
        if init_model is not None:
            model = with_precision(load_init(init_model, bands, num_classes), policy)
            info = init_info(init_model)
            stride = info.output_stride if info is not None else 1
        else:
            model = models.build_model(cfg.model.name, num_classes, bands, **cfg.model.params)
            stride = int(models.output_stride(cfg.model.name, **cfg.model.params))
        train_model, loss_weights = models.training_model(model)
    return model, train_model, [float(w) for w in loss_weights], stride


def fine_tuned_encoder(cfg: Config, model: keras.Model) -> list:
    """The encoder layers that `train.freeze_encoder_epochs` / `encoder_lr_multiplier` act on.

    Raises:
        ConfigError: one of them is set but the model has no encoder (the plain U-Net).
    """
    tc = cfg.train
    layers = models.encoder_layers(model)
    if (tc.freeze_encoder_epochs or tc.encoder_lr_multiplier != 1.0) and not layers:
        raise ConfigError(
            f"train.freeze_encoder_epochs / train.encoder_lr_multiplier need a model with an "
            f"encoder (model {model.name!r} has none; U-Net takes model.params.encoder)"
        )
    return layers


def check_model(cfg: Config) -> None:
    """Registry name and parameters of `model`, as a ConfigError naming the key."""

    try:
        models.validate_params(cfg.model.name, dict(cfg.model.params))
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"model (name {cfg.model.name!r}, params {dict(cfg.model.params)}): {e}"
        ) from None
