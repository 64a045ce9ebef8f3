"""The `train` section: data pipeline, augmentation, loss, optimiser, schedule, stopping.

Defaults train the Landsat demo (5 bands, 7 classes, 64-pixel tiles) with a small
U-Net in a few minutes on two CPU cores.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reseg.config.base import Section


class AugmentConfig(Section):
    """Random transforms applied jointly to image, label and weight map while training.

    Geometric transforms move all three together (labels nearest-neighbour, filled
    with 255; weights filled with 0); photometric ones touch the image only. Image
    values are normalised (x - mean) / std, so `brightness` and `noise_std` are in
    units of one standard deviation of each band.
    """

    enabled: bool = Field(True, description="Apply augmentation at all.")
    flips: bool = Field(True, description="Random horizontal and vertical flips.")
    rot90: bool = Field(True, description="Random turns by a multiple of 90 degrees.")
    rotation: float = Field(
        0.0,
        ge=0,
        le=180,
        description="Random rotation by an angle in [-rotation, rotation] degrees; 0 = off.",
    )
    brightness: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Random additive shift in [-brightness, brightness] (normalised units).",
    )
    contrast: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Random contrast factor in [1 - contrast, 1 + contrast] per image and band.",
    )
    noise_std: float = Field(
        0.0, ge=0, description="Standard deviation of Gaussian noise added to the image."
    )


class TrainConfig(Section):
    """How a model of the registry is trained on the tiles of a fold."""

    batch_size: int = Field(8, ge=1, description="Global batch size (summed over all replicas).")
    epochs: int = Field(10, ge=1, description="Maximum number of epochs.")
    steps_per_epoch: int | None = Field(
        None,
        ge=1,
        description="Training steps per epoch; default one pass over the training tiles.",
    )
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = Field(
        "adam", description="Keras optimiser."
    )
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float | None = Field(
        None, ge=0, description="Decoupled weight decay of the optimiser."
    )
    freeze_encoder_epochs: int = Field(
        0,
        ge=0,
        description="Fine-tuning: the model's encoder (model.params.encoder of U-Net, the "
        "encoder of PSPNet and DeepLabV3+) is frozen for the first this many epochs: not "
        "trained, its batch norm in inference mode (its statistics kept); 0 = never.",
    )
    encoder_lr_multiplier: float = Field(
        1.0,
        gt=0,
        description="Fine-tuning: the encoder's updates are this fraction of those the "
        "optimiser makes with the learning rate (its learning rate times this, for every "
        "optimiser and schedule).",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of sgd and rmsprop.")
    clipnorm: float | None = Field(None, gt=0, description="Clip each gradient to this norm.")
    schedule: Literal["constant", "cosine", "exponential", "poly"] = Field(
        "constant",
        description=(
            "Learning-rate schedule over all training steps: constant; cosine decay to "
            "min_learning_rate; exponential decay by decay_rate per epoch; poly: "
            "lr = (lr0 - min) (1 - step/steps)^0.9 + min."
        ),
    )
    warmup_epochs: int = Field(
        0, ge=0, description="Linear warm-up from 0 over this many epochs (cosine only)."
    )
    min_learning_rate: float = Field(
        0.0, ge=0, description="Final learning rate of cosine and poly."
    )
    decay_rate: float = Field(
        0.9, gt=0, le=1, description="Factor per epoch of the exponential schedule."
    )
    loss: Literal["auto", "crossentropy", "focal", "dice", "crossentropy+dice"] = Field(
        "auto",
        description=(
            "Per-pixel sparse categorical cross-entropy, Keras' categorical focal cross-entropy, "
            "Keras' Dice loss (per tile, over labelled pixels), or the sum of cross-entropy and "
            "Dice. auto (default): crossentropy+dice when the classes are imbalanced (the rarest "
            "class has less than half a uniform share of the labelled pixels of stats.json: "
            "under 25% with two classes), else crossentropy."
        ),
    )
    focal_gamma: float = Field(2.0, ge=0, description="Focusing parameter of the focal loss.")
    class_weights: Literal["auto", "none", "inverse", "inverse_sqrt"] | list[float] = Field(
        "auto",
        description=(
            "Per-class loss weights: auto (default) = inverse when the classes are imbalanced "
            "(as for loss), else none; none; inverse or inverse_sqrt of the class pixel counts "
            "of stats.json (normalised to mean 1 over labelled pixels); or one weight per class."
        ),
    )
    early_stopping: int | None = Field(
        None,
        ge=1,
        description="Stop after this many epochs without the validation fold's mIoU improving; None = off.",
    )
    min_delta: float = Field(
        0.0, ge=0, description="Smallest mIoU increase that counts as an improvement."
    )
    restore_best: bool = Field(
        True, description="With validation, the saved model is the epoch of best validation mIoU."
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    shuffle_buffer: int = Field(512, ge=1, description="Examples in the shuffle buffer.")
    cache: bool = Field(
        False, description="Keep decoded tiles in memory after the first epoch (small tile sets)."
    )
    seed: int = Field(0, description="Seed of weights initialisation, shuffling and augmentation.")
    deterministic: bool = Field(
        True,
        description=(
            "Deterministic TF ops and tf.data order: the same config gives the same model, "
            "metrics and maps (bench/train.py: 1.04x the step time on CPU). Off by default "
            "only with jit_compile, which excludes it."
        ),
    )
    distribute: Literal["auto", "default", "mirrored", "multi_worker"] = Field(
        "auto",
        description=(
            "tf.distribute strategy: auto = MultiWorkerMirroredStrategy when TF_CONFIG names "
            "several tasks, MirroredStrategy with several GPUs, else the default strategy."
        ),
    )
    jit_compile: bool = Field(False, description="Compile the training step with XLA.")
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "auto",
        description=(
            "Keras dtype policy of training: mixed_* computes the layers in bfloat16 / float16 "
            "with float32 variables, softmax and loss; mixed_float16 adds dynamic loss scaling "
            "(LossScaleOptimizer). auto, the default, is mixed_bfloat16 where bfloat16 is "
            "native (CPUs with AMX / AVX-512 BF16, GPUs of compute capability >= 8.0; not with "
            "jit_compile on a CPU) and float32 elsewhere; accuracy measured level "
            "(docs/benchmarks.md). The saved model is float32 either way."
        ),
    )
    progress: Literal["auto", "bar", "log"] = Field(
        "auto",
        description="Keras progress bar per epoch, or one log line per epoch (auto: bar on a terminal, or with --progress).",
    )

    @field_validator("class_weights")
    @classmethod
    def _weights_nonnegative(cls, v: str | list[float]) -> str | list[float]:
        if isinstance(v, list) and (not v or min(v) < 0):
            raise ValueError("class weights are one non-negative number per class")
        return v

    @model_validator(mode="before")
    @classmethod
    def _jit_without_determinism(cls, data: Any) -> Any:
        """jit_compile without a word on determinism turns the default off (XLA has no
        deterministic max-pooling gradient); both set to true stays an error."""
        if isinstance(data, dict) and data.get("jit_compile") and "deterministic" not in data:
            return {**data, "deterministic": False}
        return data

    @model_validator(mode="after")
    def _schedule_bounds(self) -> TrainConfig:
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(
                f"min_learning_rate must not exceed learning_rate, received "
                f"min_learning_rate={self.min_learning_rate}, learning_rate={self.learning_rate}"
            )
        if self.jit_compile and self.deterministic:
            raise ValueError(
                "jit_compile and deterministic exclude each other (XLA has no deterministic "
                "max-pooling gradient); received jit_compile=true, deterministic=true"
            )
        if self.warmup_epochs and self.schedule != "cosine":
            raise ValueError(
                f"warmup_epochs needs schedule: cosine, received schedule={self.schedule!r}"
            )
        return self
