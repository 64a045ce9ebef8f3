"""One function per step: the only place that wires components together.

`reseg run`, every step command (`reseg tile`, `train`, `score`, ...) and every
study cell call these functions and nothing else, so running the steps by hand
writes exactly the artifacts (same fingerprints) that `reseg run` writes, and a
`reseg run` afterwards skips them. Every step reads the artifacts it needs from
the root (typed, `reseg.artifacts`), skips its work when its artifact is current,
and returns the artifact.

Round r of fold k (`train`, `score`, `evaluate`, `select`):

- round 0 trains `model` from scratch on every labelled pixel of the folds != k;
- round r >= 1 trains on round r - 1's selection (tiles with per-pixel weights),
  fine-tuning round r - 1's model (`rounds.init: finetune`) or from scratch, for
  `rounds.epochs` epochs (default `train.epochs`);
- with `rounds.pseudo`, round r >= 1 trains instead on every labelled pixel plus round
  r - 1's pseudo-labels of the unlabelled and target pixels (`pseudo`), and each round
  is also evaluated on the target pixels (`evaluate_target`) when there are any;
- `merge` combines the published rounds 0..R of fold k, weighting each by its
  mIoU on the validation fold (`rounds.merge: weighted`), and evaluates the merge.

Pixels of fold k's models have three roles (`reseg.folds`): the training folds
train and are the selector's candidates; the validation fold v = (k + 1) mod K
chooses the best epoch, the merge weights and when rounds stop (`validate`,
`rounds/r<r>/fold<k>/val`); fold k is evaluated (`evaluate`, `.../eval`) for the
reported metrics and nothing else. With K < 3 there is no validation fold: no
early stopping, equal merge weights, no stopping rule (one warning line).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from reseg import layout, storage, tracking
from reseg.artifacts import (
    Export,
    Merged,
    Metrics,
    Model,
    ModelInfo,
    Predictions,
    PseudoLabels,
    RefineTuning,
    Scores,
    Selection,
    Stats,
    TileSet,
    is_published,
)
from reseg.components import evaluator, merger, refine_tuning, scorer, selector, statistics, tiling
from reseg.components import pseudo as pseudo_mod
from reseg.components import target as target_mod
from reseg.components import trainer as trainer_mod
from reseg.components.exporter import export as export_component
from reseg.components.exporter import export_info as _export_info
from reseg.components.exporter import sources as export_sources
from reseg.components.trainer.distribute import get_cluster
from reseg.config import Config
from reseg.errors import ArtifactError, ConfigError
from reseg.folds import Fold, parse_folds, validation_fold, warn_no_validation
from reseg.pipeline import sources as model_sources
from reseg.pipeline.predict import predict_root
from reseg.report import write_report

log = logging.getLogger(__name__)

MERGED = "merged"
"""`evaluate`'s round for the merged rounds."""


@dataclass(frozen=True)
class Context:
    """What every step gets: the config, the root, extra Beam options, the parent MLflow run,
    and the roots it reads its tiles, stats and round 0 from (`shared`, default the root's
    `shared.json`: a study's cells share their group's; see `layout.Shared`)."""

    cfg: Config
    root: Path
    beam_args: tuple[str, ...] = ()
    run: tracking.Run = field(default=tracking.NULL_RUN)
    shared: layout.Shared | None = None

    @cached_property
    def sources(self) -> layout.Shared:
        return layout.Shared.of(self.root, self.shared)

    @property
    def data_root(self) -> Path:
        """Where the tiles and stats are read and written."""
        return self.sources.data_root(self.root)

    def round_root(self, r: int) -> Path:
        """Where round r's model, scores and metrics (eval, val, target) are read and written;
        its selection and pseudo-labels are always the root's."""
        return self.sources.round_root(self.root, r)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.cfg.data.classes]

    def tiles(self) -> TileSet:
        return TileSet.load(layout.tiles_dir(self.data_root))

    def folds(self, text: str | None = None, *, allow_full: bool = True) -> list[Fold]:
        """The folds of a `--fold` value (default the config's `rounds.folds`)."""
        k = self.tiles().folds
        default = self.cfg.rounds.fold_list(k) if text is None else []
        return parse_folds(text, k, default, allow_full=allow_full)


