"""Refinement tuned on the validation pixels: `reseg tune-refine`, and how prediction uses it.

For the models of evaluation fold k of K (`reseg.folds`):

- validation pixels: the core pixels of the tiles of fold v = `validation_fold(k, K)`;
- evaluation (held-out) pixels: the core pixels of the tiles of fold k.

The models' probabilities are read from the scores the rounds wrote (every tile is
scored), combined as the merge combines them (`reseg.inference.combine` with the
members, method and weights of `merged.json`), so no model runs here. Each tile is
refined whole, its margin giving the core context as in prediction, and the core
pixels counted, each scene pixel once, as the evaluator counts them.

For every setting of the grid (`predict.tune`: every combination of the listed
values, the other parameters from `predict.crf` / `predict.slic`), the validation
confusion gives its mIoU over the classes present in the validation labels
(`CRITERION`); the best setting of each method is the one of highest mIoU (the first
listed on ties), and it *beats* no refinement when its mIoU is higher and the lower
end of the one-sided `predict.tune.confidence` interval of the gain (validation tiles
resampled, paired) is above 0. Then no refinement and the best setting of each method are
evaluated on fold k's pixels: the held-out figures, with per-tile confusions for
the study's bootstrap. Lengths given in pixels are recorded in metres when the
tiles are georeferenced (one pixel size), so prediction applies the same ground
scale to a scene of any resolution.

`apply_tuning` turns a prediction config with `refine: crf|slic` into the tuned
one, or into no refinement when the tuned setting did not beat it on validation
(`predict.tune.only_if_better`), with the message that says which.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg import artifacts, layout, storage
from reseg.artifacts import ModelInfo
from reseg.components.predictor.refine import Refiner, as_metres, ground_pixel_size, to_pixels
from reseg.config import PredictConfig
from reseg.config.predict import CrfConfig, SlicConfig, parse_length
from reseg.errors import ArtifactError, ConfigError
from reseg.folds import validation_fold
from reseg.inference import combine
from reseg.metrics import confusion, scores
from reseg.tfrecords_schema import Tile, read_tiles

log = logging.getLogger(__name__)

CODE_VERSION = 3
TUNED = ("crf", "slic")
"""The refinements that are tuned."""
CRITERION = "miou_labelled"
SUMMARY = ("miou_labelled", "mean_iou", "overall_accuracy", "kappa")
"""`miou_labelled`, the criterion: mean IoU over the classes present in the labels of the
pixels counted, the same classes for every setting. (`mean_iou`, as `reseg.metrics`, averages
over the classes in labels *or* predictions, so a refinement that wipes out a class the
labels do not have would gain by dropping its IoU of 0 from the average.)"""


@dataclass(frozen=True)
class Member:
    """One model whose probabilities enter the tuned prediction: its scores and weight."""

    scores: artifacts.Scores
    weight: float = 1.0


def grid(pcfg: PredictConfig, method: str) -> list[dict[str, Any]]:
    """The settings tried for `method`: every combination of `predict.tune.<method>`'s lists,
    as overrides of `predict.<method>`, in the order listed (first field slowest)."""
    g = getattr(pcfg.tune, method).model_dump()
    names = list(g)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*g.values())]


def _config(pcfg: PredictConfig, method: str, setting: dict[str, Any]) -> CrfConfig | SlicConfig:
    base = getattr(pcfg, method)
    return type(base).model_validate({**base.model_dump(), **setting})


def _tiles(
    members: Sequence[Member], method: str, folds: set[int]
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Tiles of `folds` with the members' probabilities combined: (tile, (H, W, C) float32).

    The first member's tiles stream; the others' probabilities of those folds are held
    (float16) to join them by tile key.
    """
    others: list[dict[str, np.ndarray]] = []
    for m in members[1:]:
        held = {t.key: t.probs for t in read_tiles(list(m.scores.files)) if t.fold in folds}
        others.append(held)
    weights = [m.weight for m in members]
    for t in read_tiles(list(members[0].scores.files)):
        if t.fold not in folds:
            continue
        if t.probs is None:
            raise ArtifactError(f"{members[0].scores.path}: tile {t.key} carries no scores")
        probs = [t.probs, *(o[t.key] for o in others)] if others else [t.probs]
        yield t, combine(probs, weights if method == "weighted" else None, method)


