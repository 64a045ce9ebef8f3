"""The `data` section: scenes, classes, bands, nodata and how labels are read."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from reseg.config.base import Section

IGNORE = 255
"""Label id of pixels that carry no class (nodata, outside the scene, unlabeled)."""


class ClassSpec(Section):
    """One output class; its id is its position in `data.classes`."""

    name: str = Field(min_length=1, description="Class name, written into outputs.")
    color: str = Field(
        "#808080",
        pattern=r"^#[0-9a-fA-F]{6}$",
        description="Colour of the class in class maps, as #rrggbb.",
    )

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


class VectorLabels(Section):
    """Polygons rasterised onto the image grid (Shapefile, GeoPackage, GeoJSON)."""

    path: str = Field(description="Vector file; relative paths are relative to the config file.")
    layer: str | None = Field(None, description="Layer name (GeoPackage); default the first.")
    attribute: str | None = Field(
        None, description="Attribute holding the class; None burns `burn_class` for every polygon."
    )
    values: dict[str, int] = Field(
        default_factory=dict, description="Attribute value (as text) to class id."
    )
    burn_class: int | None = Field(None, ge=0, le=254, description="Class of every polygon.")
    background: int | None = Field(
        None, ge=0, le=254, description="Class of pixels outside all polygons; None = ignore."
    )
    encoding: str | None = Field(None, description="Attribute encoding, e.g. latin-1.")
    all_touched: bool = Field(False, description="Burn every pixel a polygon touches.")
    min_coverage: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Warn when the polygons cover less than this share of the image's area "
        "(none covering it at all is an error).",
    )

    @model_validator(mode="after")
    def _one_source_of_class(self) -> VectorLabels:
        if self.attribute is None and self.burn_class is None:
            raise ValueError("give either `attribute` (with `values`) or `burn_class`")
        if self.attribute is not None and self.burn_class is not None:
            raise ValueError("`attribute` and `burn_class` exclude each other")
        return self


ROLES = ("labelled", "unlabelled", "target")
"""Scene roles: labelled (trains, selects, validates), unlabelled (image only: scored each
round, a source of pseudo-labels, never evaluated), target (labels for evaluation only)."""


class BlockRegion(Section):
    """A rectangle of fold blocks of a scene, half-open: blocks rows[0] <= bi < rows[1] and
    cols[0] <= bj < cols[1]. A block is g x g tile cores, g = `tiling.block_size` / stride rounded
    (at least 1, default 2); a scene of R x C tiles has ceil(R / g) x ceil(C / g) blocks."""

    rows: tuple[int, int] = Field(description="[first, end) block row.")
    cols: tuple[int, int] = Field(description="[first, end) block column.")

    @model_validator(mode="after")
    def _ordered(self) -> BlockRegion:
        for name, (a, b) in (("rows", self.rows), ("cols", self.cols)):
            if not 0 <= a < b:
                raise ValueError(f"{name} must satisfy 0 <= first < end, received {[a, b]}")
        return self


class SceneSpec(Section):
    """One scene: a multi-band image and its labels (a raster or polygons), or no labels."""

    id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="Scene id; default the image stem."
    )
    image: str = Field(description="Image raster (GeoTIFF, or a non-georeferenced PNG/TIFF).")
    labels: str | None = Field(None, description="Label raster.")
    vector: VectorLabels | None = Field(None, description="Label polygons.")
    role: Literal["labelled", "unlabelled", "target"] = Field(
        "labelled",
        description=(
            "labelled: labels train, select and validate; unlabelled: image only, scored every "
            "round and a source of pseudo-labels (rounds.pseudo), never evaluated; target: "
            "labels used only to evaluate (target metrics, pseudo-label precision), never to "
            "train or select; its image is a source of pseudo-labels."
        ),
    )
    stac_item: str | None = Field(
        None,
        description="The STAC item the scene came from (set for scenes read through `data.stac`; "
        "published predictions link to it as `derived_from`).",
    )
    target_blocks: BlockRegion | None = Field(
        None,
        description=(
            "A region of a labelled scene declared target, in fold blocks: its labels become "
            "evaluation-only as those of a target scene."
        ),
    )

    @model_serializer(mode="wrap")
    def _without_stac_item(self, handler: Any) -> dict[str, Any]:
        """No `stac_item` key for a scene given by path: the dumps (and so the fingerprints)
        of configs without STAC are what they were before STAC sources existed."""
        d = handler(self)
        if isinstance(d, dict) and d.get("stac_item") is None:
            d.pop("stac_item", None)
        return d

    @model_validator(mode="after")
    def _one_label_source(self) -> SceneSpec:
        if self.labels is not None and self.vector is not None:
            raise ValueError("`labels` and `vector` exclude each other")
        has_labels = self.labels is not None or self.vector is not None
        if self.role == "unlabelled" and has_labels:
            raise ValueError("a scene with role unlabelled takes no `labels` or `vector`")
        if self.role == "target" and not has_labels:
            raise ValueError("a scene with role target needs `labels` or `vector`")
        if self.target_blocks is not None and self.role != "labelled":
            raise ValueError("`target_blocks` marks a region of a labelled scene as target")
        if self.target_blocks is not None and not has_labels:
            raise ValueError("`target_blocks` needs the scene's `labels` or `vector`")
        return self

    @property
    def pseudo_source(self) -> bool:
        """Whether some of the scene's pixels are unlabelled or target (pseudo-label pool)."""
        return self.role != "labelled" or self.target_blocks is not None

    @property
    def scene_id(self) -> str:
        from pathlib import Path

        return self.id or Path(self.image).stem


