"""Refinement as a study factor, measured alone: round 0 with and without tuned CRF / SLIC.

Plans a study (`reseg study`'s plan, with `baselines.refine` on) and runs only the
jobs the refine cells need: the data of each resolution and round 0 of each group
and fold, which tunes CRF and SLIC on the validation fold (k + 1) mod K and
evaluates them on fold k (`reseg.study.refine`). The selection cells are not run.
Prints, per group and method, round 0's mIoU, the tuned refinement's mIoU (mean over
folds), their paired difference with the study's 95% tile-bootstrap interval, and in
how many folds the tuned setting beat no refinement on validation (what prediction
applies by default), and the held-out mIoU over the classes in the labels (mIoU_l, the
tuning's criterion) without refinement, with it, and as prediction applies it (refined in
the folds where it beat no refinement on validation, plain elsewhere); writes bench/results/refine_factor_<study>.json.

    python bench/refine_factor.py examples/study_demo_landsat.yaml --profile quick --root runs/refine-landsat
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--root", type=Path, required=True)
    args = ap.parse_args(argv)

    import logging

    from reseg import artifacts, layout, quiet
    from reseg.pipeline import steps
    from reseg.study.config import load_study
    from reseg.study.plan import build_plan, config_of, is_done
    from reseg.study.refine import run_refine
    from reseg.study.results import collect
    from reseg.study.worker import run_job

    quiet.configure(False)
    logging.getLogger().setLevel(logging.INFO)
    study, base = load_study(args.study, args.profile)
    study = study.model_copy(
        update={"baselines": study.baselines.model_copy(update={"refine": True})}
    )
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(root / "study.json", study.model_dump(mode="json"))
    plan = build_plan(study, base, root)
    plan.save()
    started = time.time()
    for job in plan.jobs:
        if job.kind in ("data", "r0") and not is_done(root, job):
            run_job(root, job.id)
    # the tuning again on round 0 (skipped when current): a finished study root picks up a
    # change of the tuning code or grid without retraining round 0
    for job in plan.jobs:
        if job.kind == "r0":
            g = plan.group(job.params["group"])
            cells = {plan.cell(c).x: Path(plan.cell(c).root) for c in job.params["refine_cells"]}
            ctx = steps.Context(config_of(g.config, g.id), Path(g.root))
            run_refine(ctx, job.params["fold"], cells)
    wall = time.time() - started

    rows = []
    for r in collect(plan):
        if r.cell.kind != "refine":
            continue
        beat, gains, lab_none, lab_ref, lab_rule = 0, [], [], [], []
        for k in plan.folds:
            rec = artifacts.RefineTuning.load(layout.refine_dir(r.group.root, k)).record
            t = rec["methods"][r.cell.x]
            beat += bool(t["better"])
            gains.append(t["gain"])
            lab_none.append(rec["none"]["evaluation"]["miou_labelled"])
            lab_ref.append(t["evaluation"]["miou_labelled"])
            lab_rule.append(lab_ref[-1] if t["better"] else lab_none[-1])
        rows.append(
            {
                "group": r.group.id,
                "resolution": r.group.resolution,
                "method": r.cell.x,
                "r0": r.over_folds("r0")[:2],
                "refined": r.over_folds("merged")[:2],
                "delta_tiles": r.d_merged.as_dict(),
                "delta_folds": r.d_merged_folds.as_dict(),
                "validation_gain": gains,
                "held_out_labelled_classes": {
                    "none": sum(lab_none) / len(lab_none),
                    "refined": sum(lab_ref) / len(lab_ref),
                    "as_applied": sum(lab_rule) / len(lab_rule),
                },
                "beat_on_validation": beat,
                "folds": len(plan.folds),
            }
        )
    out = REPO / "bench" / "results" / f"refine_factor_{study.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"study": study.name, "profile": args.profile, "wall_s": wall, "rows": rows}, indent=2
        )
    )
    print(f"\n{study.name} ({args.profile or 'default'}), folds {plan.folds}")
    print(
        f"{'group':<14} {'refine':<6} {'round 0':>7} {'refined':>7} {'Δ [95% CI]':>26} "
        f"{'applied':>8} {'r0 mIoU_l':>9} {'ref mIoU_l':>10} {'rule mIoU_l':>11}"
    )
    for row in rows:
        d = row["delta_tiles"]
        iv = "–" if d["mean"] is None else f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        print(
            f"{row['group']:<14} {row['method']:<6} {row['r0'][0]:7.3f} {row['refined'][0]:7.3f} "
            f"{iv:>26} {row['beat_on_validation']:>4}/{row['folds']} "
            f"{row['held_out_labelled_classes']['none']:9.3f} "
            f"{row['held_out_labelled_classes']['refined']:10.3f} "
            f"{row['held_out_labelled_classes']['as_applied']:11.3f}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