def _core_cm(t: Tile, probs: np.ndarray, c: int) -> np.ndarray:
    rs, cs = t.core_slice()
    return confusion(t.label[rs, cs], probs[rs, cs].argmax(-1), c)


def _summary(cm: np.ndarray, class_names: Sequence[str], per_class: bool = False) -> dict:
    m = scores(cm, list(class_names))
    labelled = miou(cm, cm.sum(1) > 0)
    m["miou_labelled"] = None if np.isnan(labelled) else float(labelled)
    out = {k: m[k] for k in SUMMARY}
    out["pixels"] = m["pixels"]
    if per_class:
        out["iou"] = {k: v["iou"] for k, v in m["per_class"].items()}
    return out


def _key(v: float | None) -> float:
    return -1.0 if v is None else v


def _ground(setting: dict[str, Any], pixel_m: float | None) -> dict[str, Any]:
    """A CRF or SLIC config's fields with its lengths in pixels written in metres (when
    the tiles have one known pixel size)."""
    if pixel_m is None:
        return dict(setting)
    out = {}
    for name, v in setting.items():
        is_length = name in ("bilateral_sxy", "gaussian_sxy", "size", "sigma")
        if is_length and parse_length(v)[1] == "px":
            out[name] = as_metres(to_pixels(v, None, name), pixel_m)
        else:
            out[name] = v
    return out


def tune(
    members: Sequence[Member],
    combine_method: str,
    info: ModelInfo,
    fold: int,
    k: int,
    pcfg: PredictConfig,
    out: str | Path,
    class_names: Sequence[str],
    source: dict[str, Any],
) -> artifacts.RefineTuning:
    """Tune CRF and SLIC on the validation pixels of `fold`'s models; see the module docstring.

    Args:
        members: the models' scores (one per round of a merge, else one) and weights.
        combine_method: how members combine (`merged.json`'s method; `mean` for one).
        info: the models' ModelInfo (band statistics for the colour units).
        fold: evaluation fold k; k_folds `k` (`tiling.folds`), at least 3.
        pcfg: the predict section: `tune` (grid), `crf`, `slic`, `rgb_bands`.
        out: the artifact directory (`<root>/refine/fold<k>`).
        class_names: the fixed class set of the metrics.
        source: what the probabilities are (recorded): label, model path, fold.

    Returns:
        The published `RefineTuning`; skipped when current.
    """
    val = validation_fold(fold, k)
    if val is None:
        raise ConfigError(
            f"tune-refine needs a validation fold: tiling.folds = {k} (at least 3: fold k "
            "evaluates, fold k + 1 validates, the rest train)"
        )
    out = storage.path(out)
    grids = {m: grid(pcfg, m) for m in TUNED}
    inputs = _Inputs(members, combine_method, info, fold, k, pcfg, class_names)
    fp = _fingerprint(inputs)
    if artifacts.is_current(out, fp):
        log.info("refinement tuning is current (%s); skipping", out)
        return artifacts.RefineTuning.load(out)
    with artifacts.stage(out, fp, "tune-refine", local=True) as st:  # numpy writes tiles.npz
        methods = _tune_into(st.dir, inputs, grids, val, source)
        st.manifest.update(fold=fold, validation_fold=val, source=source)
    tuning = artifacts.RefineTuning.load(out)
    log.info(
        "refinement of fold %d tuned on fold %d: %s",
        fold,
        val,
        "; ".join(
            f"{m} {'beats' if t['better'] else 'does not beat'} none ({t['gain']:+.3f} mIoU)"
            for m, t in methods.items()
        ),
    )
    return tuning


@dataclass(frozen=True)
class _Inputs:
    """What a tuning reads and depends on (`tune`'s arguments of the same names)."""

    members: Sequence[Member]
    combine_method: str
    info: ModelInfo
    fold: int
    k: int
    pcfg: PredictConfig
    class_names: Sequence[str]


def _fingerprint(inp: _Inputs) -> str:
    """What a tuning depends on: the scores and how they combine, the folds, the grids and
    settings, the band statistics (colour units) and the class set."""
    return artifacts.fingerprint(
        "tune-refine",
        CODE_VERSION,
        [m.scores.version for m in inp.members],
        [m.weight for m in inp.members],
        inp.combine_method,
        inp.fold,
        inp.k,
        inp.pcfg.crf.model_dump(mode="json"),
        inp.pcfg.slic.model_dump(mode="json"),
        inp.pcfg.tune.model_dump(mode="json"),
        inp.pcfg.rgb_bands,
        list(inp.info.mean),
        list(inp.info.std),
        list(inp.class_names),
    )


