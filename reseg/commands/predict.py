"""Class and confidence GeoTIFFs of whole scenes.

- `reseg predict --model MODEL SCENE... --out DIR`: any model, any images; outputs are
  named after each image's file name (with its parent folders where two images share
  a name);
- `reseg predict --config CONFIG --root DIR`: the pipeline's `predict` step, every
  scene of the config with the exported model's source, into `<root>/predictions/`,
  named by scene id.

With `--beam` (or `predict.beam: true`) either form runs as a Beam job over scenes and
blocks (`reseg.pipeline.predict`, `reseg.components.predictor.job`); Beam options follow `--`, after the
config's `beam.args`: `reseg predict --model M a.tif b.tif --out D --beam -- --runner=...`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from reseg import stac, storage
from reseg.commands._common import add_wait
from reseg.config import BeamConfig, PredictConfig, VectorLabels, load_config
from reseg.config.data import StacSource
from reseg.errors import ConfigError
from reseg.pipeline import steps
from reseg.pipeline.predict import (
    VECTOR_SUFFIXES,
    Prediction,
    Scene,
    prediction,
    publish_items,
)
from reseg.pipeline.run import check_root, hold_root

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=storage.argument,
        help="a round's model directory (model.keras + model.json), merged rounds (merged.json) "
        "or an exported SavedModel (export/<name>[/<version>])",
    )
    parser.add_argument(
        "scenes", nargs="*", type=storage.argument, metavar="SCENE", help="image rasters to segment"
    )
    parser.add_argument(
        "--out", type=storage.argument, help="output folder (a local path, s3:// or gs://)"
    )
    _add_stac(parser.add_argument_group("STAC (docs/stac.md)"))
    add_wait(parser, "--out (or --root)")
    parser.add_argument(
        "--root",
        type=storage.argument,
        help="with --config and no --model: the pipeline's predict step into <root>/predictions",
    )
    parser.add_argument(
        "--config",
        type=Path,  # local: config files are read from disk (reseg.config.load_config)
        help="YAML config: its `predict` section sets the defaults of the options below, and its "
        "`data` section says how labels are read (label values, vector attributes); scenes listed "
        "there with labels are scored without --labels",
    )
    _add_labels(parser)
    _add_prediction_options(
        parser.add_argument_group("prediction (override the config's predict section)")
    )
    parser.set_defaults(beam_args=[])  # `-- BEAM_OPTIONS` (reseg.cli moves them here)


def _add_stac(s) -> None:
    """Scenes from STAC (a file, catalog or API search) and the items published beside the
    outputs."""
    s.add_argument(
        "--stac",
        metavar="SOURCE",
        help="scenes from STAC instead of SCENE: an ItemCollection file, a static catalog or "
        "collection (local, s3:// or gs://); scene ids are the item ids",
    )
    s.add_argument(
        "--stac-search",
        metavar="URL",
        help="scenes from a STAC API search (pystac-client) with the --stac-* filters below",
    )
    s.add_argument("--stac-collections", metavar="IDS", help="with --stac-search: comma list")
    s.add_argument("--stac-bbox", metavar="W,S,E,N", help="with --stac-search: degrees")
    s.add_argument("--stac-datetime", metavar="TIME", help="with --stac-search: instant or a/b")
    s.add_argument("--stac-filter", metavar="JSON", help="with --stac-search: CQL2-JSON filter")
    s.add_argument("--stac-max-items", type=int, metavar="N", help="with --stac-search")
    s.add_argument(
        "--stac-image",
        default="image",
        metavar="KEYS",
        help="with --stac: the image's asset key, or single-band asset keys separated by commas "
        "stacked in that order (default: image)",
    )
    s.add_argument(
        "--stac-labels", metavar="KEY", help="with --stac: the label raster's asset key (scores)"
    )
    s.add_argument(
        "--no-stac-items",
        dest="stac_items",
        action="store_false",
        help="do not publish <scene>.item.json and collection.json beside the outputs",
    )


def _add_labels(parser: argparse.ArgumentParser) -> None:
    """--labels and the options of vector labels."""
    parser.add_argument(
        "--labels",
        nargs="+",
        type=storage.argument,
        metavar="LABELS",
        help="reference label raster or polygons, one per SCENE: whole-scene metrics into <scene>.metrics.json",
    )
    parser.add_argument(
        "--label-attribute", help="vector labels: attribute holding the label value"
    )
    parser.add_argument("--burn-class", type=int, help="vector labels: class id of every polygon")
    parser.add_argument(
        "--background", type=int, help="vector labels: class id outside the polygons"
    )
    parser.add_argument("--label-encoding", help="vector labels: attribute encoding, e.g. latin-1")


def _add_prediction_options(g) -> None:
    """The options that override the config's predict section (`predict_config`)."""
    g.add_argument("--tile-size", type=int, help="tile side in pixels (default by model)")
    g.add_argument("--overlap", type=int, help="pixels shared by neighbouring tiles (default 32)")
    g.add_argument(
        "--batch-size", type=int, help="tiles per model call at the full tile size (default 1)"
    )
    g.add_argument(
        "--tta",
        help="test-time augmentation: none, d4, or a comma list such as identity,rot90,flip",
    )
    g.add_argument(
        "--refine", choices=["none", "crf", "slic"], help="refinement of the probabilities"
    )
    g.add_argument(
        "--tuning",
        type=storage.argument,
        help="with --refine: a tuning folder (<root>/refine/fold<k>, `reseg tune-refine`) whose "
        "setting to use; default the tuning of --model when it is a pipeline model that has one",
    )
    g.add_argument(
        "--confidence", choices=["uint8", "float32"], help="confidence encoding (default uint8)"
    )
    g.add_argument(
        "--probabilities", action="store_true", default=None, help="also write <scene>.probs.tif"
    )
    g.add_argument(
        "--no-preview", dest="preview", action="store_false", default=None, help="no preview PNG"
    )
    g.add_argument(
        "--nodata", type=float, help="image nodata value (default the file's, then the model's)"
    )
    g.add_argument(
        "--jit",
        dest="jit_compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA-compile the model (default off)",
    )
    g.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="arithmetic of the model (default auto: bfloat16 where the hardware runs it natively, "
        "guarded by agreement with float32; else float32)",
    )
    g.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="no progress bar"
    )
    g.add_argument(
        "--beam",
        action="store_true",
        default=None,
        help="run as a Beam job over scenes and blocks (Beam options after `--`)",
    )
    g.add_argument(
        "--block-size",
        type=int,
        help="with --beam: split scenes larger than this many pixels a side into blocks (default 8192)",
    )


