"""STAC documents in and out, below the config: reading items, stacking band assets, validation.

- `read_items(source)`: the items of an ItemCollection file, a static catalog or collection
  (its `child` and `item` links followed), or a single item file, on a disk or in a bucket;
  asset hrefs made absolute against the document that holds them.
- `scene_dicts(source, ...)`: those items as the config's scene entries (`data.scenes`), the
  image one multi-band asset or several single-band assets stacked into a VRT.
- `validate(doc, where)`: a STAC Item or Collection checked against the STAC 1.1.0 core
  schemas (shipped with pystac) and the projection, raster and classification extension
  schemas (shipped here, `stac_schemas/`), offline.

Errors are one line naming the document, the item and what is wrong (`InputError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reseg import storage
from reseg.errors import InputError, IOFailure, OutputError

SCHEMA_DIR = Path(__file__).with_name("stac_schemas")
EXTENSIONS = {
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
}
"""Extension name -> schema URI written into `stac_extensions` of published items."""
_SCHEMA_FILES = {
    EXTENSIONS["projection"]: "projection-v2.0.0.json",
    EXTENSIONS["raster"]: "raster-v1.1.0.json",
    EXTENSIONS["classification"]: "classification-v1.1.0.json",
}
ROLE_PROPERTY = "reseg:role"
"""Item property that sets a scene's role (labelled, unlabelled, target) per item."""
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


# --- validation ---------------------------------------------------------------------------


_validators: dict[str, Any] = {}


def _schema_validator(uri: str) -> Any:
    """A compiled JSON-schema validator of schema `uri`, made once: the STAC core schemas
    that pystac ships (`get_local_schema_cache`) and the extension schemas of `stac_schemas/`
    in one registry, which never reaches for the network (a schema not in it is an error)."""
    if uri not in _validators:
        import jsonschema
        from pystac.validation.local_validator import get_local_schema_cache
        from referencing import Registry, Resource
        from referencing.exceptions import NoSuchResource

        cache = get_local_schema_cache()
        for u, name in _SCHEMA_FILES.items():
            cache[u] = json.loads((SCHEMA_DIR / name).read_text())
        if uri not in cache:
            raise OutputError(f"STAC schema {uri} is not available offline")

        def refuse(missing: str) -> Any:
            raise NoSuchResource(ref=missing)

        registry = Registry(retrieve=refuse).with_resources(  # type: ignore[call-arg]
            [(u, Resource.from_contents(c)) for u, c in cache.items()]
        )
        schema = cache[uri]
        cls = jsonschema.validators.validator_for(schema)
        _validators[uri] = cls(schema, registry=registry)
    return _validators[uri]


def validate(doc: dict[str, Any], where: str | os.PathLike) -> None:
    """Raise `OutputError` (one line) when `doc`, a STAC Item or Collection, is not valid
    against the core schema of its type (STAC 1.1.0) and the schema of each extension it
    declares, all read from files shipped with pystac and reseg (offline)."""
    from pystac.version import STACVersion

    name = {"Feature": "item", "Collection": "collection"}.get(doc.get("type", ""))
    if name is None:
        raise OutputError(f"{where}: not a STAC Item or Collection (type {doc.get('type')!r})")
    version = STACVersion.DEFAULT_STAC_VERSION
    if doc.get("stac_version") != version:
        raise OutputError(
            f"{where}: stac_version {doc.get('stac_version')!r}; reseg validates {version}"
        )
    core = f"https://schemas.stacspec.org/v{version}/{name}-spec/json-schema/{name}.json"
    for uri in [core, *doc.get("stac_extensions", [])]:
        errors = list(_schema_validator(uri).iter_errors(doc))
        if errors:
            said = _deepest(errors)
            raise OutputError(f"{where}: not a valid STAC {doc['type']}: {said[:300]}")