def _tune_into(
    d: Path, inp: _Inputs, grids: dict[str, list[dict]], val: int, source: dict[str, Any]
) -> dict[str, Any]:
    """The tuning on validation, its best settings held out, written into staging directory
    `d` (`refine.json`, per-tile confusions); returns the record's `methods`."""
    methods, none_val, n_val, pixel_sizes, pixel_m = _validation(inp, grids, val)
    keys, stacked = _held_out(inp, methods, pixel_sizes)
    held = {m: _summary(a.sum(0), inp.class_names, per_class=True) for m, a in stacked.items()}
    for m in grids:
        methods[m]["evaluation"] = held[m]
    record = {
        "fold": inp.fold,
        "validation_fold": val,
        "folds": inp.k,
        "source": source,
        "members": [{"scores": str(mb.scores.path), "weight": mb.weight} for mb in inp.members],
        "combine": inp.combine_method,
        "pixel_size_m": pixel_m,
        "validation_tiles": n_val,
        "evaluation_tiles": len(keys),
        "none": {"validation": none_val, "evaluation": held["none"]},
        "methods": methods,
    }
    artifacts.write_json(d / layout.REFINE_JSON, record)
    np.savez_compressed(d / layout.REFINE_TILES_NPZ, keys=np.array(keys, dtype=str), **stacked)
    return methods


def _validation(
    inp: _Inputs, grids: dict[str, list[dict]], val: int
) -> tuple[dict[str, Any], dict[str, Any], int, dict[str, float | None], float | None]:
    """Every setting of every method, and no refinement, on the validation tiles: each
    method's settings tried, its best and whether that beats no refinement (tile bootstrap).

    Returns:
        methods (as `refine.json` has them, without `evaluation`), the validation summary of
        no refinement, the number of validation tiles, the ground pixel size per scene, and
        the one pixel size of the validation scenes (None when they differ).
    """
    members, info, pcfg, class_names = inp.members, inp.info, inp.pcfg, inp.class_names
    c = len(class_names)
    val_cms: dict[str, list[np.ndarray]] = {m: [] for m in grids}
    none_cms: list[np.ndarray] = []
    pixel_sizes: dict[str, float | None] = {}
    for t, probs in _tiles(members, inp.combine_method, {val}):
        px = pixel_sizes.setdefault(t.scene, ground_pixel_size(t.crs, t.transform))
        none_cms.append(_core_cm(t, probs, c))
        for m, g in grids.items():
            row = [_core_cm(t, _refiner(m, info, pcfg, s, px)(probs, t.image), c) for s in g]
            val_cms[m].append(np.stack(row))
    if not none_cms:
        raise ArtifactError(
            f"{members[0].scores.path}: no tiles of validation fold {val} to tune on"
        )
    none_tiles = np.stack(none_cms)  # (n, C, C)
    none_val = _summary(none_tiles.sum(0), class_names)
    labelled = none_tiles.sum((0, 2)) > 0  # the classes in the validation labels
    sizes = set(pixel_sizes.values())
    pixel_m = sizes.pop() if len(sizes) == 1 else None
    methods: dict[str, Any] = {}
    for m, g in grids.items():
        tiles_m = np.stack(val_cms[m], axis=1)  # (settings, n, C, C)
        tried = [
            {"setting": s, **_summary(tiles_m[i].sum(0), class_names)} for i, s in enumerate(g)
        ]
        best = max(range(len(g)), key=lambda i: _key(tried[i][CRITERION]))
        gain = _key(tried[best][CRITERION]) - _key(none_val[CRITERION])
        low = gain_lower_bound(
            none_tiles, tiles_m[best], pcfg.tune.confidence, pcfg.tune.bootstrap, labelled
        )
        methods[m] = {
            "tried": tried,
            "best_setting": g[best],
            "best": _ground(_config(pcfg, m, g[best]).model_dump(mode="json"), pixel_m),
            "validation": {k_: tried[best][k_] for k_ in (*SUMMARY, "pixels")},
            "gain": gain,
            "gain_lower": low,
            "confidence": pcfg.tune.confidence,
            "better": gain > 0 and low > 0,
        }
    return methods, none_val, len(none_cms), pixel_sizes, pixel_m


