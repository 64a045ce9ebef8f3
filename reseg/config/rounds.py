"""The `rounds` section: confidence rounds, the method's core.

Round 0 trains on every labelled pixel. After each round r the scorer writes the
round's per-pixel class probabilities, and the selector picks, per class, pixels
by their score; the selection becomes per-pixel loss weights of round r + 1.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from reseg.config.base import Section
from reseg.errors import ConfigError

SCORES = ("true_class", "max_prob", "margin", "entropy")
MERGE_METHODS = ("mean", "weighted", "max_confidence", "vote")


class GrowConfig(Section):
    """x growing per round: x_s = min(start + s * step, max) for the s-th selection (s = 0, 1, ...).

    Class-balanced self-training uses start 20, step 5, max 50.
    """

    start: float = Field(gt=0, le=100)
    step: float = Field(ge=0, le=100)
    max: float = Field(gt=0, le=100)


def check_percent(v: float | list[float]) -> float | list[float]:
    """x (or one x per class) within 0..100: the `percent` validator of selection and pseudo."""
    values = v if isinstance(v, list) else [v]
    if not values or any(not 0 <= x <= 100 for x in values):
        raise ValueError(f"percentages must be within 0..100, received {v}")
    return v


def percent_for(
    percent: float | list[float],
    grow: GrowConfig | None,
    selection_index: int,
    num_classes: int,
    key: str,
) -> list[float]:
    """x_c of every class for the s-th selection: the schedule `grow` (x = start + s * step,
    at most max) when set, else `percent` (one value, or one per class; `key` names it)."""
    if grow is not None:
        return [min(grow.start + selection_index * grow.step, grow.max)] * num_classes
    if isinstance(percent, list):
        if len(percent) != num_classes:
            raise ValueError(f"{key} has {len(percent)} values but there are {num_classes} classes")
        return list(percent)
    return [float(percent)] * num_classes


class SelectionConfig(Section):
    """Which pixels of each class weigh in the next round."""

    score: Literal["true_class", "max_prob", "margin", "entropy"] = Field(
        "true_class",
        description=(
            "Per-pixel confidence, higher = surer: probability of the true class, maximum "
            "probability, margin between the two highest, or 1 - entropy / log(C)."
        ),
    )
    direction: Literal["top", "bottom", "band"] = Field(
        "top",
        description="top: the x% highest scores of each class; bottom: the lowest; band: between percentiles.",
    )
    percent: float | list[float] = Field(
        5.0, description="x: one percentage for every class, or one per class."
    )
    band: tuple[float, float] | None = Field(
        None, description="For direction band: [low, high] percentiles of each class's scores."
    )
    grow: GrowConfig | None = Field(None, description="Let x grow per round (replaces `percent`).")
    correct_only: bool = Field(
        False, description="Only pixels whose predicted class is their label."
    )
    min_kept: int = Field(
        0, ge=0, description="For bottom: keep at least this many pixels per class (OHEM)."
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Absolute mode: top selects score >= threshold, bottom score <= threshold (ignores x).",
    )
    weighting: Literal["only", "emphasis"] = Field(
        "only",
        description="only: w = 1 selected, 0 otherwise; emphasis: w = 1 + lambda selected, 1 otherwise.",
    )
    emphasis: float = Field(1.0, gt=0, description="lambda of `emphasis` weighting.")

    _percent_range = field_validator("percent")(check_percent)

    @model_validator(mode="after")
    def _band_needs_limits(self) -> SelectionConfig:
        if self.direction == "band":
            if self.band is None:
                raise ValueError("direction band needs `band: [low, high]` percentiles")
            lo, hi = self.band
            if not 0 <= lo < hi <= 100:
                raise ValueError(
                    f"band must satisfy 0 <= low < high <= 100, received {list(self.band)}"
                )
        if self.threshold is not None and self.direction == "band":
            raise ValueError("an absolute threshold works with direction top or bottom, not band")
        return self

    def percent_for(self, selection_index: int, num_classes: int) -> list[float]:
        """x_c of every class for the s-th selection (after round s)."""
        return percent_for(
            self.percent, self.grow, selection_index, num_classes, "rounds.selection.percent"
        )


class PseudoConfig(Section):
    """Pseudo-labels: per predicted class, the most confident x% of the unlabelled and target
    pixels (of the training folds) become labels of the next round.

    For class c with N_c pool pixels predicted as c, the m_c = round(x_c N_c / 100) highest
    scores are selected (x fixed, or CBST's x_s = min(start + s step, max) for the s-th
    selection); with a `floor`, only those whose score is also >= floor. The next round
    trains on every labelled pixel (weight 1) plus the pseudo-labelled pixels (weight
    `weight`); `rounds.selection` is not used.
    """

    score: Literal["max_prob", "margin", "entropy"] = Field(
        "max_prob",
        description="Confidence of the predicted class (no true class exists for these pixels).",
    )
    percent: float | list[float] = Field(
        20.0, description="x: one percentage for every class, or one per class."
    )
    grow: GrowConfig | None = Field(
        None, description="x growing per round (CBST: start 20, step 5, max 50); replaces percent."
    )
    floor: float | None = Field(
        None, ge=0, le=1, description="Only pixels whose score is >= floor (after the x% cut)."
    )
    weight: float = Field(1.0, gt=0, description="Loss weight of a pseudo-labelled pixel.")

    _percent_range = field_validator("percent")(check_percent)

    def percent_for(self, selection_index: int, num_classes: int) -> list[float]:
        """x_c of every class for the s-th selection (after round s)."""
        return percent_for(
            self.percent, self.grow, selection_index, num_classes, "rounds.pseudo.percent"
        )


class RoundsConfig(Section):
    """How many rounds, on which folds, and how rounds are chained and merged."""

    count: int = Field(2, ge=0, description="Rounds after round 0 (R); rounds are 0..R.")
    folds: list[int] | Literal["all"] = Field(
        default_factory=lambda: [0],
        description="Evaluation folds k to run the rounds for, or all (fold k+1 mod K validates).",
    )
    init: Literal["finetune", "scratch"] = Field(
        "finetune", description="Round r + 1 starts from round r's model, or from scratch."
    )
    epochs: int | None = Field(
        None, ge=1, description="Epochs of rounds >= 1; default train.epochs."
    )
    stop_when_no_gain: bool = Field(
        False,
        description="Stop early when a round does not raise the validation fold's mIoU over the previous.",
    )
    selection: SelectionConfig = SelectionConfig()
    pseudo: PseudoConfig | None = Field(
        None,
        description=(
            "Pseudo-label rounds: round r + 1 trains on the labelled pixels plus round r's "
            "pseudo-labels of the unlabelled and target scenes (replaces `selection`)."
        ),
    )
    score_precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description=(
            "Arithmetic of the model when scoring the tiles (as predict.precision): auto "
            "(default) = bfloat16 where the hardware runs it natively, guarded on the first "
            "tiles by predict.min_agreement. Scores are stored as float16 either way."
        ),
    )
    merge: Literal["mean", "weighted", "max_confidence", "vote"] = Field(
        "mean", description="How the merged result combines the rounds (all four are evaluated)."
    )

    def fold_list(self, k: int) -> list[int]:
        folds = list(range(k)) if self.folds == "all" else list(self.folds)
        bad = [f for f in folds if not 0 <= f < k]
        if bad:
            raise ConfigError(
                f"rounds.folds: folds {bad} are outside 0..{k - 1} (tiling.folds = {k})"
            )
        return folds
