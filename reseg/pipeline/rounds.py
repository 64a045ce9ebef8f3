"""Confidence rounds for one validation fold: train, score, evaluate, select; then merge.

Round 0 trains on every labelled pixel of the training folds. Round r >= 1 trains
on the tiles weighted by round r - 1's selection, starting from round r - 1's
model (`rounds.init: finetune`) or from scratch. Every step is skipped when its
artifact is current, so a rerun after a crash resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseg import artifacts, layout
from reseg.config import Config

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    round: int
    fold: int | None
    model: Path
    scores: Path
    metrics: dict[str, Any]
    selection: dict[str, Any]


@dataclass
class FoldResult:
    fold: int | None
    rounds: list[RoundResult] = field(default_factory=list)
    merged: dict[str, Any] | None = None
    merged_methods: dict[str, Any] | None = None


def _round_config(cfg: Config, r: int) -> Config:
    if r == 0 or cfg.rounds.epochs is None:
        return cfg
    return cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"epochs": cfg.rounds.epochs})}
    )


def run_fold(
    cfg: Config, root: Path, fold: int | None, beam_args: Sequence[str], run
) -> FoldResult:
    """Rounds 0..R of one validation fold, then their merge; returns what they measured."""
    from reseg.components.evaluator import evaluate
    from reseg.components.scorer import score, score_files
    from reseg.components.selector import select, weighted_files
    from reseg.components.trainer import train

    tiles = artifacts.TileSet.load(layout.tiles_dir(root))
    names = tiles.class_names
    result = FoldResult(fold)
    fold_name = "all" if fold is None else f"fold{fold}"
    for r in range(cfg.rounds.count + 1):
        with run.nested(
            f"round {r} {fold_name}", tags={"reseg.round": r, "reseg.fold": fold_name}
        ) as rrun:
            prev = result.rounds[-1] if result.rounds else None
            tile_files = (
                None if prev is None else weighted_files(layout.selection_dir(root, r - 1, fold))
            )
            init = prev.model if prev is not None and cfg.rounds.init == "finetune" else None
            model = train(
                _round_config(cfg, r),
                root,
                fold=fold,
                round=r,
                tile_files=tile_files,
                init_model=init,
                tracking=rrun,
            )
            scores = score(
                cfg, model, list(tiles.files), layout.scores_dir(root, r, fold), r, beam_args
            )
            metrics = (
                evaluate(
                    scores,
                    layout.eval_dir(root, r, fold),
                    fold,
                    names,
                    title=f"round {r} {fold_name}",
                )
                if fold is not None
                else {}
            )
            sel_dir = select(
                score_files(scores),
                tiles,
                layout.selection_dir(root, r, fold),
                cfg.rounds.selection,
                fold,
                r,
                previous=None if prev is None else layout.selection_dir(root, r - 1, fold),
                fingerprint_inputs=artifacts.read_manifest(scores)["fingerprint"],
            )
            selection = _load_json(sel_dir / "selection.json")
            result.rounds.append(RoundResult(r, fold, model, scores, metrics, selection))
            _log_round(rrun, metrics, selection, layout.eval_dir(root, r, fold), sel_dir)
        if _no_gain(cfg, result):
            log.info(
                "round %d did not raise validation mIoU; stopping (rounds.stop_when_no_gain)", r
            )
            break
    if fold is not None:
        _merge(cfg, root, result, beam_args)
    return result


def _no_gain(cfg: Config, result: FoldResult) -> bool:
    if not cfg.rounds.stop_when_no_gain or len(result.rounds) < 2:
        return False
    a, b = result.rounds[-2].metrics.get("mean_iou"), result.rounds[-1].metrics.get("mean_iou")
    return a is not None and b is not None and b <= a


def _merge(cfg: Config, root: Path, result: FoldResult, beam_args: Sequence[str]) -> None:
    from reseg.components.evaluator import evaluate
    from reseg.components.merger import merge, method_metrics

    fold = result.fold
    out = layout.merged_dir(root, fold)
    weights = [max(rr.metrics.get("mean_iou") or 0.0, 1e-6) for rr in result.rounds]
    merge(
        [rr.scores for rr in result.rounds],
        [rr.model for rr in result.rounds],
        weights,
        cfg.rounds.merge,
        fold,
        out,
        artifacts.TileSet.load(layout.tiles_dir(root)).class_names,
        [*cfg.beam.args, *beam_args],
    )
    result.merged = evaluate(
        out / "scores",
        out / "eval",
        fold,
        [c.name for c in cfg.data.classes],
        title=f"merged ({cfg.rounds.merge}) fold{fold}",
    )
    result.merged_methods = method_metrics(out)["methods"]


def _log_round(run, metrics: dict, selection: dict, eval_dir: Path, sel_dir: Path) -> None:
    if not run.enabled:
        return
    flat = {
        f"val_{k}": metrics.get(k) for k in ("mean_iou", "overall_accuracy", "kappa", "mean_f1")
    }
    for name, pc in metrics.get("per_class", {}).items():
        flat[f"val_iou_{name}"] = pc["iou"]
    for name, pc in selection["per_class"].items():
        flat[f"selected_{name}"] = pc["selected"]
        flat[f"jaccard_{name}"] = pc["jaccard_previous"]
    run.log_metrics(flat)
    for f in ("confusion.png", "per_class.png", "metrics.json"):
        if (eval_dir / f).exists():
            run.log_artifact(eval_dir / f, "eval")
    for f in ("score_hist.png", "score_hist.json", "selection.json"):
        run.log_artifact(sel_dir / f, "selection")


def _load_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