def round_config(cfg: Config, r: int) -> Config:
    """The config round r trains with: `rounds.epochs` replaces `train.epochs` for r >= 1."""
    if r == 0 or cfg.rounds.epochs is None:
        return cfg
    return cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"epochs": cfg.rounds.epochs})}
    )


# --- data -----------------------------------------------------------------------------------


def tile(ctx: Context) -> TileSet:
    """Scenes -> overlapping tiles (TFRecords) with spatial folds: `<root>/tiles`."""
    cfg = ctx.cfg
    return tiling.tile(
        cfg.data,
        cfg.tiling,
        layout.tiles_dir(ctx.data_root),
        [*cfg.beam.args, *ctx.beam_args],
        config_json=cfg.to_json(),
    )


def stats(ctx: Context) -> Stats:
    """Per-band statistics and class counts of the tiles: `<root>/stats`."""
    return statistics.compute_stats(
        ctx.tiles(),
        layout.stats_dir(ctx.data_root),
        [*ctx.cfg.beam.args, *ctx.beam_args],
        config_json=ctx.cfg.to_json(),
    )


# --- one round of one fold ------------------------------------------------------------------


def train(
    ctx: Context,
    r: int,
    fold: Fold,
    *,
    run: tracking.Run | None = None,
    tile_files: Sequence[Path] | None = None,
    init_model: Path | None = None,
) -> Model:
    """Round r's model of `fold` (module docstring); `tile_files`/`init_model` override the
    round's inputs (a different artifact, with its own fingerprint)."""
    if r < 0:
        raise ConfigError(f"round must be >= 0, received {r}")
    cfg = round_config(ctx.cfg, r)
    if r > 0 and tile_files is None:
        tile_files = list(_previous_round_tiles(ctx, r - 1, fold))
    if r == 0 and tile_files is None:
        tile_files = labelled_tile_files(ctx)
    if r > 0 and init_model is None and cfg.rounds.init == "finetune":
        init_model = _model(ctx, r - 1, fold).path
    return trainer_mod.train(
        cfg,
        ctx.tiles(),
        Stats.load(layout.stats_dir(ctx.data_root)),
        layout.model_dir(ctx.round_root(r), r, fold),
        fold=fold,
        round=r,
        tile_files=tile_files,
        init_model=init_model,
        tracking=run,
        open_run=tracking.opener(
            cfg, ctx.root
        ),  # no run given: one of its own, in the root's store
    )


def train_folds(
    ctx: Context,
    r: int,
    folds: Sequence[Fold],
    *,
    chief: bool = True,
    tile_files: Sequence[Path] | None = None,
    init_model: Path | None = None,
    done: Callable[[Model], None] | None = None,
) -> list[Model]:
    """Round r's models of `folds`, as `reseg train` runs them: one fold in the trainer's own
    MLflow run; several under one parent run with a nested run per fold (opened by the chief
    of a multi-worker training only). `done(model)` after each fold."""
    models = []
    if len(folds) == 1:
        parent = contextlib.nullcontext(None)
    elif chief:
        parent = tracking.open_run(
            ctx.cfg, ctx.root, run_name=f"train r{r} folds", tags={"reseg.step": "train"}
        )
    else:
        parent = contextlib.nullcontext(tracking.NULL_RUN)
    with parent as p:
        for fold in folds:
            name = layout.fold_name(fold)
            nested = (
                contextlib.nullcontext(None)
                if p is None
                else p.nested(f"train r{r} {name}", tags={"reseg.fold": name})
            )
            with nested as run:
                model = train(ctx, r, fold, run=run, tile_files=tile_files, init_model=init_model)
            models.append(model)
            if done is not None:
                done(model)
    return models


def labelled_tile_files(ctx: Context) -> list[Path] | None:
    """Round 0's tiles when some scenes are unlabelled or target: the files of the scenes with
    role labelled (the others hold no training label); None (the whole tile set) otherwise."""
    tiles = ctx.tiles()
    scenes = tiles.manifest.get("scenes", [])  # tile sets written by hand may list none
    if all(s.get("role", "labelled") == "labelled" for s in scenes):
        return None
    by_scene = tiles.manifest["scene_files"]
    return [tiles.path / f for s in scenes if s["role"] == "labelled" for f in by_scene[s["id"]]]


