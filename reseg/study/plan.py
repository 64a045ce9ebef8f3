"""The study's plan: groups, cells and jobs, derived from the study and its base config.

- A *group* is one (resolution, model): its cells share the tiles of their resolution
  and round 0 of every fold (round 0 depends on data, tiling, model, train and fold, not
  on the selection).
- A *cell* is one rounds setting of a group (a grid point or a baseline), run per seed
  as a pipeline root of its own that reads its tiles, stats and round 0 (model, scores,
  metrics) from the data and group roots named in its `shared.json` (`layout.Shared`).
- A *seed* s is `train.seed` of every training of a (group or cell) run: round 0 and
  every cell train once per seed and fold, in `<group or cell>/seed<s>/`.
- A *job* is what one worker process does: `data` (resample, tile, statistics of a
  resolution), `r0` (round 0 of a group, seed and fold, then the TTA baseline with its
  model) and `cell` (the rounds of a cell for one seed, every fold). Jobs wait for the
  jobs they need.

Study root layout::

    <study>/plan.json, study.json     the plan and the resolved study
    <study>/data/res<f>/              scenes (f > 1), tiles/, stats/ of resolution f
    <study>/groups/<group>/seed<s>/   round 0 of each fold (+ study/r0_fold<k>.npz)
    <study>/cells/<cell>/seed<s>/     a pipeline root per cell and seed (+ cell.yaml, study/*.npz)
    <study>/jobs/<job>.json           done markers; <study>/logs/<job>.log (`scheduler.logs_dir`)
    <study>/report/                   report.md, report.html, results.md, *.png
    <study>/mlflow.db                 one MLflow store: the study run and its children
    <study>/lease.json                the lease of the study that runs (`reseg.artifacts.lease`)

`<study>` is a local folder or an object-store URI; every file goes through `reseg.storage`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reseg import artifacts, storage
from reseg.config import Config, parse_config
from reseg.config.predict import D4
from reseg.errors import ConfigError
from reseg.inference.precision import pinned_config
from reseg.models.registry import output_stride
from reseg.study import refine as refine_factor
from reseg.study.cells import cell_label, group_config, pseudo_cells, selections
from reseg.study.config import ModelSpec, StudyConfig, deep_merge

PLAN_VERSION = 2


@dataclass
class Group:
    id: str
    resolution: int
    model: str
    root: str
    data_root: str
    config: dict[str, Any]


@dataclass
class Cell:
    """One rounds setting of a group. `kind`: grid, all_pixels, bottom, cbst, tta or refine."""

    id: str
    group: str
    kind: str
    label: str
    score: str
    direction: str
    x: Any
    root: str
    config: dict[str, Any] | None
    aliases: list[str] = field(default_factory=list)
    tta: list[str] | None = None


@dataclass
class Job:
    id: str
    kind: str
    deps: list[str]
    params: dict[str, Any]
    fingerprint: str = ""


@dataclass
class Plan:
    root: str
    study: dict[str, Any]
    folds: list[int]
    rounds: int
    class_names: list[str]
    groups: list[Group]
    cells: list[Cell]
    jobs: list[Job]
    beam_args: list[str]
    source_data: dict[str, Any]
    version: int = PLAN_VERSION
    seeds: list[int] = field(default_factory=lambda: [0])

    def group(self, gid: str) -> Group:
        return next(g for g in self.groups if g.id == gid)

    @property
    def tiling_folds(self) -> int | None:
        """K = tiling.folds of the groups' configs (the folds the evaluation folds are of)."""
        return self.groups[0].config["tiling"]["folds"] if self.groups else None

    def cell(self, cid: str) -> Cell:
        return next(c for c in self.cells if c.id == cid)

    def job(self, jid: str) -> Job:
        for j in self.jobs:
            if j.id == jid:
                return j
        raise ConfigError(f"no job {jid!r} in the plan of {self.root}")

    def save(self) -> Path:
        path = storage.path(self.root) / "plan.json"
        artifacts.write_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, root: str | Path) -> Plan:
        d = json.loads((storage.path(root) / "plan.json").read_text())
        return cls(
            **{
                **d,
                "groups": [Group(**g) for g in d["groups"]],
                "cells": [Cell(**c) for c in d["cells"]],
                "jobs": [Job(**j) for j in d["jobs"]],
            }
        )