def predict_config(args: argparse.Namespace, base):
    """The predict section of `base` (a config's, or the defaults) with the command line's
    prediction options over it; one line naming the options that are invalid."""
    over = {
        k: getattr(args, k)
        for k in (
            "tile_size",
            "overlap",
            "batch_size",
            "refine",
            "confidence",
            "probabilities",
            "preview",
            "nodata",
            "jit_compile",
            "precision",
            "progress",
            "beam",
            "block_size",
        )
        if getattr(args, k) is not None
    }
    if args.tta is not None:
        over["tta"] = (
            args.tta if args.tta in ("none", "d4") else [t.strip() for t in args.tta.split(",")]
        )
    try:
        return PredictConfig.model_validate({**(base.model_dump() if base else {}), **over})
    except ValidationError as e:
        msgs = "; ".join(
            f"{'.'.join(map(str, x['loc'])) or 'predict'}: {x['msg']}" for x in e.errors()
        )
        raise ConfigError(f"invalid prediction options: {msgs}") from None


def _label_sources(args: argparse.Namespace, info, data) -> list | None:

    if args.labels is None:
        if data is None:
            return None
        by_image = {_key(s.image): s for s in data.scenes}
        found = [by_image.get(_key(p)) for p in args.scenes]
        if not any(s is not None and (s.labels or s.vector) for s in found):
            return None
        return [None if s is None else (s.vector or s.labels) for s in found]
    if len(args.labels) != len(args.scenes):
        raise ConfigError(
            f"--labels: give one per scene ({len(args.scenes)} scenes, {len(args.labels)} labels)"
        )
    out: list = []
    for p in args.labels:
        vector_opts = args.label_attribute is not None or args.burn_class is not None
        if p.suffix.lower() in VECTOR_SUFFIXES and vector_opts:
            values = info.label_values or {n: i for i, n in enumerate(info.class_names)}
            try:
                out.append(
                    VectorLabels(
                        path=storage.resolved(p),
                        attribute=args.label_attribute,
                        burn_class=args.burn_class,
                        background=args.background,
                        encoding=args.label_encoding,
                        values={}
                        if args.label_attribute is None
                        else {k: v for k, v in values.items() if v != 255},
                    )
                )
            except ValidationError as e:
                raise ConfigError(f"--labels {p}: {e.errors()[0]['msg']}") from None
        else:
            out.append(p)
    return out


def _key(p) -> str:
    """A scene's path as the config and the command line are compared: URIs as they are."""
    return storage.resolved(p)


def _print_metrics(scene: str, m: dict) -> None:
    def f(v):
        return "   -  " if v is None else f"{v:6.3f}"

    print(
        f"{scene}: {m['pixels']} labelled pixels  OA {f(m['overall_accuracy'])}  mIoU {f(m['mean_iou'])}  "
        f"kappa {f(m['kappa'])}"
    )
    print(f"  {'class':<20} {'IoU':>6} {'F1':>6} {'support':>10}")
    for name, c in m["per_class"].items():
        print(f"  {name:<20} {f(c['iou'])} {f(c['f1'])} {c['support']:>10}")