def score(ctx: Context, r: int, fold: Fold) -> Scores:
    """Every tile with round r's class probabilities: `rounds/r<r>/<fold>/scores`."""
    return scorer.score(
        ctx.cfg,
        _model(ctx, r, fold),
        list(ctx.tiles().files),
        layout.scores_dir(ctx.round_root(r), r, fold),
        r,
        ctx.beam_args,
    )


def evaluate(ctx: Context, r: int | str, fold: Fold) -> Metrics:
    """Metrics of round r (or `merged`) on fold k's pixels: `.../eval`.

    For a round, its metrics on the validation fold (`validate`) are written too, so
    `reseg evaluate` leaves what `reseg run` does."""
    if fold is None:
        raise ConfigError(
            f"evaluate: the models trained on every tile ({layout.FULL}) have no evaluation pixels"
        )
    if r == MERGED:
        scores, out = _merged(ctx, fold).scores, layout.merged_eval_dir(ctx.root, fold)
        title = f"merged ({ctx.cfg.rounds.merge}) {layout.fold_name(fold)}"
    else:
        scores, out = (
            _scores(ctx, int(r), fold),
            layout.eval_dir(ctx.round_root(int(r)), int(r), fold),
        )
        title = f"round {r} {layout.fold_name(fold)}"
        validate(ctx, int(r), fold)
    return evaluator.evaluate(scores, out, fold, ctx.class_names, title=title)


def validate(ctx: Context, r: int, fold: Fold) -> Metrics | None:
    """Round r's metrics on the validation fold of `fold` (its core pixels): `.../val`.

    What merge weights and `rounds.stop_when_no_gain` read. None when there is no
    validation fold (K < 3, with one warning line); the `full` models are refused.
    """
    if fold is None:
        raise ConfigError(
            f"validate: the models trained on every tile ({layout.FULL}) have no validation pixels"
        )
    k = ctx.tiles().folds
    v = validation_fold(fold, k)
    if v is None:
        warn_no_validation(k)
        return None
    title = f"round {r} {layout.fold_name(fold)}, validation fold {v}"
    return evaluator.evaluate(
        _scores(ctx, r, fold),
        layout.val_dir(ctx.round_root(r), r, fold),
        v,
        ctx.class_names,
        title=title,
    )


def select(ctx: Context, r: int, fold: Fold) -> Selection:
    """Round r's selection (weights of round r + 1's tiles): `rounds/r<r>/<fold>/selection`."""
    prev_dir = layout.selection_dir(ctx.root, r - 1, fold)
    previous = Selection.load(prev_dir) if r > 0 and is_published(prev_dir) else None
    return selector.select(
        _scores(ctx, r, fold),
        ctx.tiles(),
        layout.selection_dir(ctx.root, r, fold),
        ctx.cfg.rounds.selection,
        fold,
        r,
        previous=previous,
    )


def next_labels(ctx: Context, r: int, fold: Fold) -> Selection | PseudoLabels:
    """What round r + 1 trains on, the one place that chooses: round r's pseudo-labels with
    `rounds.pseudo` (`pseudo`), else round r's selection (`select`)."""
    if ctx.cfg.rounds.pseudo is not None:
        return pseudo(ctx, r, fold)
    return select(ctx, r, fold)


def pseudo(ctx: Context, r: int, fold: Fold) -> PseudoLabels:
    """Round r's pseudo-labels (rasters, round r + 1's tiles): `rounds/r<r>/<fold>/pseudo`."""
    cfg = ctx.cfg.rounds.pseudo
    if cfg is None:
        raise ConfigError("pseudo: the config has no rounds.pseudo section")
    prev_dir = layout.pseudo_dir(ctx.root, r - 1, fold)
    previous = PseudoLabels.load(prev_dir) if r > 0 and is_published(prev_dir) else None
    return pseudo_mod.pseudo_label(
        _scores(ctx, r, fold),
        ctx.tiles(),
        layout.pseudo_dir(ctx.root, r, fold),
        cfg,
        fold,
        r,
        previous=previous,
    )