def _output_stride(models: list[ModelSpec]) -> int:
    import math

    m = 1
    for spec in models:
        m = math.lcm(m, output_stride(spec.name, **spec.params))
    return m


def build_plan(
    study: StudyConfig, base: dict[str, Any], root: str | Path, beam_args: list[str] | None = None
) -> Plan:
    """All groups, cells and jobs of `study` (base config `base`) under study root `root`."""
    root = storage.resolve(root)
    base_cfg, folds, models, stride = _checked_base(study, base)
    base_sel = base_cfg.rounds.selection.model_dump(mode="json")
    groups, cells, jobs = [], [], []
    for f in study.grid.resolution:
        data_root = root / "data" / f"res{f}"
        data_job = f"data.res{f}"
        for spec in models:
            gid = f"res{f}-{spec.tag}"
            raw = group_config(study, base, root, f, spec, stride, folds)
            raw["name"] = gid
            cfg = _validated(raw, gid)
            g = Group(gid, f, spec.tag, str(root / "groups" / gid), str(data_root), raw)
            groups.append(g)
            if not any(j.id == data_job for j in jobs):
                jobs.append(Job(data_job, "data", [], {"group": gid, "resolution": f}))
            base_cells, tta_cell, r0_extra = _baseline_cells(study, gid, raw, cfg, root)
            cells += base_cells
            # round 0 of each seed and fold, and the TTA baseline and refine cells with its
            # model in the same process
            r0_jobs = {s: [f"r0.{gid}.seed{s}.fold{k_}" for k_ in folds] for s in study.seeds}
            for s in study.seeds:
                for k_, jid in zip(folds, r0_jobs[s], strict=True):
                    params = {"group": gid, "seed": s, "fold": k_, "tta_cell": tta_cell, **r0_extra}
                    jobs.append(Job(jid, "r0", [data_job], params))
            round_cells, round_jobs = _round_cells(study, gid, raw, root, base_sel, r0_jobs)
            cells += round_cells
            jobs += round_jobs
    plan = Plan(
        str(root),
        study.model_dump(mode="json"),
        folds,
        base_cfg.rounds.count,
        [c.name for c in base_cfg.data.classes],
        groups,
        cells,
        jobs,
        list(beam_args or []),
        base_cfg.data.model_dump(mode="json"),
        seeds=list(study.seeds),
    )
    for j in plan.jobs:
        j.fingerprint = _job_fingerprint(plan, j)
    return plan


def _checked_base(
    study: StudyConfig, base: dict[str, Any]
) -> tuple[Config, list[int], list[ModelSpec], int]:
    """The base config validated, the evaluation folds, the models and their common output
    stride; the one-line error of a base config or grid that cannot be planned."""
    try:
        base_cfg = parse_config(base, source="base config")
    except ConfigError as e:
        raise ConfigError(f"the study's base config with its overrides is invalid:\n{e}") from None
    k = base_cfg.tiling.folds
    folds = _folds(study, k)
    models = list(study.grid.models) or [
        ModelSpec(name=base_cfg.model.name, params=dict(base_cfg.model.params))
    ]
    stride = _output_stride(models)
    if base_cfg.tiling.tile_size % stride:
        raise ConfigError(
            f"tiling.tile_size {base_cfg.tiling.tile_size} must be a multiple of the models' "
            f"output stride {stride}"
        )
    n_classes = base_cfg.data.num_classes
    for x in study.grid.percent:
        if isinstance(x, list) and len(x) != n_classes:
            raise ConfigError(
                f"grid.percent: a per-class x needs {n_classes} values (classes "
                f"{[c.name for c in base_cfg.data.classes]}), received {x}"
            )
    return base_cfg, folds, models, stride