def _deepest(errors: list[Any]) -> str:
    """The jsonschema error deepest in the document (through oneOf/anyOf contexts): the one
    that names the field at fault rather than "not valid under any of the given schemas"."""
    leaves, stack = [], list(errors)
    while stack:
        err = stack.pop()
        if err.context:
            stack += err.context
        else:
            leaves.append(err)
    if not leaves:
        return "invalid"
    best = max(leaves, key=lambda x: (len(x.absolute_path), x.validator == "required"))
    return f"{best.json_path}: {best.message}"


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A STAC item as reseg uses it: where it was read (`href`: its own file, or the
    ItemCollection that holds it), its properties and its assets with absolute hrefs."""

    id: str
    href: str
    properties: dict[str, Any]
    assets: dict[str, dict[str, Any]]
    doc: dict[str, Any]


def _resolve(base_doc: str, href: str) -> str:
    """`href` of a link or an asset, absolute: relative ones against the folder of the
    document `base_doc` that holds them."""
    if href.startswith("file://"):
        href = href[len("file://") :]
    if "://" in href:
        return href
    if os.path.isabs(href) and not storage.is_remote(base_doc):
        return os.path.normpath(href)
    if storage.is_remote(base_doc):
        return str(storage.join(storage.path(base_doc).parent, href))
    return os.path.normpath(os.path.join(os.path.dirname(base_doc), href))


def _read_json(href: str, what: str) -> dict[str, Any]:
    if href.split("://", 1)[0] in ("http", "https"):
        raise InputError(
            f"{href}: {what} over HTTP is not read here (give a local path, s3:// or gs://)"
        )
    storage.check_uri(href)
    p = storage.path(href)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{href}: {what} not found") from None
    except Exception as e:
        err = storage.client_error(e, href)
        if err is not None:
            raise err from None
        if isinstance(e, OSError):
            raise InputError(f"{href}: {what} cannot be read ({e.strerror or e})") from None
        raise
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{href}: {what} is not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{href}: {what} is not a JSON object")
    return doc


def _item(doc: dict[str, Any], base: str, href: str) -> Item:
    if not isinstance(doc.get("id"), str) or not doc["id"]:
        raise InputError(f"{href}: a STAC item without an id")
    assets = doc.get("assets")
    if not isinstance(assets, dict):
        raise InputError(f"{href}: item {doc['id']}: no assets")
    absolute = {}
    for key, a in assets.items():
        if not isinstance(a, dict) or not isinstance(a.get("href"), str):
            raise InputError(f"{href}: item {doc['id']}: asset '{key}' has no href")
        target = _resolve(base, a["href"])
        if target.split("://", 1)[0] in ("http", "https"):  # a bucket copy reseg reads, if named
            alt = a.get("alternate") if isinstance(a.get("alternate"), dict) else {}
            for other in alt.values():
                if (
                    isinstance(other, dict)
                    and storage.scheme(str(other.get("href", ""))) in storage.SCHEMES
                ):
                    target = str(other["href"])
                    break
        absolute[key] = {**a, "href": target}
    return Item(doc["id"], href, dict(doc.get("properties") or {}), absolute, doc)


def read_items(source: str | os.PathLike) -> list[Item]:
    """Every item of `source`: an ItemCollection (GeoJSON FeatureCollection), a catalog or
    collection (its `item` links and, recursively, its `child` links), or one item."""
    source = str(source)
    doc = _read_json(source, "STAC document")
    items: list[Item] = []
    _collect(doc, source, items, set())
    if not items:
        raise InputError(f"{source}: no STAC items found")
    ids = [i.id for i in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"{source}: item ids repeat ({', '.join(dup)}); scene ids must be unique")
    return items


def _collect(doc: dict[str, Any], href: str, out: list[Item], seen: set[str]) -> None:
    if href in seen:
        return
    seen.add(href)
    kind = doc.get("type")
    if kind == "FeatureCollection":
        for k, f in enumerate(doc.get("features") or []):
            if not isinstance(f, dict):
                raise InputError(f"{href}: features[{k}] is not a STAC item")
            self_link = _link(f, "self")
            out.append(_item(f, href, _resolve(href, self_link) if self_link else href))
        return
    if kind == "Feature":
        out.append(_item(doc, href, href))
        return
    if kind not in ("Catalog", "Collection"):
        raise InputError(
            f"{href}: not a STAC ItemCollection, Catalog, Collection or Item (type {kind!r})"
        )
    for link in doc.get("links") or []:
        if not isinstance(link, dict) or link.get("rel") not in ("item", "child"):
            continue
        target = _resolve(href, str(link.get("href", "")))
        what = "STAC item" if link["rel"] == "item" else "STAC catalog"
        _collect(_read_json(target, what), target, out, seen)


def search_items(
    url: str,
    collections: list[str] | None = None,
    bbox: list[float] | None = None,
    intersects: dict[str, Any] | None = None,
    datetime: str | None = None,
    query: dict[str, Any] | None = None,
    filter: dict[str, Any] | None = None,
    max_items: int | None = None,
) -> list[Item]:
    """The items a STAC API search (pystac-client) returns; each item's href is its `self`
    link on the API. An unreachable API is an `IOFailure`, a refused search or one that matches
    nothing an `InputError`, each one line naming the API."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    what = ", ".join(
        f"{k} {v}"
        for k, v in (
            ("collections", collections),
            ("bbox", bbox),
            ("intersects", intersects and intersects.get("type")),
            ("datetime", datetime),
            ("query", query),
            ("filter", filter),
        )
        if v
    )
    try:
        client = Client.open(url)
        search = client.search(
            collections=collections,
            bbox=bbox,
            intersects=intersects,
            datetime=datetime,
            query=query,
            filter=filter,
            max_items=max_items,
        )
        docs = list(search.items_as_dicts())
    except APIError as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        low = text.lower()
        if any(w in low for w in ("connection", "max retries", "timed out", "resolve")):
            raise IOFailure(f"{url}: STAC API unreachable ({text[:200]})") from None
        raise InputError(f"{url}: STAC API refused the search ({text[:200]})") from None
    except NotImplementedError as e:  # pystac-client: the API does not conform to search
        raise InputError(f"{url}: not a STAC API with item search ({e})") from None
    if not docs:
        raise InputError(f"{url}: the STAC search matched no items ({what or 'no filters'})")
    items = []
    for d in docs:
        self_link = _link(d, "self")
        href = self_link or url
        items.append(_item(d, href, href))
    return items