def has_target(ctx: Context) -> bool:
    """Whether the tiles hold target pixels (labels for evaluation only)."""
    return any(ctx.tiles().manifest["counts"].get("target_class_pixels", []))


def evaluate_target(ctx: Context, r: int | str, fold: Fold) -> Metrics | None:
    """Metrics of round r (or `merged`) on the target pixels: `.../target`; None without any."""
    if not has_target(ctx):
        return None
    if r == MERGED:
        scores, out = _merged(ctx, fold).scores, layout.merged_target_dir(ctx.root, fold)
        title = f"merged ({ctx.cfg.rounds.merge}) {layout.fold_name(fold)} target"
    else:
        r = int(r)
        scores, out = _scores(ctx, r, fold), layout.target_eval_dir(ctx.round_root(r), r, fold)
        title = f"round {r} {layout.fold_name(fold)} target"
    assert scores is not None
    return target_mod.evaluate_target(scores, out, ctx.class_names, title=title)


def score_tta(ctx: Context, fold: Fold, transforms: Sequence[str], out: Path) -> Metrics:
    """Round 0's model of `fold` with test-time augmentation, scored into `out/scores` and
    evaluated into `out/eval` (the study's baseline at the compute of a merge)."""
    scores = scorer.score(
        ctx.cfg,
        _model(ctx, 0, fold),
        list(ctx.tiles().files),
        out / layout.SCORES,
        0,
        ctx.beam_args,
        tta=tuple(transforms),
    )
    title = f"round 0 + TTA ({len(transforms)} transforms) {layout.fold_name(fold)}"
    return evaluator.evaluate(scores, out / layout.EVAL, fold, ctx.class_names, title=title)


# --- rounds together ------------------------------------------------------------------------


def scored_rounds(ctx: Context, fold: Fold) -> list[int]:
    """The rounds 0, 1, ... (at most `rounds.count`) of `fold` whose scores are published."""
    found = []
    for r in range(ctx.cfg.rounds.count + 1):
        if not is_published(layout.scores_dir(ctx.round_root(r), r, fold)):
            break
        found.append(r)
    return found


def merge_weights(metrics: Sequence[Metrics | None]) -> list[float]:
    """Each round's weight in a `weighted` merge: its mIoU on the validation fold (at least
    1e-6); equal weights (1) when there is no validation fold (`metrics` all None)."""
    if any(m is None for m in metrics):
        return [1.0] * len(metrics)
    return [max(m.mean_iou or 0.0, 1e-6) for m in metrics]  # type: ignore[union-attr]


def merge(ctx: Context, fold: Fold, rounds: Sequence[int] | None = None) -> Merged:
    """Rounds of fold k merged (`rounds.merge`) and evaluated: `merged/<fold>`.

    `rounds`: the rounds to merge, default those published (`scored_rounds`); the loop of
    `rounds()` passes the rounds it ran, so rounds left from an earlier config after a
    `stop_when_no_gain` stop are not merged.
    """
    rounds = list(rounds) if rounds is not None else scored_rounds(ctx, fold)
    if not rounds:
        raise ArtifactError(
            f"{layout.round_dir(ctx.root, 0, fold)}: no scored rounds to merge; score round 0 first"
        )
    for r in rounds:
        evaluate(ctx, r, fold)
    validation = [validate(ctx, r, fold) for r in rounds]
    merged = merger.merge(
        [_scores(ctx, r, fold) for r in rounds],
        [_model(ctx, r, fold) for r in rounds],
        merge_weights(validation),
        ctx.cfg.rounds.merge,
        fold,
        layout.merged_dir(ctx.root, fold),
        ctx.class_names,
        [*ctx.cfg.beam.args, *ctx.beam_args],
    )
    evaluate(ctx, MERGED, fold)
    evaluate_target(ctx, MERGED, fold)
    return merged


@dataclass
class RoundResult:
    round: int
    fold: Fold
    model: Model
    scores: Scores
    metrics: Metrics | None
    selection: Selection | None
    validation: Metrics | None = None
    """Metrics on the validation fold (None for `full` and with K < 3)."""
    pseudo: PseudoLabels | None = None
    target: Metrics | None = None


