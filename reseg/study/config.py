"""The study file: a base pipeline config, a grid, baselines, profiles.

A study YAML names a pipeline config (`base`, relative to the study file) and
sweeps the confidence rounds over a grid::

    name: study-landsat
    base: demo_landsat.yaml
    overrides: {train: {epochs: 20}}      # deep-merged into the base config
    grid:
      percent: [1, 5, 10, 20, 50]         # x; an entry may be a list (one x per class)
      direction: [top]                    # top, bottom, band (band cells use `band`)
      band: [[40, 60]]
      score: [true_class]
      models: [{name: unet, params: {depth: 3}}]   # default: the base's model
      resolution: [1, 2, 4]               # ground resolution factor of the scenes
    folds: all                            # evaluation folds of the K = tiling.folds
    seeds: [0, 1, 2]                      # every cell and baseline trains once per seed
    baselines: {all_pixels: true, bottom: {percent: 20}, cbst: {start: 20, step: 5, max: 50}, tta: true}
    parallel: 2
    profiles:
      quick: {grid: {percent: [5, 20]}, overrides: {train: {epochs: 2}}}

A profile (`--profile NAME`) is deep-merged into the study before validation:
mappings merge key by key, any other value (lists included) replaces.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from reseg.config import load_config, read_text, resolve_weights, validation_lines, yaml_error
from reseg.config.base import Section
from reseg.config.rounds import SCORES, GrowConfig
from reseg.config.train import TrainConfig
from reseg.errors import ConfigError
from reseg.model_params import validate_params

Percent = float | list[float]


class ModelSpec(Section):
    """One model of the grid: an architecture, its encoder and weights, and its fine-tuning.

    Encoders and weights are a factor like any other: list the same architecture with
    `encoder: none` and `encoder: resnet18, encoder_weights: <file>` (each with a `label`),
    and give the pretrained one its recipe in `train` (`freeze_encoder_epochs`,
    `encoder_lr_multiplier`). Names and parameters are checked when the study is read.
    """

    name: str = Field(description="Registry name (reseg.models).")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Builder keyword arguments, e.g. encoder and encoder_weights.",
    )
    label: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.]+$",
        description="Short name in cell ids and tables; default the registry name.",
    )
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="`train` keys for this model only, merged over the base's (e.g. "
        "freeze_encoder_epochs and encoder_lr_multiplier for a pretrained encoder).",
    )

    @model_validator(mode="after")
    def _a_model_of_the_registry(self) -> ModelSpec:
        try:
            validate_params(self.name, self.params)
        except (ValueError, TypeError) as err:
            raise ValueError(str(err).splitlines()[0]) from None
        unknown = sorted(set(self.train) - set(TrainConfig.model_fields))
        if unknown:
            raise ValueError(
                f"train: unknown key(s) {unknown} for model {self.tag!r}; allowed: "
                f"{sorted(TrainConfig.model_fields)}"
            )
        return self

    @property
    def tag(self) -> str:
        return self.label or self.name


class GridConfig(Section):
    """The axes of the sweep; cells are their product (band cells take `band` instead of x)."""

    percent: list[Percent] = Field(
        default_factory=lambda: [5.0], description="x values: a number, or a list (one per class)."
    )
    direction: list[Literal["top", "bottom", "band"]] = Field(
        default_factory=lambda: ["top"], description="Selection directions."
    )
    band: list[tuple[float, float]] = Field(
        default_factory=lambda: [(25.0, 75.0)],
        description="[low, high] percentiles of the band cells.",
    )
    score: list[Literal["true_class", "max_prob", "margin", "entropy"]] = Field(
        default_factory=lambda: ["true_class"], description=f"Score types, of {list(SCORES)}."
    )
    models: list[ModelSpec] = Field(
        default_factory=list, description="Models; empty = the base config's model."
    )
    resolution: list[int] = Field(
        default_factory=lambda: [1],
        description=(
            "Ground resolution factors f: scenes area-averaged (images) and mode-resampled "
            "(labels) by f x f pixels."
        ),
    )

    @field_validator("percent")
    @classmethod
    def _percent_range(cls, v: list[Percent]) -> list[Percent]:
        for x in v:
            values = x if isinstance(x, list) else [x]
            if not values or any(not 0 < p <= 100 for p in values):
                raise ValueError(f"x must be within (0, 100], received {x}")
        return v

    @field_validator("band")
    @classmethod
    def _band_range(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for lo, hi in v:
            if not 0 <= lo < hi <= 100:
                raise ValueError(f"band must satisfy 0 <= low < high <= 100, received {[lo, hi]}")
        return v

    @field_validator("resolution")
    @classmethod
    def _factors(cls, v: list[int]) -> list[int]:
        if not v or min(v) < 1 or len(set(v)) != len(v):
            raise ValueError(f"resolution factors are distinct integers >= 1, received {v}")
        return v

    @model_validator(mode="after")
    def _unique_models(self) -> GridConfig:
        tags = [m.tag for m in self.models]
        dup = sorted({t for t in tags if tags.count(t) > 1})
        if dup:
            raise ValueError(f"models need distinct labels; repeated: {dup} (set `label`)")
        if not self.direction or not self.score:
            raise ValueError("direction and score need at least one value")
        return self


class BottomBaseline(Section):
    """Hard pixels, as online hard example mining: the x% lowest scores per class."""

    percent: float = Field(20.0, gt=0, le=100)
    min_kept: int = Field(0, ge=0, description="Keep at least this many pixels per class.")


class BaselinesConfig(Section):
    """Baselines added to every (resolution, model) group; round 0 is always there."""

    all_pixels: bool = Field(
        True,
        description="Rounds on every training pixel (top 100%, weights 1): more training, no selection.",
    )
    bottom: BottomBaseline | None = Field(
        default_factory=BottomBaseline, description="Bottom-x (OHEM style); null = off."
    )
    cbst: GrowConfig | None = Field(
        default_factory=lambda: GrowConfig(start=20, step=5, max=50),
        description="Class-balanced self-training style: top p% per class, p growing per round.",
    )
    tta: bool = Field(
        True,
        description=(
            "Round 0's model with R + 1 D4 test-time transforms (the merged rounds' number of "
            "predictions, at most 8)."
        ),
    )
    refine: bool = Field(
        False,
        description=(
            "Round 0 with DenseCRF and with SLIC, each tuned on the validation fold "
            "(`predict.tune`'s grid; reseg.study.refine)."
        ),
    )


class PseudoStudyConfig(Section):
    """Pseudo-label cells (issue 19): the base config needs unlabelled or target pixels.

    Cells: one per fixed x of `percent`, and one with class-balanced self-training's
    growing x (`baselines.cbst`'s schedule, default 20% + 5% a round, at most 50%).
    Their baselines are round 0 (source only) and the labelled-pixel cells of the grid.
    """

    percent: list[float] = Field(
        default_factory=lambda: [20.0], description="Fixed x of the pseudo-label cells."
    )
    cbst: bool = Field(True, description="Add a cell with CBST's growing x.")
    score: Literal["max_prob", "margin", "entropy"] = Field("max_prob")
    floor: float | None = Field(None, ge=0, le=1, description="Minimum score of a pseudo-label.")
    weight: float = Field(1.0, gt=0, description="Loss weight of a pseudo-labelled pixel.")

    @field_validator("percent")
    @classmethod
    def _percent_range(cls, v: list[float]) -> list[float]:
        if any(not 0 < x <= 100 for x in v):
            raise ValueError(f"x must be within (0, 100], received {v}")
        return v


class BootstrapConfig(Section):
    """The study's statistics (`reseg.study.stats`). The name stays `bootstrap` for the
    tile view's resampling; the verdicts come from the seeds x folds t-intervals."""

    samples: int = Field(2000, ge=100, description="Tile-bootstrap resamples (secondary view).")
    seed: int = Field(0, description="Seed of the tile bootstrap.")
    level: float = Field(
        0.95, gt=0.5, lt=1, description="Confidence level of the intervals; alpha = 1 - level."
    )
    power: float = Field(
        0.8,
        gt=0.5,
        lt=1,
        description="Power of the smallest detectable difference (MDE), from Student's t.",
    )
    training_share: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Assumed share of a fold's effect made of its training folds' effects "
        "(inflates the fold variance for models that share training folds; 0: independent).",
    )