def _pipeline_step(args: argparse.Namespace) -> int:
    if args.config is None or args.model is not None or args.scenes or args.out is not None:
        raise ConfigError(
            "--root predicts the config's scenes: give --config CONFIG --root DIR, "
            "without --model, SCENE or --out"
        )
    cfg = load_config(args.config)
    check_root(args.root)
    cfg = cfg.model_copy(update={"predict": predict_config(args, cfg.predict)})
    with hold_root(args.root, args.wait):
        preds = steps.predict(steps.Context(cfg, args.root, tuple(args.beam_args)))
    for e in preds.scenes:
        print(f"{e['scene']}: " + ", ".join(str(preds.path / p) for p in e["outputs"].values()))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.root is not None:
        return _pipeline_step(args)
    sources = stac_scenes(args)
    if args.model is None or args.out is None or not args.scenes:
        raise ConfigError(
            "give --model MODEL SCENE... --out DIR (or --config CONFIG --root DIR for the "
            "pipeline's predict step)"
        )
    for x in [args.model, *args.scenes, *(args.labels or [])]:
        storage.check_uri(x)
    storage.check_output(args.out)
    cfg = load_config(args.config) if args.config is not None else None
    pcfg = predict_config(args, cfg.predict if cfg else None)
    base = (cfg.beam if cfg else BeamConfig()).args if pcfg.beam else []
    how = prediction(
        pcfg,
        model=args.model,
        tuning=args.tuning,
        data=cfg.data if cfg else None,
        beam_args=[*base, *args.beam_args],
    )
    # one writer per --out: two predictions into it would remove each other's staging
    with hold_root(args.out, args.wait):
        results = how.run(scenes_of(args, how), args.out, print_scene)
        publish(args, results, sources, {"reseg:model_path": str(args.model)})
    return 0


def publish(args: argparse.Namespace, results: list, sources: dict[str, str], props: dict) -> None:
    """The predicted scenes as STAC items and a collection in --out (unless --no-stac-items)."""
    if args.stac_items:
        publish_items(args.out, [(r.scene, r.outputs) for r in results], sources, props)


def stac_scenes(args: argparse.Namespace) -> dict[str, str]:
    """With --stac: the items' images (and labels) as SCENE (and --labels), their ids as the
    scene ids; returns scene id -> source item href (empty without --stac)."""
    if args.stac is None and args.stac_search is None:
        return {}
    if args.scenes or args.labels or (args.stac and args.stac_search):
        raise ConfigError(
            "--stac or --stac-search gives the scenes: give one, without SCENE or --labels"
        )
    image = args.stac_image.split(",")
    try:
        search = {
            "collections": args.stac_collections and args.stac_collections.split(","),
            "bbox": args.stac_bbox and [float(x) for x in args.stac_bbox.split(",")],
            "datetime": args.stac_datetime,
            "filter": args.stac_filter and json.loads(args.stac_filter),
            "max_items": args.stac_max_items,
        }
        src = StacSource.model_validate(
            {
                "items": args.stac,
                "api": args.stac_search,
                **{k: v for k, v in search.items() if v is not None},
            }
        )
    except (ValidationError, ValueError) as e:
        msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
        raise ConfigError(f"--stac options: {msg}") from None
    entries = stac.scene_dicts(
        src.items or src.api,
        image if len(image) > 1 else image[0],
        args.stac_labels,
        role="labelled",
        role_property=None,  # every item is scored: --stac-labels names an asset of each
        items=src.read(),
    )
    args.scenes = [storage.path(e["image"]) for e in entries]
    args.scene_ids = [e["id"] for e in entries]
    if args.stac_labels:
        args.labels = [storage.path(e["labels"]) if "labels" in e else None for e in entries]
    return {e["id"]: e["stac_item"] for e in entries}


def scenes_of(args: argparse.Namespace, how: Prediction) -> list[Scene]:
    """The command line's scenes with their label sources (`--labels`, else the config's)."""
    labels = _label_sources(args, how.info, how.data)
    ids = getattr(args, "scene_ids", None)  # the STAC items' ids (--stac)
    return [
        Scene(p, ids[k] if ids else None, labels[k] if labels else None)
        for k, p in enumerate(args.scenes)
    ]


def print_scene(scene: Scene, result) -> None:
    """A predicted scene's outputs (and metrics when it had labels), as the commands say it."""
    print(
        f"{result.scene}: " + ", ".join(str(p) for p in result.outputs.values()),
        file=sys.stderr,
    )
    if result.metrics is not None:
        _print_metrics(result.scene, result.metrics)