@dataclass
class FoldResult:
    fold: Fold
    rounds: list[RoundResult] = field(default_factory=list)
    merged: Metrics | None = None
    merged_methods: dict[str, Any] | None = None
    merged_target: Metrics | None = None


def trained_round(ctx: Context, r: int, fold: Fold, run: tracking.Run | None = None) -> RoundResult:
    """Round r of one fold trained, scored and evaluated (evaluation, validation and target
    pixels), without what round r + 1 trains on (`next_labels`: selection and pseudo None)."""
    model = train(ctx, r, fold, run=run)
    scores = score(ctx, r, fold)
    metrics = evaluate(ctx, r, fold) if fold is not None else None
    validation = validate(ctx, r, fold) if fold is not None else None
    target = evaluate_target(ctx, r, fold)
    return RoundResult(r, fold, model, scores, metrics, None, validation, target=target)


def round_zero(ctx: Context, fold: Fold, run: tracking.Run | None = None) -> RoundResult:
    """Round 0 of one fold (`trained_round`): what every rounds setting starts from, so a
    study trains it once per group and its cells read it (`Context.round_root`)."""
    return trained_round(ctx, 0, fold, run)


def rounds(ctx: Context, fold: Fold) -> FoldResult:
    """Rounds 0..R of one fold (train, score, evaluate, select), then their merge.

    With `rounds.stop_when_no_gain`, the loop ends after a round whose mIoU on the
    validation fold is not above the round before's (never without a validation fold).
    """
    result = FoldResult(fold)
    name = layout.fold_name(fold)
    for r in range(ctx.cfg.rounds.count + 1):
        with ctx.run.nested(f"round {r} {name}", tags={"reseg.round": r, "reseg.fold": name}) as rr:
            done = trained_round(ctx, r, fold, rr)
            chosen = next_labels(ctx, r, fold)
            done.selection = chosen if isinstance(chosen, Selection) else None
            done.pseudo = chosen if isinstance(chosen, PseudoLabels) else None
            result.rounds.append(done)
            _log_round(rr, done.metrics, done.validation, done.selection)
            _log_pseudo(rr, done.target, done.pseudo)
        if _no_gain(ctx.cfg, result):
            log.info(
                "round %d did not raise the validation fold's mIoU; stopping "
                "(rounds.stop_when_no_gain)",
                r,
            )
            break
    if fold is not None:
        merged = merge(ctx, fold, [rr.round for rr in result.rounds])
        result.merged = Metrics.load(layout.merged_eval_dir(ctx.root, fold))
        result.merged_methods = merged.methods
        result.merged_target = evaluate_target(ctx, MERGED, fold)
    return result


def _no_gain(cfg: Config, result: FoldResult) -> bool:
    if not cfg.rounds.stop_when_no_gain or len(result.rounds) < 2:
        return False
    a, b = result.rounds[-2].validation, result.rounds[-1].validation
    if a is None or b is None or a.mean_iou is None or b.mean_iou is None:
        return False
    return b.mean_iou <= a.mean_iou


def _log_round(
    run: tracking.Run,
    metrics: Metrics | None,
    validation: Metrics | None,
    selection: Selection | None,
) -> None:
    """MLflow metrics of a round: `eval_*` on the evaluation fold, `val_*` on the validation fold."""
    if not run.enabled:
        return
    flat: dict[str, Any] = {}
    for prefix, m in (("eval", metrics), ("val", validation)):
        if m is None:
            continue
        v = m.values
        for k in ("mean_iou", "overall_accuracy", "kappa", "mean_f1"):
            flat[f"{prefix}_{k}"] = v.get(k)
        for cname, pc in m.per_class.items():
            flat[f"{prefix}_iou_{cname}"] = pc["iou"]
    for cname, pc in (selection.report["per_class"] if selection else {}).items():
        flat[f"selected_{cname}"] = pc["selected"]
        flat[f"jaccard_{cname}"] = pc["jaccard_previous"]
    run.log_metrics(flat)
    if metrics is not None:
        for f in (layout.CONFUSION_PNG, layout.PER_CLASS_PNG, layout.METRICS_JSON):
            if (metrics.path / f).exists():
                run.log_artifact(metrics.path / f, "eval")
    for f in (layout.SCORE_HIST_PNG, layout.SCORE_HIST_JSON, layout.SELECTION_JSON):
        if selection is not None:
            run.log_artifact(selection.path / f, "selection")