def _baseline_cells(
    study: StudyConfig, gid: str, raw: dict[str, Any], cfg: Config, root: Path
) -> tuple[list[Cell], str | None, dict[str, Any]]:
    """A group's baseline cells (TTA, refinement), which run in its round-0 jobs: the cells,
    the TTA cell's id and what the round-0 jobs take for the refine cells."""
    cells = []
    tta_cell = None
    if study.baselines.tta:
        n = min(len(D4), cfg.rounds.count + 1)
        tta_cell = f"{gid}.tta{n}"
        cells.append(
            Cell(
                tta_cell,
                gid,
                "tta",
                cell_label("tta", {}, n),
                "",
                "",
                n,
                str(root / "cells" / tta_cell),
                None,
                tta=list(D4[:n]),
            )
        )
    r0_extra: dict[str, Any] = {}
    if study.baselines.refine:
        specs = refine_factor.cell_specs(gid, root)
        cells += [
            Cell(s["id"], gid, s["kind"], s["label"], "", "", s["x"], s["root"], None)
            for s in specs
        ]
        r0_extra = {
            "refine_cells": [s["id"] for s in specs],
            "refine": refine_factor.predict_key(raw),
        }
    return cells, tta_cell, r0_extra


def _round_cells(
    study: StudyConfig,
    gid: str,
    raw: dict[str, Any],
    root: Path,
    base_sel: dict[str, Any],
    r0_jobs: dict[int, list[str]],
) -> tuple[list[Cell], list[Job]]:
    """A group's cells of confidence rounds (selections and pseudo-labels; settings whose
    rounds section is the same share a cell) and their jobs, one per seed after round 0."""
    cells, jobs = [], []
    seen: dict[str, Cell] = {}
    settings = [(*c, None) for c in selections(study, base_sel)]
    settings += [(k, s, base_sel, x, p) for k, s, p, x in pseudo_cells(study)]
    for kind, short, sel, x, pseudo in settings:
        cid = f"{gid}.{short}"
        craw = deep_merge(raw, {"name": cid, "rounds": {"selection": sel}})
        craw["rounds"]["selection"] = sel
        craw["rounds"]["pseudo"] = pseudo
        ccfg = _validated(craw, cid)
        key = artifacts.fingerprint(ccfg.section_json("rounds"))
        if key in seen:
            seen[key].aliases.append(kind)
            continue
        cell = Cell(
            cid,
            gid,
            kind,
            cell_label(kind, pseudo or sel, x),
            (pseudo or sel)["score"],
            "top" if pseudo else sel["direction"],
            x,
            str(root / "cells" / cid),
            craw,
        )
        seen[key] = cell
        cells.append(cell)
        for s in study.seeds:
            params = {"cell": cid, "seed": s}
            jobs.append(Job(f"cell.{cid}.seed{s}", "cell", list(r0_jobs[s]), params))
    return cells, jobs


def _folds(study: StudyConfig, k: int) -> list[int]:
    folds = list(range(k)) if study.folds == "all" else sorted(set(study.folds))
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise ConfigError(f"study folds {bad} are outside 0..{k - 1} (tiling.folds = {k})")
    return folds


def _validated(raw: dict[str, Any], what: str) -> Config:
    try:
        return parse_config(raw, source=f"cell {what}")
    except ConfigError as e:
        raise ConfigError(f"the study makes an invalid config:\n{e}") from None


def _job_fingerprint(plan: Plan, job: Job) -> str:
    """What a job depends on: its parameters and the configs it runs."""
    if job.kind in ("data", "r0"):
        cfg = plan.group(job.params["group"]).config
        parts = [cfg["data"], cfg["tiling"]]
        if job.kind == "r0":
            tta = job.params.get("tta_cell")
            parts += [cfg["model"], cfg["train"], tta and plan.cell(tta).tta]
    else:
        cell = plan.cell(job.params["cell"])
        g = plan.group(cell.group).config
        # `auto` precisions pinned: a study planned before `auto` was the default stays done
        config = None if cell.config is None else pinned_config(cell.config)
        parts = [g["data"], g["tiling"], g["model"], g["train"], config, cell.tta]
    return artifacts.fingerprint(job.kind, job.params, parts, plan.beam_args, PLAN_VERSION)


def marker(root: str | Path, job_id: str) -> Path:
    """The done marker of a job: `<study>/jobs/<job>.json`."""
    return storage.path(root) / "jobs" / f"{job_id}.json"


def is_done(root: str | Path, job: Job) -> bool:
    """True when the job's marker is there with the job's current fingerprint."""
    try:
        return json.loads(marker(root, job.id).read_text()).get("fingerprint") == job.fingerprint
    except (FileNotFoundError, ValueError):
        return False


def config_of(raw: dict[str, Any], name: str) -> Config:
    """A plan's raw config, validated."""
    return _validated(raw, name)