def _link(doc: dict[str, Any], rel: str) -> str | None:
    for link in doc.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == rel and link.get("href"):
            return str(link["href"])
    return None


def _asset(item: Item, key: str, source: str) -> dict[str, Any]:
    a = item.assets.get(key)
    if a is None:
        have = ", ".join(sorted(item.assets)) or "none"
        raise InputError(f"{source}: item {item.id}: no asset '{key}' (assets: {have})")
    return a


def label_items(items: list[Item]) -> dict[str, Item]:
    """Label items (label extension: `label:type` set) by the href of each item their
    `source` links point to."""
    out = {}
    for it in items:
        if "label:type" not in it.properties:
            continue
        for link in it.doc.get("links") or []:
            if isinstance(link, dict) and link.get("rel") == "source" and link.get("href"):
                out[_resolve(it.href, str(link["href"]))] = it
    return out


def _declared_bands(asset: dict[str, Any]) -> int | None:
    """The band count an asset declares (`bands`, `raster:bands` or `eo:bands`), if any."""
    for key in ("bands", "raster:bands", "eo:bands"):
        if isinstance(asset.get(key), list):
            return len(asset[key])
    return None


def scene_dicts(
    source: str | os.PathLike,
    image: str | list[str],
    labels: str | None = None,
    role: str = "labelled",
    role_property: str | None = ROLE_PROPERTY,
    items: list[Item] | None = None,
    vector: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The config's scene entries (`SceneSpec` fields) of the items of `source`.

    `image` is one asset key (a multi-band image) or a list of single-band asset keys stacked
    in that order (a VRT in the cache, `stack_bands`); `labels` the label raster's asset key
    (scenes whose role is unlabelled take none), or with `vector` (the options of
    `VectorLabels` but `path`) its polygons. The role is the item's `role_property`, else
    `role` (every item's with `role_property` None). Every item is checked before any scene
    is returned: a missing asset, or image assets that declare different band counts across
    items, is an `InputError`.
    """
    source = str(source)
    items = read_items(source) if items is None else items
    keys = [image] if isinstance(image, str) else list(image)
    counts: dict[int, str] = {}
    out = []
    by_source = label_items(items)
    for it in items:
        if "label:type" in it.properties:
            continue  # a label item (label extension): labels of the item it links to
        assets = [_asset(it, k, source) for k in keys]
        r = _role(it, source, role, role_property)
        lab = None
        if labels is not None and r != "unlabelled":
            lab = _asset(by_source.get(it.href, it), labels, source)["href"]
        path = _image_href(source, it, image, assets, counts)
        entry: dict[str, Any] = {"id": it.id, "image": path, "role": r, "stac_item": it.href}
        if lab is not None and vector is not None:
            entry["vector"] = {**vector, "path": lab}
        elif lab is not None:
            entry["labels"] = lab
        out.append((entry, [a["href"] for a in assets]))
    result = []
    for entry, hrefs in out:
        if entry["image"] is None:
            entry["image"] = stack_bands(hrefs, f"{source}: item {entry['id']}")
        result.append(entry)
    return result


def _role(it: Item, source: str, role: str, role_property: str | None) -> str:
    """The item's role: its `role_property`, else `role`; one of labelled, unlabelled, target."""
    r = it.properties.get(role_property, role) if role_property else role
    if r not in ("labelled", "unlabelled", "target"):
        raise InputError(
            f"{source}: item {it.id}: {role_property} {r!r} is not labelled, unlabelled or target"
        )
    return r


def _image_href(
    source: str, it: Item, image: str | list[str], assets: list[dict], counts: dict[int, str]
) -> str | None:
    """The href of the item's image asset, or None for single-band assets to be stacked
    (each checked to have one band). `counts` (band count -> first item declaring it)
    gathers the image asset's band counts across items: two different ones are an error."""
    if isinstance(image, str):
        n = _declared_bands(assets[0])
        if n is not None:
            counts.setdefault(n, it.id)
        path = assets[0]["href"]
    else:
        for k, a in zip(image, assets, strict=True):
            n = _declared_bands(a)
            if n is not None and n != 1:
                raise InputError(
                    f"{source}: item {it.id}: asset '{k}' has {n} bands; stacked image "
                    "assets must have one band each"
                )
        path = None  # stacked below, once every item is known to be complete
    if len(counts) > 1:
        (n0, first), (n1, other) = list(counts.items())[:2]
        raise InputError(
            f"{source}: image asset '{image}' has {n0} bands in item {first} and {n1} in "
            f"item {other}; every item's image needs the same bands"
        )
    return path


def stack_bands(hrefs: list[str], where: str) -> str:
    """A VRT (in the cache, named by its content) stacking single-band rasters `hrefs` in
    order; they must share size, transform and CRS. Returns its path."""
    bands, shape = _band_sources(hrefs, where)
    dtypes = {b[1] for b in bands}
    if len(dtypes) != 1:
        raise InputError(f"{where}: stacked bands have different data types {sorted(dtypes)}")
    text = _vrt(bands, shape)
    folder = storage.cache_dir() / "stac"
    folder.mkdir(parents=True, exist_ok=True)
    name = posixpath.basename(hrefs[0]).rsplit(".", 1)[0]
    out = folder / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.vrt"
    if not out.exists():
        with storage.atomic_write(out, "w") as fh:
            fh.write(text)
    return str(out)


_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}
"""numpy dtype -> GDAL data type name of a VRT band."""


def _band_sources(hrefs: list[str], where: str) -> tuple[list[tuple], tuple]:
    """Each single-band raster's (href, dtype, nodata, block shape), and the one grid
    (width, height, transform, CRS) they must share."""
    import rasterio

    storage.configure_gdal()
    bands = []
    shape = None
    for href in hrefs:
        try:
            with rasterio.open(storage.gdal_path(href)) as ds:
                if ds.count != 1:
                    raise InputError(f"{where}: {href} has {ds.count} bands; stacking takes one")
                grid = (ds.width, ds.height, tuple(ds.transform)[:6], ds.crs)
                if shape is None:
                    shape = grid
                elif grid != shape:
                    raise InputError(
                        f"{where}: {href} is not on the grid of {hrefs[0]} (size, transform "
                        "or CRS differ); stacked bands must share one grid"
                    )
                bands.append((href, ds.dtypes[0], ds.nodata, ds.block_shapes[0]))
        except rasterio.errors.RasterioIOError as e:
            raise InputError(f"{where}: {href} cannot be read ({str(e)[:200]})") from None
    assert shape is not None
    return bands, shape


def _vrt(bands: list[tuple], shape: tuple) -> str:
    """The VRT's XML stacking `bands` (`_band_sources`) on grid `shape`."""
    width, height, transform, crs = shape
    gdal_types = _GDAL_TYPES
    a, b, c, d, e, f = transform
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs is not None:
        from xml.sax.saxutils import escape

        lines.append(f"  <SRS>{escape(crs.to_wkt())}</SRS>")
        lines.append(f"  <GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>")
    for k, (href, dtype, nodata, (by, bx)) in enumerate(bands, start=1):
        lines.append(f'  <VRTRasterBand dataType="{gdal_types[dtype]}" band="{k}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata!r}</NoDataValue>")
        lines += [
            "    <SimpleSource>",
            f'      <SourceFilename relativeToVRT="0">{storage.gdal_path(href)}</SourceFilename>',
            "      <SourceBand>1</SourceBand>",
            f'      <SourceProperties RasterXSize="{width}" RasterYSize="{height}" '
            f'DataType="{gdal_types[dtype]}" BlockXSize="{bx}" BlockYSize="{by}"/>',
            f'      <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>',
            f'      <DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>',
            "    </SimpleSource>",
            "  </VRTRasterBand>",
        ]
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


# --- describing rasters -------------------------------------------------------------------


def describe(
    item_id: str,
    assets: dict[str, str | os.PathLike],
    relative_to: str | os.PathLike | None = None,
    properties: dict[str, Any] | None = None,
    datetime: str = "2020-01-01T00:00:00Z",
) -> dict[str, Any]:
    """A STAC Item (dict) of local rasters `assets` (key -> path): geometry, bbox and the
    projection extension from the first one, `raster:bands` per asset; hrefs relative to
    folder `relative_to` when given. For making item collections of one's own scenes (the
    example's `examples/stac/items.json`, tests)."""
    import rasterio
    from rasterio.warp import transform_bounds

    props: dict[str, Any] = {"datetime": datetime, **(properties or {})}
    out_assets: dict[str, Any] = {}
    doc: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [EXTENSIONS["projection"], EXTENSIONS["raster"]],
        "id": item_id,
        "geometry": None,
        "properties": props,
        "links": [],
        "assets": out_assets,
    }
    for k, (key, path) in enumerate(assets.items()):
        with rasterio.open(path) as ds:
            if k == 0 and ds.crs is not None:
                w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
                doc["bbox"] = [w, s, e, n]
                doc["geometry"] = {
                    "type": "Polygon",
                    "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
                }
                epsg = ds.crs.to_epsg()
                props["proj:code"] = f"EPSG:{epsg}" if epsg else None
                if epsg is None:
                    props["proj:wkt2"] = ds.crs.to_wkt()
                props["proj:shape"] = [ds.height, ds.width]
                props["proj:transform"] = list(ds.transform)[:6]
            bands = [
                {"data_type": dt, **({"nodata": ds.nodata} if ds.nodata is not None else {})}
                for dt in ds.dtypes
            ]
        href = str(path)
        if relative_to is not None:
            href = "./" + os.path.relpath(path, relative_to).replace(os.sep, "/")
        out_assets[key] = {
            "href": href,
            "type": COG_TYPE.split(";")[0] + "; application=geotiff",
            "roles": ["data"],
            "raster:bands": bands,
        }
    return doc


def item_collection(items: list[dict[str, Any]]) -> dict[str, Any]:
    """An ItemCollection (GeoJSON FeatureCollection) of item dicts."""
    return {"type": "FeatureCollection", "features": items}