def _held_out(
    inp: _Inputs, methods: dict[str, Any], pixel_sizes: dict[str, float | None]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """No refinement and each method's best setting on the held-out fold k: the tile keys
    (sorted) and per method (and `none`) the (n, C, C) per-tile confusions."""
    info, pcfg = inp.info, inp.pcfg
    c = len(inp.class_names)
    per_tile: dict[str, dict[str, np.ndarray]] = {"none": {}, **{m: {} for m in methods}}
    for t, probs in _tiles(inp.members, inp.combine_method, {inp.fold}):
        px = pixel_sizes.setdefault(t.scene, ground_pixel_size(t.crs, t.transform))
        per_tile["none"][t.key] = _core_cm(t, probs, c)
        for m in methods:
            r = _refiner(m, info, pcfg, methods[m]["best_setting"], px)
            per_tile[m][t.key] = _core_cm(t, r(probs, t.image), c)
    keys = sorted(per_tile["none"])
    stacked = {
        m: np.stack([d[key] for key in keys]) if keys else np.zeros((0, c, c), np.int64)
        for m, d in per_tile.items()
    }
    return keys, stacked


def miou(cms: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """mIoU of each confusion matrix of (..., C, C): the mean IoU over the classes present in
    labels or predictions (as `reseg.metrics.scores`), or only over `classes` ((C,) bool)
    where they are present; NaN where no class is."""
    tp = np.diagonal(cms, axis1=-2, axis2=-1).astype(np.float64)
    union = cms.sum(-1) + cms.sum(-2) - tp
    iou = np.divide(tp, union, out=np.full(tp.shape, np.nan), where=union > 0)
    present = (union > 0) if classes is None else (union > 0) & classes
    n = present.sum(-1)
    total = np.where(present, iou, 0.0).sum(-1)
    return np.divide(total, n, out=np.full(n.shape, np.nan), where=n > 0)


def gain_lower_bound(
    base: np.ndarray,
    other: np.ndarray,
    level: float,
    samples: int,
    classes: np.ndarray | None = None,
    seed: int = 0,
) -> float:
    """Lower end of the one-sided `level` percentile interval of mIoU(other) - mIoU(base),
    tiles resampled with replacement (paired: the same tiles for both).

    Args:
        base, other: (n, C, C) per-tile confusions of the same n tiles.
        classes: (C,) bool, the classes averaged (default those present, as `miou`).
    """
    n = len(base)
    rng = np.random.default_rng(seed)
    w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)])
    a = np.einsum("sn,nij->sij", w, base)
    b = np.einsum("sn,nij->sij", w, other)
    d = miou(b, classes) - miou(a, classes)
    d = d[~np.isnan(d)]
    return float(np.quantile(d, 1 - level)) if len(d) else float("-inf")


def _refiner(
    method: str, info: ModelInfo, pcfg: PredictConfig, setting: dict, pixel_m: float | None
) -> Refiner:
    cfg = _config(pcfg, method, setting)
    return Refiner.make(
        method,
        info,
        pcfg.rgb_bands,
        cfg if method == "crf" else pcfg.crf,  # type: ignore[arg-type]
        cfg if method == "slic" else pcfg.slic,  # type: ignore[arg-type]
        pixel_m,
    )


def _f(v: float | None) -> str:
    return "    – " if v is None else f"{v:6.3f}"