class StudyConfig(Section):
    """A study: one base pipeline config swept over a grid, with baselines."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Study name (MLflow experiment).")
    base: str = Field(description="Pipeline config (YAML), relative to the study file.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Deep-merged into the base config."
    )
    grid: GridConfig = Field(default_factory=GridConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    folds: list[int] | Literal["all"] = Field(
        "all", description="Evaluation folds (of K = tiling.folds) every cell runs."
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0],
        description=(
            "train.seed values: every cell and every baseline (round 0 included) trains once per "
            "seed and fold, so the intervals include the variation between training runs."
        ),
    )
    deterministic: bool = Field(
        True,
        description=(
            "train.deterministic of every training (TensorFlow op determinism, tf.data order; "
            "jit_compile off): a (cell, seed, fold) gives the same model when run again."
        ),
    )
    parallel: int = Field(2, ge=1, le=64, description="Cells (processes) at a time.")
    threads: int | None = Field(
        None, ge=1, description="TensorFlow threads per process; default CPU cores / parallel."
    )
    beam_args: list[str] | None = Field(
        None,
        description=(
            "Beam options of every cell (replace the base's); default one in-process worker, "
            "since cells already run in parallel."
        ),
    )
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    pseudo: PseudoStudyConfig | None = Field(
        None,
        description=(
            "Pseudo-label cells on the unlabelled and target pixels of the base config; "
            "null = none."
        ),
    )
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] | None = Field(
        None,
        description=(
            "train.precision of every cell (mixed_bfloat16: bfloat16 layers, float32 variables "
            "and loss); default the base config's after `overrides`."
        ),
    )
    restore_best: bool = Field(
        True,
        description=(
            "Let trainings keep their best validation epoch (train.restore_best, early_stopping) "
            "as the base config says. The validation fold is (k + 1) mod K, apart from the "
            "evaluation fold k, so no reported figure picks its own epoch; false turns both off."
        ),
    )
    profile: str | None = Field(None, description="The applied profile (set by the loader).")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v) or min(v) < 0:
            raise ValueError(f"seeds are distinct integers >= 0, at least one; received {v}")
        return v


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings key by key, other values replace."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _format(err: ValidationError, source: str) -> str:
    return f"{source}: invalid study: {'; '.join(validation_lines(err))}"


def parse_study(
    raw: dict[str, Any], source: str = "<study>", profile: str | None = None
) -> StudyConfig:
    """Validate a study mapping after applying `profile` (a key of its `profiles`)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping, received {type(raw).__name__}"
        )
    raw = copy.deepcopy(raw)
    profiles = raw.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{source}: `profiles` must map names to mappings, received {profiles!r}")
    if profile is not None:
        if profile not in profiles:
            raise ConfigError(
                f"{source}: no profile {profile!r}; the study defines {sorted(profiles) or 'none'}"
            )
        if not isinstance(profiles[profile], dict):
            raise ConfigError(f"{source}: profile {profile!r} must be a mapping")
        raw = deep_merge(raw, profiles[profile])
        raw["profile"] = profile
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None


def load_study(path: str | Path, profile: str | None = None) -> tuple[StudyConfig, dict[str, Any]]:
    """Read a study YAML; returns the study and its base pipeline config as a raw mapping.

    The base config's scene paths are made absolute (relative to the base file) and the
    study's `overrides` are merged in; the caller validates the result per cell.
    """
    path = Path(path)  # local: study files are read from disk, as configs are
    try:
        raw = yaml.safe_load(read_text(path, "study"))
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    study = parse_study(raw, str(path), profile)
    for spec in study.grid.models:  # local weights files are relative to the study's folder
        if "encoder_weights" in spec.params:
            spec.params["encoder_weights"] = resolve_weights(
                spec.name, spec.params["encoder_weights"], path.resolve().parent
            )
    base_path = (path.resolve().parent / study.base).resolve()
    base = load_base(base_path)
    return study, deep_merge(base, study.overrides)


def load_base(path: Path) -> dict[str, Any]:
    """A pipeline config file as a mapping, validated once, with absolute scene paths."""

    cfg = load_config(path)  # validates and resolves paths against the base file's folder
    return cfg.model_dump(mode="json")
