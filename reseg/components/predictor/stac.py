"""Predictions published as STAC: an Item beside each scene's COGs, a Collection of the folder.

    publish_items(out_dir, scenes, sources=None, properties=None) -> collection path

- `<scene>.item.json`: a STAC 1.1.0 Item whose assets are the scene's outputs, by relative
  href (`./<scene>.tif`, ...), so the folder can move (staging folders are renamed into
  place, buckets are copied) and its items still point at their files. Extensions:
  projection (`proj:code` or `proj:wkt2`, `proj:shape`, `proj:transform`, `proj:bbox`, read
  from the class COG), raster (`raster:bands` of each raster asset: data type, nodata, the
  confidence's scale 1/255 when it is stored as uint8) and classification
  (`classification:classes` on the class map: value, name and colour of each class, from
  the COG's class names and colour table, which are the config's class map). A
  `derived_from` link points at the source item when the scene came from STAC; the
  model, the export version and the run are properties (`reseg:*`).
- `collection.json`: a STAC Collection of every `*.item.json` in the folder (so a second
  `reseg predict` into the same `--out` adds to it), its extent the union of theirs.

Everything is validated against the STAC JSON schemas offline (`reseg.stac.validate`) before
it is written, items first and the collection last: a reader that starts from the collection
never finds an item without its COGs (they were written before this is called) nor a link to
an item not written yet.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reseg import stac, storage

log = logging.getLogger(__name__)

ITEM_SUFFIX = ".item.json"
COLLECTION = "collection.json"
STAC_VERSION = "1.1.0"
_MEDIA = {
    "classes": stac.COG_TYPE,
    "confidence": stac.COG_TYPE,
    "probabilities": stac.COG_TYPE,
    "preview": "image/png",
    "style": "application/xml",
    "metrics": "application/json",
}
_ROLES = {
    "classes": ["data"],
    "confidence": ["data", "quality"],
    "probabilities": ["data"],
    "preview": ["overview"],
    "style": ["metadata"],
    "metrics": ["metadata"],
}


def publish_items(
    out_dir: str | Path,
    scenes: Sequence[tuple[str, Mapping[str, Path]]],
    sources: Mapping[str, str] | None = None,
    properties: Mapping[str, Any] | None = None,
    collection_id: str = "reseg-predictions",
) -> Path:
    """Write `<scene>.item.json` for each (scene id, outputs by kind) of `scenes`, then
    `collection.json` of every item in `out_dir`; returns the collection's path.

    Args:
        out_dir: the folder of the outputs (local or s3:// / gs://).
        scenes: what `predict_scene` returned: the scene id and its output paths by kind
            (`classes`, `confidence`, ...), all in `out_dir`.
        sources: scene id -> href of the STAC item the scene came from (`derived_from`).
        properties: added to every item's properties (model, export version, run).
        collection_id: the Collection's id.
    """
    import rasterio

    out = storage.path(out_dir)
    now = _now()
    docs = []
    read: dict[str, list[stac.Item]] = {}
    storage.configure_gdal()
    with rasterio.Env():  # one GDAL environment (and AWS session) for every COG read
        for sid, outputs in scenes:
            src = (sources or {}).get(sid)
            when = _source_datetime(src, sid, read) if src else None
            doc = scene_item(sid, outputs, src, properties or {}, now, when)
            stac.validate(doc, out / f"{sid}{ITEM_SUFFIX}")
            docs.append(doc)
    for doc in docs:
        _write(out / f"{doc['id']}{ITEM_SUFFIX}", doc)
    coll = collection(out, collection_id, {f"{d['id']}{ITEM_SUFFIX}": d for d in docs})
    stac.validate(coll, out / COLLECTION)
    _write(out / COLLECTION, coll)
    log.info("STAC: %d items and %s in %s", len(docs), COLLECTION, out)
    return out / COLLECTION


def _source_datetime(href: str, sid: str, read: dict[str, list[stac.Item]]) -> dict | None:
    """The acquisition time of scene `sid`'s source item (`datetime`, or its start and end),
    which its class map shares; None when the source cannot be read again."""
    if href not in read:
        try:
            read[href] = stac.read_items(href)
        except Exception as e:  # the source moved since: the item says when it was made
            log.warning("%s: source item not read again (%s); datetime is now", href, e)
            read[href] = []
    for it in read[href]:
        if it.id == sid:
            keys = ("datetime", "start_datetime", "end_datetime")
            return {k: it.properties[k] for k in keys if k in it.properties}
    return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(p: Any, doc: dict[str, Any]) -> None:
    with storage.atomic_write(p, "w") as fh:
        fh.write(json.dumps(doc, indent=2) + "\n")


def _grid(path: Any) -> dict[str, Any]:
    """CRS, transform, shape, bounds, class names, colour table and band facts of a COG."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    storage.configure_gdal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(storage.gdal_path(path)) as ds:
            g: dict[str, Any] = {
                "crs": ds.crs,
                "transform": ds.transform,
                "shape": [ds.height, ds.width],
                "bounds": tuple(ds.bounds),
                "dtypes": list(ds.dtypes),
                "nodata": ds.nodata,
                "scales": list(ds.scales),
                "offsets": list(ds.offsets),
                "descriptions": list(ds.descriptions),
                "tags": ds.tags(),
            }
            try:
                g["colormap"] = ds.colormap(1)
            except ValueError:  # no colour table
                g["colormap"] = {}
    return g


def _bands(g: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for k, dtype in enumerate(g["dtypes"]):
        b: dict[str, Any] = {"data_type": dtype}
        if g["nodata"] is not None:
            b["nodata"] = g["nodata"]
        if g["scales"][k] not in (None, 1.0):
            b["scale"] = g["scales"][k]
            b["offset"] = g["offsets"][k] or 0.0
        if g["descriptions"][k]:
            b["name"] = g["descriptions"][k]
        out.append(b)
    return out


def scene_item(
    sid: str,
    outputs: Mapping[str, Any],
    source: str | None,
    properties: Mapping[str, Any],
    now: str,
    when: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The STAC Item (a dict) of one predicted scene (module docstring); its `datetime` is
    that of the source item (`when`), else `now`."""
    g = _grid(outputs["classes"])
    props: dict[str, Any] = {"datetime": now, **(when or {}), "created": now}
    geometry, bbox = _footprint(g, props)
    props["proj:shape"] = g["shape"]
    if g["tags"].get("RESEG_MODEL"):
        props["reseg:architecture"] = g["tags"]["RESEG_MODEL"]
    props.update({k: v for k, v in properties.items() if v is not None})
    if source is not None:
        props.setdefault("reseg:source_item", source)
    assets = _assets(outputs, g)
    links = [
        {"rel": "collection", "href": f"./{COLLECTION}", "type": "application/json"},
        {"rel": "parent", "href": f"./{COLLECTION}", "type": "application/json"},
        {"rel": "root", "href": f"./{COLLECTION}", "type": "application/json"},
    ]
    if source is not None:
        links.append({"rel": "derived_from", "href": source, "type": "application/geo+json"})
    doc: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [stac.EXTENSIONS[k] for k in ("projection", "raster", "classification")],
        "id": sid,
        "geometry": geometry,
        "properties": props,
        "links": links,
        "assets": assets,
        "collection": "reseg-predictions",
    }
    if bbox is not None:
        doc["bbox"] = bbox
    return doc


def _footprint(
    g: dict[str, Any], props: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The class COG's footprint in EPSG:4326 (geometry, bbox), and its projection facts
    (`proj:code` or `proj:wkt2`, `proj:bbox`, `proj:transform`) added to `props`; (None,
    None) and nothing added when it has no CRS."""
    if g["crs"] is None:
        return None, None
    from rasterio.warp import transform_bounds, transform_geom

    left, bottom, right, top = g["bounds"]
    ring = [[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]
    geometry = transform_geom(g["crs"], "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    geometry = {
        "type": "Polygon",
        "coordinates": [[list(p) for p in geometry["coordinates"][0]]],
    }
    bbox = list(transform_bounds(g["crs"], "EPSG:4326", left, bottom, right, top, densify_pts=21))
    epsg = g["crs"].to_epsg()
    if epsg is not None:
        props["proj:code"] = f"EPSG:{epsg}"
    else:
        props["proj:code"] = None
        props["proj:wkt2"] = g["crs"].to_wkt()
    props["proj:bbox"] = list(g["bounds"])
    props["proj:transform"] = list(g["transform"])[:6]
    return geometry, bbox


def _classes(g: dict[str, Any]) -> list[dict[str, Any]]:
    """`classification:classes` of the class COG: value, name and colour of each class."""
    names = json.loads(g["tags"].get("CLASS_NAMES", "[]"))
    classes = []
    for i, name in enumerate(names):
        c: dict[str, Any] = {"value": i, "name": name, "description": name}
        rgba = g["colormap"].get(i)
        if rgba is not None:
            c["color_hint"] = "".join(f"{v:02X}" for v in rgba[:3])
        classes.append(c)
    return classes


def _assets(outputs: Mapping[str, Any], g: dict[str, Any]) -> dict[str, Any]:
    """The item's assets: each output by relative href, with its media type and roles, the
    raster's bands, and the class map's classes."""
    classes = _classes(g)
    assets: dict[str, Any] = {}
    for kind, path in outputs.items():
        a: dict[str, Any] = {
            "href": f"./{storage.path(path).name}",
            "type": _MEDIA.get(kind, "application/octet-stream"),
            "roles": _ROLES.get(kind, ["metadata"]),
            "title": kind,
        }
        if kind in ("classes", "confidence", "probabilities"):
            a["raster:bands"] = _bands(g if kind == "classes" else _grid(path))
        if kind == "classes":
            a["classification:classes"] = classes
        if kind == "confidence":
            a["description"] = (
                "maximum class probability; p = value x scale + offset (raster:bands), "
                "nodata where the input is nodata"
            )
        assets[kind] = a
    return assets


def collection(
    out: Any, collection_id: str = "reseg-predictions", known: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Collection of every `*.item.json` directly in folder `out` (those in `known`, by
    file name, are not read again)."""
    known = known or {}
    names = sorted(n for n in storage.files_under(out) if "/" not in n and n.endswith(ITEM_SUFFIX))
    items = [known[n] if n in known else json.loads((out / n).read_text()) for n in names]
    boxes = [i["bbox"] for i in items if i.get("bbox")]
    bbox = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    times = sorted(i["properties"]["datetime"] for i in items) or [_now()]
    classes = next(
        (
            i["assets"]["classes"].get("classification:classes")
            for i in items
            if "classes" in i["assets"]
        ),
        None,
    )
    doc: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": collection_id,
        "description": "Class maps and confidence of reseg predictions",
        "license": "other",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[times[0], times[-1]]]}},
        "links": [{"rel": "root", "href": f"./{COLLECTION}", "type": "application/json"}]
        + [{"rel": "item", "href": f"./{n}", "type": "application/geo+json"} for n in names],
    }
    if classes:
        doc["summaries"] = {"classification:classes": classes}
        doc["stac_extensions"] = [stac.EXTENSIONS["classification"]]
    return doc


def publish_stac(
    cfg: Any,
    export: Any,
    folder: Any,
    written: Sequence[Mapping[str, Any]],
    source: str,
    fold: Any,
    run: Any = None,
) -> Path:
    """`publish_items` for the pipeline's predict step: the scenes the manifest records
    (`written`) in staging folder `folder`, their source items from the config's scenes, the
    model (its source and fold), the latest version in the export's base folder `export`
    (`<root>/export/<export.model_name>`) and the MLflow run as properties."""
    versions = (
        sorted(int(p.name) for p in export.iterdir() if p.name.isdigit()) if export.exists() else []
    )
    props = {
        "reseg:model": cfg.model.name,
        "reseg:model_source": source,
        "reseg:fold": fold,
        "reseg:export_name": cfg.export.model_name,
        "reseg:export_version": versions[-1] if versions else None,
        "reseg:run_id": getattr(run, "run_id", None) if run is not None and run.enabled else None,
        "reseg:experiment": cfg.name,
    }
    by_id = {s.scene_id: s for s in cfg.data.scenes}
    sources = {
        e["scene"]: by_id[e["scene"]].stac_item
        for e in written
        if e["scene"] in by_id and getattr(by_id[e["scene"]], "stac_item", None)
    }
    scenes = [(e["scene"], {k: folder / v for k, v in e["outputs"].items()}) for e in written]
    return publish_items(folder, scenes, sources, props, collection_id=cfg.name)