def _log_pseudo(run: tracking.Run, target: Metrics | None, labels: PseudoLabels | None) -> None:
    """Target metrics and pseudo-label counts, Jaccard and precision of one round."""
    if not run.enabled or (target is None and labels is None):
        return
    flat: dict[str, Any] = {}
    if target is not None:
        v = target.values
        flat = {f"target_{k}": v.get(k) for k in ("mean_iou", "overall_accuracy", "kappa")}
        for cname, pc in target.per_class.items():
            flat[f"target_iou_{cname}"] = pc["iou"]
        for f in (layout.CONFUSION_PNG, layout.PER_CLASS_PNG, layout.METRICS_JSON):
            run.log_artifact(target.path / f, "target")
    if labels is not None:
        rep = labels.report
        flat["pseudo_selected"] = rep["selected"]
        flat["pseudo_accuracy"] = rep["accuracy"]
        for cname, pc in rep["per_class"].items():
            flat[f"pseudo_selected_{cname}"] = pc["selected"]
            flat[f"pseudo_jaccard_{cname}"] = pc["jaccard_previous"]
            flat[f"pseudo_precision_{cname}"] = pc["precision"]
        for f in (layout.SCORE_HIST_PNG, layout.SCORE_HIST_JSON, layout.PSEUDO_JSON):
            run.log_artifact(labels.path / f, "pseudo")
    run.log_metrics(flat)


# --- after the rounds -----------------------------------------------------------------------


def refinement_members(path: Path) -> tuple[list[refine_tuning.Member], str, ModelInfo]:
    """The scores behind a model directory (a round's model, or merged rounds' members as
    `merged.json` lists them), how they combine, and the models' ModelInfo."""
    spec_path = path / layout.MERGED_JSON
    if spec_path.exists():
        spec = json.loads(spec_path.read_text())
        models = [storage.resolve(storage.join(path, m["model"])) for m in spec["members"]]
        weights = [float(m.get("weight", 1.0)) for m in spec["members"]]
        method = spec["method"]
    else:
        models, weights, method = [path], [1.0], "mean"
    members = []
    for model, w in zip(models, weights, strict=True):
        d = model.parent / layout.SCORES
        if not is_published(d):
            raise ArtifactError(f"{d}: the scores of {model} are not published; score it first")
        members.append(refine_tuning.Member(Scores.load(d), w))
    return members, method, ModelInfo.load(models[0])


def tune_refine(ctx: Context, fold: Fold, source: str | int | None = None) -> RefineTuning:
    """CRF and SLIC tuned on the validation pixels of `fold`'s models (`source`, default
    `export.source`): `refine/<fold>` (see `reseg.components.refine_tuning`)."""
    if fold is None:
        raise ConfigError(
            f"tune-refine: the models trained on every tile ({layout.FULL}) have no validation "
            "pixels; name a fold k"
        )
    label, _, path = model_sources.resolve(
        ctx.cfg, ctx.root, source or ctx.cfg.export.source, fold, ctx.sources
    )
    members, method, info = refinement_members(path)
    return refine_tuning.tune(
        members,
        method,
        info,
        fold,
        ctx.tiles().folds,
        ctx.cfg.predict,
        layout.refine_dir(ctx.root, fold),
        ctx.class_names,
        {"label": label, "fold": fold, "path": storage.resolved(path)},
    )


def refine(ctx: Context) -> list[RefineTuning]:
    """`reseg run`'s refine step: with `predict.refine` crf or slic, tune both on every fold of
    `rounds.folds` (the predict step then uses the export fold's tuning); else nothing."""
    if ctx.cfg.predict.refine == "none":
        log.info("predict.refine is none: no refinement to tune")
        return []
    return [tune_refine(ctx, k) for k in ctx.folds() if k is not None]


