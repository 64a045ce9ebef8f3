"""The `export` section: a SavedModel for TF Serving, validated, registered in MLflow."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from reseg.config.base import Section

SOURCE = re.compile(r"^(merged|last|r\d+)$")


class ExportConfig(Section):
    """What `reseg export` writes to `<root>/export/<model_name>/<version>/`."""

    model_name: str = Field(
        "reseg",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="TF Serving model name (the folder under export/, the MLflow registered model).",
    )
    source: str = Field(
        "merged",
        description="What to export: `merged` (the merged rounds, one graph), `last` (the highest "
        "round with a model) or `r<k>` (round k).",
    )
    fold: int | Literal["full"] | None = Field(
        None,
        description="Whose models: fold k's (trained without fold k), `full` (trained on every "
        "tile, rounds/r<r>/full); default the first of rounds.folds.",
    )
    warmup_tiles: int = Field(
        2,
        ge=1,
        le=64,
        description="Tiles per warmup request (real tiles of <root>/tiles when there are some).",
    )
    validation: bool = Field(
        True,
        description="Load the export in a fresh process and replay the warmup requests before "
        "publishing; an export that fails is not published.",
    )
    atol: float = Field(
        1e-5,
        gt=0,
        description="Largest |p_export - p_keras| the validation accepts on the warmup tiles.",
    )
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description=(
            "Arithmetic of the exported graph (as predict.precision; auto, the default, is "
            "resolved on the exporting machine, so export where the model will be served). "
            "Recorded in the export's manifest.json; bfloat16 / float16 exports are validated "
            "by their class maps' agreement with float32 (min_agreement) instead of atol; "
            "auto's bfloat16 that falls short on the warmup tiles is exported in float32."
        ),
    )
    min_agreement: float = Field(
        0.995,
        gt=0,
        le=1,
        description="Least share of warmup pixels whose class equals float32's, for a "
        "bfloat16 / float16 export.",
    )
    validate_timeout_s: float = Field(600, gt=0, description="Time limit of the validation.")
    registry: bool = Field(
        True, description="Register the export in the MLflow model registry (tracking enabled)."
    )

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if not SOURCE.match(v):
            raise ValueError(f"source must be `merged`, `last` or `r<k>`, received {v!r}")
        return v