def table(record: dict[str, Any]) -> str:
    """The tuning as text: every setting tried (validation mIoU, OA), then the held-out line."""
    k, v = record["fold"], record["validation_fold"]
    none = record["none"]
    lines = [
        f"refinement tuned for fold {k}'s models on the validation pixels of fold {v} "
        f"({record['validation_tiles']} tiles); no refinement: mIoU {_f(none['validation'][CRITERION])} "
        "(mIoU: over the classes in the labels; mIoU*: in labels or predictions)",
    ]
    for m, t in record["methods"].items():
        lines.append(f"  {m:<5} {'setting':<52} {'mIoU':>6} {'mIoU*':>6} {'OA':>6}")
        for row in t["tried"]:
            s = ", ".join(f"{a}={b}" for a, b in row["setting"].items())
            mark = " *" if row["setting"] == t["best_setting"] else ""
            lines.append(
                f"        {s:<52} {_f(row[CRITERION])} {_f(row['mean_iou'])} "
                f"{_f(row['overall_accuracy'])}{mark}"
            )
        verdict = "beats" if t["better"] else "does not beat"
        lines.append(
            f"        best {verdict} no refinement: {t['gain']:+.3f} mIoU on validation, "
            f"lower end {t['gain_lower']:+.3f} at {t['confidence']:.0%} (tile bootstrap)"
        )
    lines.append(
        f"  held out (fold {k}, {record['evaluation_tiles']} tiles): mIoU none "
        f"{_f(none['evaluation'][CRITERION])}"
        + "".join(f", {m} {_f(t['evaluation'][CRITERION])}" for m, t in record["methods"].items())
        + " (mIoU* "
        + f"{_f(none['evaluation']['mean_iou']).strip()}"
        + "".join(
            f", {_f(t['evaluation']['mean_iou']).strip()}" for t in record["methods"].values()
        )
        + ")"
    )
    return "\n".join(lines)


# --- prediction with a tuning ---------------------------------------------------------------


def find_tuning(model: str | Path) -> Path | None:
    """The published tuning of a pipeline model: `<root>/refine/fold<k>` for merged rounds
    `<root>/merged/fold<k>` or a round's model `<root>/rounds/r<r>/fold<k>/model`, when it
    was tuned for that model (its recorded model path). None otherwise."""
    p = storage.absolute(model)  # links not followed: the layout is read from the name
    if (p / layout.MERGED_JSON).exists() and p.parent.name == layout.merged_root("").name:
        root, fold_dir = p.parent.parent, p.name
    elif p.name == layout.MODEL and len(p.parents) >= 4:
        root, fold_dir = p.parents[3], p.parent.name
    else:
        return None
    if not fold_dir.startswith("fold"):
        return None
    d = layout.refine_root(root) / fold_dir
    if not (d / layout.MANIFEST).exists():
        return None
    recorded = artifacts.RefineTuning.load(d).record.get("source", {}).get("path")
    return d if recorded and storage.same(recorded, p) else None


def apply_tuning(
    pcfg: PredictConfig, tuning: artifacts.RefineTuning | str | Path | None
) -> tuple[PredictConfig, str]:
    """`pcfg` with its refinement's tuned setting, or with no refinement when that setting did
    not beat no refinement on validation (and `pcfg.tune.only_if_better`); and a message
    saying which. Unchanged (empty message) when `pcfg.refine` is none; unchanged with a
    message when there is no tuning."""
    method = pcfg.refine
    if method == "none":
        return pcfg, ""
    if tuning is None:
        return pcfg, (
            f"refine {method}: no tuning for this model; predict.{method} as configured "
            "(`reseg tune-refine` tunes it on the validation pixels)"
        )
    t = (
        tuning
        if isinstance(tuning, artifacts.RefineTuning)
        else artifacts.RefineTuning.load(tuning)
    )
    m = t.method(method)
    if m is None:
        return pcfg, f"refine {method}: {t.path} holds no tuning of {method}; as configured"
    rec = t.record
    where = f"validation pixels of fold {rec['validation_fold']} ({t.path})"
    best, none = m["validation"][CRITERION], rec["none"]["validation"][CRITERION]
    if not m["better"] and pcfg.tune.only_if_better:
        return pcfg.model_copy(update={"refine": "none"}), (
            f"refine {method} NOT applied: its best setting does not beat no refinement on the "
            f"{where}: mIoU {_f(best).strip()} vs {_f(none).strip()} without, a gain of "
            f"{m['gain']:+.3f} whose lower end at {m['confidence']:.0%} is {m['gain_lower']:+.3f} "
            "(tile bootstrap); predict.tune.only_if_better: false applies it anyway"
        )
    cfg = type(getattr(pcfg, method)).model_validate(m["best"])
    setting = ", ".join(f"{a}={b}" for a, b in _changed(cfg, getattr(pcfg, method)).items())
    return pcfg.model_copy(update={method: cfg}), (
        f"refine {method} with the setting tuned on the {where}: {setting or 'as configured'} "
        f"(mIoU {_f(best).strip()} vs {_f(none).strip()} without)"
    )


def _changed(a: Any, b: Any) -> dict[str, Any]:
    da, db = a.model_dump(), b.model_dump()
    return {k: v for k, v in da.items() if db.get(k) != v} or da