def export(ctx: Context, source: str | int | None = None, fold: Fold | str = "default") -> Export:
    """A validated SavedModel for TF Serving: `export/<name>/<version>`.

    `source`: `merged`, `last`, `r<k>` or k (default `export.source`); `fold`: k, None
    (`full`) or "default" (`export.fold`, else the first of `rounds.folds`).
    """
    cfg = ctx.cfg
    label, k, path = model_sources.resolve(
        cfg, ctx.root, cfg.export.source if source is None else source, fold, ctx.sources
    )
    return export_component(
        cfg.export,
        export_sources.load(label, k, path),
        model_sources.tile_set(ctx.data_root),
        layout.export_dir(ctx.root, cfg.export.model_name),
        registry=cfg.tracking.enabled and cfg.export.registry,
        tracking=None if ctx.run is tracking.NULL_RUN else ctx.run,  # None: a run of its own
        open_run=tracking.opener(cfg, ctx.root),
    )


def predict(ctx: Context) -> Predictions:
    """Every scene of the config, whole, with the exported model's source: `<root>/predictions`."""
    return predict_root(ctx.cfg, ctx.root, ctx.run, ctx.beam_args)


def report(ctx: Context) -> Path:
    """`report/report.md` and `report.html` of the root; returns the md path."""
    path = write_report(ctx.root, ctx.sources)
    if ctx.run.enabled:
        ctx.run.log_artifacts(path.parent, "report")
    return path


# --- reading what earlier steps published -------------------------------------------------


def _model(ctx: Context, r: int, fold: Fold) -> Model:
    d = layout.model_dir(ctx.round_root(r), r, fold)
    if not is_published(d):
        raise ArtifactError(f"{d}: round {r} of {layout.fold_name(fold)} is not trained yet")
    return Model.load(d)


def _scores(ctx: Context, r: int, fold: Fold) -> Scores:
    d = layout.scores_dir(ctx.round_root(r), r, fold)
    if not is_published(d):
        raise ArtifactError(f"{d}: round {r} of {layout.fold_name(fold)} is not scored yet")
    return Scores.load(d)


def _selection(ctx: Context, r: int, fold: Fold) -> Selection:
    d = layout.selection_dir(ctx.root, r, fold)
    if not is_published(d):
        raise ArtifactError(
            f"{d}: round {r} of {layout.fold_name(fold)} has no selection yet; "
            f"round {r + 1} trains on it"
        )
    return Selection.load(d)


def _previous_round_tiles(ctx: Context, r: int, fold: Fold) -> tuple[Path, ...]:
    """What round r + 1 trains on: round r's pseudo-label tiles (`rounds.pseudo`) or its
    selection's weighted tiles."""
    if ctx.cfg.rounds.pseudo is None:
        return _selection(ctx, r, fold).files
    d = layout.pseudo_dir(ctx.root, r, fold)
    if not is_published(d):
        raise ArtifactError(
            f"{d}: round {r} of {layout.fold_name(fold)} has no pseudo-labels yet; "
            f"round {r + 1} trains on them"
        )
    return PseudoLabels.load(d).files


def _merged(ctx: Context, fold: Fold) -> Merged:
    d = layout.merged_dir(ctx.root, fold)
    if not is_published(d):
        raise ArtifactError(f"{d}: the rounds of {layout.fold_name(fold)} are not merged yet")
    return Merged.load(d)


# --- what commands and studies ask of the components (they import none of them) ------------


DEFAULT_FOLD = model_sources.DEFAULT
"""`export`'s fold when none is named: `export.fold`, else the first of `rounds.folds`."""


def check_scenes(cfg: Config) -> None:
    """Read every scene's header and lay out the tiling, as `tile` will: the user errors of a
    config's scenes, raised before a root is created."""
    tiling.plan(cfg.data, cfg.tiling)


def export_info(version_dir: str | Path) -> dict:
    """The manifest of an export version with its ModelInfo (`reseg.components.exporter`)."""
    return _export_info(version_dir)


def refine_table(record: dict[str, Any]) -> str:
    """A refinement tuning's `refine.json` as text: the settings tried, the held-out line."""
    return refine_tuning.table(record)


def is_chief(cfg: Config) -> bool:
    """Whether this process is the chief of `train.distribute` (the one that writes)."""
    return get_cluster(cfg.train.distribute).is_chief
