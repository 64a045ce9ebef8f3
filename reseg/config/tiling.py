"""The `tiling` and `beam` sections."""

from __future__ import annotations

from pydantic import Field, model_validator

from reseg.config.base import Section


class TilingConfig(Section):
    """How scenes are cut into overlapping tiles and grouped into spatial folds."""

    tile_size: int = Field(256, ge=8, le=4096, description="Tile height and width, pixels.")
    overlap: int = Field(32, ge=0, description="Pixels shared by neighbouring tiles (even).")
    folds: int = Field(
        5,
        ge=2,
        le=100,
        description=(
            "K of K-fold cross validation: at least 2, since the models of fold k train on the "
            "other folds (3 or more for a validation fold)."
        ),
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Side of a spatial fold block in pixels, rounded to whole tile cores (at least one); "
            "default 2 cores."
        ),
    )
    seed: int = Field(0, description="Seed of the block-to-fold assignment.")
    shard_rows: int = Field(8, ge=1, description="Rows of tiles written to one TFRecord shard.")

    @model_validator(mode="after")
    def _overlap_fits(self) -> TilingConfig:
        if self.overlap % 2:
            raise ValueError(f"overlap must be even, received overlap={self.overlap}")
        if self.overlap >= self.tile_size:
            raise ValueError(
                f"overlap must be smaller than tile_size, received overlap={self.overlap}, "
                f"tile_size={self.tile_size}"
            )
        return self

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    @property
    def block_cells(self) -> int:
        """Fold block side in tile cores."""
        if self.block_size is None:
            return 2
        return max(1, round(self.block_size / self.stride))


class BeamConfig(Section):
    """Options of the Beam jobs (tiling, statistics, scoring)."""

    args: list[str] = Field(
        default_factory=lambda: [
            "--runner=DirectRunner",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_threading",
        ],
        description="Beam pipeline options; CLI arguments after `--` are appended.",
    )
