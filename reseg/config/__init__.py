"""The pipeline configuration: one YAML file, validated once on load.

Each component owns one section (a pydantic model in this package); `Config`
composes them. Unknown keys, wrong types and bad values raise `ConfigError`
naming the key path, what was received and what is allowed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from reseg import stac, storage
from reseg.config.base import Section
from reseg.config.data import IGNORE, ClassSpec, DataConfig, SceneSpec, VectorLabels
from reseg.config.sections import (
    ExportConfig,
    ModelConfig,
    PredictConfig,
    RoundsConfig,
    TrackingConfig,
    TrainConfig,
)
from reseg.config.tiling import BeamConfig, TilingConfig
from reseg.errors import ConfigError, from_decode_error, from_os_error

__all__ = [
    "IGNORE",
    "BeamConfig",
    "ClassSpec",
    "Config",
    "DataConfig",
    "ExportConfig",
    "ModelConfig",
    "PredictConfig",
    "RoundsConfig",
    "SceneSpec",
    "TilingConfig",
    "TrackingConfig",
    "resolve_weights",
    "TrainConfig",
    "VectorLabels",
    "load_config",
    "parse_config",
]

SCHEMA_VERSION = 1


class Config(Section):
    """The whole pipeline configuration."""

    schema_version: int = Field(SCHEMA_VERSION, description="Version of this config format.")
    name: str = Field("reseg", pattern=r"^[A-Za-z0-9_.-]+$", description="Experiment name.")
    data: DataConfig
    tiling: TilingConfig = TilingConfig()
    beam: BeamConfig = BeamConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    rounds: RoundsConfig = RoundsConfig()
    predict: PredictConfig = PredictConfig()
    export: ExportConfig = ExportConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _pseudo_needs_a_pool(self) -> Config:
        if self.rounds.pseudo is not None and not self.data.has_pseudo_source:
            raise ValueError(
                "rounds.pseudo needs pixels without training labels: a scene with role "
                "unlabelled or target, or `target_blocks` in a labelled scene"
            )
        return self

    def to_json(self) -> str:
        """The resolved config, as written into every artifact directory."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)

    def with_seed(self, seed: int | None) -> Config:
        """This config with `train.seed` replaced (None: unchanged): another training run of the
        same experiment. The folds stay those of `tiling.seed`, so runs with different seeds
        are evaluated on the same pixels (pairs for the study's statistics)."""
        if seed is None:
            return self
        return self.model_copy(update={"train": self.train.model_copy(update={"seed": seed})})

    def section_json(self, *names: str) -> dict[str, Any]:
        """The named sections as JSON-able dicts (for fingerprints of one step)."""
        dump = self.model_dump(mode="json")
        return {n: dump[n] for n in names}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(text: str) -> str:
    """Expand `${VAR}` and `${VAR:-default}` from the environment."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value:
            return value
        if m.group(2) is not None:
            return m.group(2)
        raise ConfigError(
            f"environment variable {m.group(1)} is not set (used as ${{{m.group(1)}}})"
        )

    return _VAR.sub(sub, text)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make scene paths and `model.params.encoder_weights` absolute, relative to the config
    file's folder (URIs, and the name "imagenet", stay as they are)."""

    def fix(p: Any) -> Any:
        if not isinstance(p, str):
            return p
        return storage.against(_expand(p), base)

    for scene in (data.get("data") or {}).get("scenes") or []:
        if not isinstance(scene, dict):
            continue
        for key in ("image", "labels"):
            if key in scene:
                scene[key] = fix(scene[key])
        if isinstance(scene.get("vector"), dict) and "path" in scene["vector"]:
            scene["vector"]["path"] = fix(scene["vector"]["path"])
    for src in (data.get("data") or {}).get("stac") or []:
        if isinstance(src, dict) and isinstance(src.get("items"), str):
            src["items"] = fix(src["items"])
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    params = model.get("params")
    if isinstance(params, dict) and "encoder_weights" in params:
        params["encoder_weights"] = resolve_weights(
            model.get("name"), params["encoder_weights"], base
        )


def resolve_weights(model: Any, weights: Any, base: Path) -> Any:
    """`model.params.encoder_weights` made absolute against the folder `base` (the config's, or
    a study's). Unchanged: None, "imagenet", URIs, and for SegFormer a keras-hub preset name
    (no path separator, and no such file or folder under `base`)."""
    if not isinstance(weights, str) or weights == "imagenet":
        return weights
    text = _expand(weights)
    named = model == "segformer" and "/" not in weights and os.sep not in weights
    if named and not weights.startswith(".") and not (base / os.path.expanduser(text)).exists():
        return weights  # a keras-hub preset name, e.g. "mit_b0_ade20k_512"
    return storage.against(text, base)


def _stac_scenes(raw: dict[str, Any], source: str) -> None:
    """Append the scenes of `data.stac` to `data.scenes` (the sources stay, for the record)."""
    from reseg.config.data import StacSource

    data = raw.get("data")
    if not isinstance(data, dict) or not data.get("stac"):
        return
    try:
        sources = [StacSource.model_validate(s) for s in data["stac"]]
    except ValidationError as err:
        lines = [f"data.stac.{x}" for x in validation_lines(err)]
        raise ConfigError(f"{source}: invalid configuration: {'; '.join(lines)}") from None
    scenes = list(data.get("scenes") or [])
    for src in sources:
        scenes += stac.scene_dicts(
            src.items or src.api,
            src.image,
            src.labels,
            role=src.role,
            role_property=src.role_property,
            items=src.read(),
            vector=src.vector,
        )
    data["scenes"] = scenes


def _format_errors(err: ValidationError, source: str) -> str:
    """One line: `<file>: invalid configuration: <key>: <problem> (received ...); <key>: ...`."""
    return f"{source}: invalid configuration: {'; '.join(validation_lines(err))}"


def validation_lines(err: ValidationError) -> list[str]:
    """`<key path>: <problem> (received: <value>)` for each error pydantic found."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        received = "" if e["type"] == "missing" else f" (received: {e.get('input')!r})"
        if len(received) > 120:
            received = received[:117] + "...)"
        lines.append(f"{loc}: {msg}{received}")
    return lines


def yaml_error(path: str | Path, e: yaml.YAMLError) -> ConfigError:
    """A YAML syntax error on one line: `<file>:<line>:<column>: not valid YAML: <problem>`."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return ConfigError(f"{where}: not valid YAML: {detail}")


def read_text(path: str | Path, what: str = "config") -> str:
    """A UTF-8 text file, or the one-line ConfigError of why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except IsADirectoryError:  # the config named wrongly: a config error, as a missing one is
        raise ConfigError(f"{path}: is a folder, expected a {what} file") from None
    except UnicodeDecodeError as e:
        raise from_decode_error(e, path, what) from None
    except OSError as e:
        raise from_os_error(e, path) from None


def parse_config(raw: dict[str, Any], source: str = "<config>", base: Path | None = None) -> Config:
    """Validate a config dict; paths are resolved against `base` (default: cwd)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping, received {type(raw).__name__}"
        )
    if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ConfigError(
            f"{source}: schema_version {raw['schema_version']!r} is not supported; "
            f"this reseg reads schema_version {SCHEMA_VERSION}"
        )
    raw = json.loads(json.dumps(raw))  # deep copy, YAML-only types out
    _resolve_paths(raw, base or Path.cwd())
    _stac_scenes(raw, source)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    text = read_text(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    return parse_config(raw, source=str(path), base=path.resolve().parent)
