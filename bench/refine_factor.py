"""Refinement as a study factor, measured alone: round 0 with and without tuned CRF / SLIC.

Plans a study (`reseg study`'s plan, with `baselines.refine` on and the TTA baseline off)
and runs only the jobs the refine cells need: the data of each resolution and round 0 of
each group, seed and fold, which tunes CRF and SLIC on the validation fold (k + 1) mod K and
evaluates them on fold k (`reseg.study.refine`). The selection cells are not run.
Prints, per group and method, round 0's mIoU and the tuned refinement's (mean over the
(seed, fold) runs), their paired difference with the seeds x folds t-interval and p
(`reseg.study.stats.paired_comparison`; the primary view) and the pooled tile-bootstrap interval (secondary), in how many (seed, fold) runs
the tuned setting beat no refinement on validation (what prediction applies by default), and
the difference as prediction applies it (refined in the runs where it beat no refinement on
validation, round 0 elsewhere) with its seeds x folds comparison; writes
bench/results/refine_factor_<study>.json.

    python bench/refine_factor.py examples/study_demo_landsat.yaml --profile quick --root runs/refine-landsat

The result has the environment block (`bench/_env.py`). `--smoke` needs no study or
root: the demo scene, one seed, evaluation fold 0, one epoch of a U-Net of depth 2 and
base 4, in a temporary root (seconds to a minute; checks that it runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SMOKE_STUDY = """\
name: smoke
base: {base}
grid:
  percent: [5]
  direction: [top]
  score: [true_class]
  models:
    - {{name: unet, params: {{depth: 2, base_filters: 4}}}}
  resolution: [1]
overrides:
  train: {{epochs: 1}}
  rounds: {{count: 1, epochs: 1}}
folds: [0]
seeds: [0]
baselines: {{all_pixels: false, bottom: null, cbst: null, tta: false}}
parallel: 1
"""


def smoke_study(folder: Path) -> Path:
    """The `--smoke` study file (module docstring) in `folder`."""
    path = folder / "smoke.yaml"
    path.write_text(SMOKE_STUDY.format(base=REPO / "examples" / "demo_landsat.yaml"))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path, nargs="?", help="the study file (not with --smoke)")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--root", type=Path, help="the study root (not with --smoke)")
    _env.add_arguments(ap)
    args = ap.parse_args(argv)
    run = _env.Run(args)
    if run.smoke:
        with tempfile.TemporaryDirectory(prefix="bench-refine-factor-") as tmp:
            args.study, args.root = smoke_study(Path(tmp)), Path(tmp) / "root"
            return measure(args, run)
    if args.study is None or args.root is None:
        ap.error("a study file and --root are needed (or --smoke)")
    return measure(args, run)


def measure(args: argparse.Namespace, run: _env.Run) -> int:
    """Plan the study, run round 0 and the tuning, and report (module docstring)."""
    from reseg import demo

    os.environ.setdefault("RESEG_DEMO_DATA", str(demo.fetch_landsat()))

    import logging

    from reseg import artifacts, layout, quiet
    from reseg.pipeline import steps
    from reseg.study import stats
    from reseg.study.cells import seed_root, seeded
    from reseg.study.config import load_study
    from reseg.study.plan import build_plan, config_of, is_done
    from reseg.study.refine import run_refine
    from reseg.study.results import collect
    from reseg.study.worker import run_job

    quiet.configure(False)
    logging.getLogger().setLevel(logging.INFO)
    study, base = load_study(args.study, args.profile)
    study = study.model_copy(
        update={"baselines": study.baselines.model_copy(update={"refine": True, "tta": False})}
    )
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(root / "study.json", study.model_dump(mode="json"))
    plan = build_plan(study, base, root)
    plan.save()
    started = time.time()
    for job in plan.jobs:
        if job.kind in ("data", "r0") and not is_done(root, job):
            t0 = time.time()
            run_job(root, job.id)
            print(f"{job.id}: {time.time() - t0:.0f} s", flush=True)
    # the tuning again on round 0 (skipped when current): a finished study root picks up a
    # change of the tuning code or grid without retraining round 0
    for job in plan.jobs:
        if job.kind == "r0":
            g = plan.group(job.params["group"])
            seed = job.params["seed"]
            cells = {
                plan.cell(c).x: seed_root(plan.cell(c).root, seed)
                for c in job.params["refine_cells"]
            }
            cfg = config_of(seeded(g.config, seed), g.id)
            ctx = steps.Context(cfg, seed_root(g.root, seed), tuple(plan.beam_args))
            run_refine(ctx, job.params["fold"], cells)
    wall = time.time() - started

    b = plan.study["bootstrap"]
    runs = [(s, k) for s in plan.seeds for k in plan.folds]
    rows = []
    for r in collect(plan):
        if r.cell.kind != "refine":
            continue
        beat, gains, applied, deltas = 0, {}, {}, {}
        for s, k in runs:
            rec = artifacts.RefineTuning.load(
                layout.refine_dir(seed_root(r.group.root, s), k)
            ).record
            t = rec["methods"][r.cell.x]
            beat += bool(t["better"])
            gains[f"seed{s}.fold{k}"] = t["gain"]
            f = r.runs[(s, k)]
            d = None if f.merged is None or f.r0 is None else f.merged - f.r0
            applied[(s, k)] = (d if t["better"] else 0.0) if d is not None else None
            deltas[f"seed{s}.fold{k}"] = d
        as_applied = stats.compare_runs(applied, plan.tiling_folds, b["level"], b.get("power", 0.8))
        rows.append(
            {
                "group": r.group.id,
                "resolution": r.group.resolution,
                "method": r.cell.x,
                "r0": r.over_runs("r0")[:2],
                "refined": r.over_runs("merged")[:2],
                "delta_seeds_folds": r.comparisons["vs_r0"].as_dict(),
                "delta_tiles": r.d_merged.as_dict(),
                "delta_as_applied": as_applied.as_dict(),
                "delta_runs": deltas,
                "validation_gain": gains,
                "beat_on_validation": beat,
                "runs": len(runs),
            }
        )
    name = "refine_factor.json" if run.smoke else f"refine_factor_{study.name}.json"
    out = run.write(
        name,
        {
            "study": study.name,
            "profile": args.profile,
            "seeds": plan.seeds,
            "folds": plan.folds,
            "wall_s": wall,
            "rows": rows,
        },
    )

    def iv(d: dict) -> str:
        if d["mean"] is None:
            return "–"
        if d["low"] is None:
            return f"{d['mean']:+.3f}"
        return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"

    print(f"\n{study.name} ({args.profile or 'default'}), seeds {plan.seeds}, folds {plan.folds}")
    print(
        f"{'group':<14} {'refine':<6} {'round 0':>7} {'refined':>7} "
        f"{'Δ seeds x folds':>26} {'Δ tiles':>26} {'applied':>8} {'Δ as applied':>26}"
    )
    for row in rows:
        print(
            f"{row['group']:<14} {row['method']:<6} {row['r0'][0]:7.3f} {row['refined'][0]:7.3f} "
            f"{iv(row['delta_seeds_folds']):>26} {iv(row['delta_tiles']):>26} "
            f"{row['beat_on_validation']:>4}/{row['runs']:<3} {iv(row['delta_as_applied']):>26}"
        )
    print(f"wall {wall:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