class StacSource(Section):
    """Scenes named by STAC: one scene per item of an ItemCollection file, a static catalog
    or collection (its item and child links followed), local or in a bucket."""

    items: str | None = Field(
        None,
        description="ItemCollection file (GeoJSON FeatureCollection of items), catalog.json or "
        "collection.json; relative paths are relative to the config file, s3:// and gs:// too. "
        "Scene ids are the item ids; asset hrefs are relative to the document holding them.",
    )
    api: str | None = Field(
        None, description="A STAC API's URL to search instead of `items` (pystac-client)."
    )
    collections: list[str] | None = Field(None, description="api: collections to search.")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="api: west, south, east, north in degrees."
    )
    intersects: dict[str, Any] | None = Field(None, description="api: a GeoJSON geometry.")
    datetime: str | None = Field(
        None, description="api: an instant or interval, e.g. 2024-06-01/2024-06-30."
    )
    query: dict[str, Any] | None = Field(None, description="api: query extension filters.")
    filter: dict[str, Any] | None = Field(None, description="api: a CQL2-JSON filter.")
    max_items: int | None = Field(None, ge=1, description="api: at most this many items.")
    image: str | list[str] = Field(
        "image",
        description="Asset key of the (multi-band) image, or a list of single-band asset keys "
        "stacked in that order.",
    )
    labels: str | None = Field(
        None, description="Asset key of the label raster (scenes whose role is unlabelled skip it)."
    )
    vector: dict[str, Any] | None = Field(
        None,
        description="The `labels` asset is polygons: the options of a scene's `vector` "
        "(attribute and values, or burn_class; background, layer, encoding, ...) without `path`.",
    )
    role: Literal["labelled", "unlabelled", "target"] = Field(
        "labelled", description="Role of every item that does not set `role_property`."
    )
    role_property: str = Field(
        "reseg:role", description="Item property that sets the item's role (overrides `role`)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> StacSource:
        if (self.items is None) == (self.api is None):
            raise ValueError("give either `items` (a file) or `api` (a STAC API to search)")
        search = ("collections", "bbox", "intersects", "datetime", "query", "filter", "max_items")
        given = [k for k in search if getattr(self, k) is not None]
        if self.items is not None and given:
            raise ValueError(f"{', '.join(given)}: search parameters need `api`")
        return self

    def read(self) -> list:
        """The items of this source (`reseg.stac.Item`)."""
        from reseg import stac

        if self.items is not None:
            return stac.read_items(self.items)
        return stac.search_items(
            self.api,
            collections=self.collections,
            bbox=None if self.bbox is None else list(self.bbox),
            intersects=self.intersects,
            datetime=self.datetime,
            query=self.query,
            filter=self.filter,
            max_items=self.max_items,
        )


class DataConfig(Section):
    """Where the scenes are and what their pixel values mean."""

    scenes: list[SceneSpec] = Field(
        default_factory=list,
        description="Scenes by path; those of `stac` are added after them (at least one in all).",
    )
    stac: list[StacSource] = Field(
        default_factory=list,
        description="Scenes read from STAC item collections or catalogs (docs/stac.md); resolved "
        "into `scenes` when the config is loaded.",
    )
    classes: list[ClassSpec] = Field(min_length=2, max_length=254)
    label_values: dict[float, int | None] | None = Field(
        None,
        description=(
            "Label raster value to class id (null = ignore). Default: value v is class v "
            "for v < number of classes."
        ),
    )
    unknown_labels: Literal["error", "ignore"] = Field(
        "error", description="Label values outside `label_values`: an error, or ignored (255)."
    )
    bands: list[int] | None = Field(
        None, description="1-based band indexes of the image to use; default all."
    )
    nodata: float | None = Field(None, description="Image nodata value; default the file's.")
    label_nodata: float | None = Field(None, description="Label nodata; default the file's.")
    nan: Literal["nodata", "error"] = Field(
        "nodata", description="NaN image pixels: treated as nodata (logged), or an error."
    )
    label_grid: Literal["auto", "same_as_image", "resample"] = Field(
        "auto",
        description=(
            "auto: a label raster whose grid (CRS, transform, size) differs from the image's is "
            "resampled onto it (nearest) and the log says so; same_as_image: the label raster is "
            "declared to be on the image grid (same size and transform required, CRS labels may "
            "differ); resample: always warp."
        ),
    )

    @model_serializer(mode="wrap")
    def _without_stac(self, handler: Any) -> dict[str, Any]:
        """No `stac` key without STAC sources (as `SceneSpec._without_stac_item`)."""
        d = handler(self)
        if isinstance(d, dict) and not d.get("stac"):
            d.pop("stac", None)
        return d

    @field_validator("bands")
    @classmethod
    def _bands_positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 1 or len(set(v)) != len(v)):
            raise ValueError("bands are distinct 1-based band indexes")
        return v

    @model_validator(mode="after")
    def _classes_and_values(self) -> DataConfig:
        n = len(self.classes)
        for value, cls in (self.label_values or {}).items():
            if cls is not None and not 0 <= cls < n:
                raise ValueError(f"label_values maps {value:g} to class {cls}, outside 0..{n - 1}")
        if not self.scenes:
            raise ValueError("no scenes: give `scenes` or `stac`")
        ids = [s.scene_id for s in self.scenes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"scene ids must be unique; repeated: {dup}")
        if not any(s.role == "labelled" for s in self.scenes):
            raise ValueError("at least one scene needs role labelled (the source of training)")
        return self

    @property
    def has_target(self) -> bool:
        """Whether any pixels are target (evaluation-only labels)."""
        return any(s.role == "target" or s.target_blocks is not None for s in self.scenes)

    @property
    def has_pseudo_source(self) -> bool:
        return any(s.pseudo_source for s in self.scenes)

    def scenes_by_id(self) -> dict[str, SceneSpec]:
        return {s.scene_id: s for s in self.scenes}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def value_to_class(self) -> dict[float, int]:
        """Label raster value to class id, IGNORE for ignored values."""
        if self.label_values is None:
            return {float(v): v for v in range(self.num_classes)}
        return {float(k): (IGNORE if v is None else v) for k, v in self.label_values.items()}
