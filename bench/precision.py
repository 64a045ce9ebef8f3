"""bfloat16 against float32 with trained models, on the demo scene and the ISPRS samples.

For each dataset (examples/demo_landsat.yaml, potsdam.yaml, vaihingen.yaml): tile and
compute statistics once (reseg's own steps), then train round 0 on fold 0 with the
example's model, `--seeds` seeds under `train.precision: float32` and as many under
`mixed_bfloat16` (reseg's trainer, in this process, tracking off). Reported:

- inference: the float32-trained seed-0 model predicts the whole scene with reseg's
  predictor (`predict.precision` float32, then bfloat16; scored against the scene's
  labels): share of pixels with the same class, whole-scene mIoU of each and their
  difference, time ratio. Targets: >= 99.5 % of pixels, |d mIoU| <= 0.005.
- training: best validation mIoU (fold 0) of every seed in each precision; the float32
  seeds' range [min, max] is the seed spread, and each mixed_bfloat16 seed should fall
  within it widened by the spread itself (the spread of 2 or 3 seeds underestimates the
  seed-to-seed variation); the time of a training in each precision.

The processor's instruction sets for bfloat16 are in the table. Run:
`.venv/bin/python bench/precision.py [--quick] [--seeds 3] [--epochs N]`
(`--quick`: 2 seeds, at most 10 epochs). Writes bench/results/precision.json with the
environment block (`bench/_env.py`). `--smoke`: the demo scene only, one seed per
precision, one epoch of a U-Net of depth 2 and base 4 (seconds; checks that it runs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SMOKE_MODEL = {"depth": 2, "base_filters": 4}
DATASETS = ("demo_landsat", "potsdam", "vaihingen")
BEAM = ["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def load(name: str, epochs: int | None, smoke: bool = False):
    """The example config with in-process Beam, tracking off, and `epochs` if given
    (`smoke`: the tiny U-Net of `SMOKE_MODEL`)."""
    from reseg.config import load_config

    cfg = load_config(REPO / "examples" / f"{name}.yaml")
    if smoke:
        params = {**cfg.model.params, **SMOKE_MODEL}
        cfg = cfg.model_copy(
            update={"model": cfg.model.model_validate({"name": "unet", "params": params})}
        )
    train = cfg.train.model_copy(
        update={"progress": "log", **({"epochs": epochs} if epochs else {})}
    )
    return cfg.model_copy(
        update={
            "beam": cfg.beam.model_validate({"args": BEAM}),
            "tracking": cfg.tracking.model_validate({"enabled": False}),
            "train": train,
        }
    )


def with_train(cfg, **over):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=over)})


def classes(path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1)


def dataset(name: str, tmp: Path, seeds: int, epochs: int | None, smoke: bool = False) -> dict:
    # long: the benchmark's procedure in the order it runs
    import shutil

    from reseg import artifacts, layout
    from reseg.components.predictor import predict_scene
    from reseg.components.trainer import train
    from reseg.config import PredictConfig
    from reseg.pipeline import run_pipeline
    from reseg.serving import load_backend

    cfg = load(name, epochs, smoke)
    base = tmp / name / "base"
    run_pipeline(cfg, base, steps=["tile", "stats"])
    tiles = artifacts.TileSet.load(layout.tiles_dir(base))
    stats = artifacts.Stats.load(layout.stats_dir(base))
    trainings = {}
    models = {}
    for precision in ("float32", "mixed_bfloat16"):
        for seed in range(seeds):
            root = tmp / name / f"{precision}-{seed}"
            root.mkdir(parents=True)
            t0 = time.perf_counter()
            pcfg = with_train(cfg, precision=precision, seed=seed)
            out = train(pcfg, tiles, stats, layout.model_dir(root, 0, 0), fold=0)
            seconds = time.perf_counter() - t0
            m = artifacts.read_manifest(out)
            trainings[f"{precision}/{seed}"] = {
                "val_miou": m["metrics"]["val_miou"],
                "seconds": round(seconds, 1),
                "epochs": m["counts"]["epochs"],
            }
            models[(precision, seed)] = out
            print(
                f"  {name} {precision} seed {seed}: {trainings[f'{precision}/{seed}']}", flush=True
            )
    backend = load_backend(models[("float32", 0)])
    scene = cfg.data.scenes[0]
    runs = {}
    for precision in ("float32", "bfloat16", "float32", "bfloat16"):  # interleaved, best time
        pcfg = PredictConfig(precision=precision, progress=False, preview=False)
        out_dir = tmp / name / f"predict-{precision}"
        r = predict_scene(backend, scene.image, out_dir, pcfg, scene.labels, cfg.data)
        if precision not in runs or r.stats["wall_s"] < runs[precision]["wall_s"]:
            runs[precision] = {
                "wall_s": r.stats["wall_s"],
                "model_s": r.stats["model_s"],
                "miou": r.metrics["mean_iou"],
                "classes": classes(r.outputs["classes"]),
            }
        shutil.rmtree(out_dir)
    c32, c16 = runs["float32"].pop("classes"), runs["bfloat16"].pop("classes")
    v32 = [t["val_miou"] for k, t in trainings.items() if k.startswith("float32")]
    v16 = [t["val_miou"] for k, t in trainings.items() if k.startswith("mixed")]
    spread = max(v32) - min(v32)
    lo, hi = min(v32) - spread, max(v32) + spread
    t32 = np.mean([t["seconds"] for k, t in trainings.items() if k.startswith("float32")])
    t16 = np.mean([t["seconds"] for k, t in trainings.items() if k.startswith("mixed")])
    return {
        "scene": scene.id or Path(scene.image).stem,
        "pixels": int(c32.size),
        "model": {"name": cfg.model.name, "params": dict(cfg.model.params)},
        "epochs": cfg.train.epochs,
        "inference": {
            "class_agreement": float((c32 == c16).mean()),
            "miou_float32": runs["float32"]["miou"],
            "miou_bfloat16": runs["bfloat16"]["miou"],
            "miou_diff": runs["bfloat16"]["miou"] - runs["float32"]["miou"],
            "speedup_end_to_end": runs["float32"]["wall_s"] / runs["bfloat16"]["wall_s"],
            "speedup_in_model": runs["float32"]["model_s"] / runs["bfloat16"]["model_s"],
            "runs": runs,
        },
        "training": {
            "runs": trainings,
            "float32_val_miou": [min(v32), max(v32)],
            "float32_seed_spread": spread,
            "mixed_bfloat16_val_miou": v16,
            "mixed_bfloat16_within_spread": all(lo <= v <= hi for v in v16),
            "speedup": float(t32 / t16),
        },
    }


def table(res: dict) -> None:
    print(
        f"\nprocessor flags: {', '.join(res['cpu_flags']) or 'none'}; bfloat16 native: "
        f"{res['native_bfloat16']} ({res['device']})"
    )
    print(
        f"{'dataset':13} {'same class':>10} {'mIoU fp32':>9} {'mIoU bf16':>9} {'d mIoU':>7} "
        f"{'x pred':>6} | {'val mIoU fp32 seeds':>19} {'val mIoU bf16 seeds':>19} {'within':>6} {'x train':>7}"
    )  # fmt: skip
    for name, d in res["datasets"].items():
        i, t = d["inference"], d["training"]
        f32 = "[" + ", ".join(f"{v:.3f}" for v in t["float32_val_miou"]) + "]"
        b16 = ", ".join(f"{v:.3f}" for v in t["mixed_bfloat16_val_miou"])
        print(
            f"{name:13} {100 * i['class_agreement']:>9.2f}% {i['miou_float32']:>9.4f} "
            f"{i['miou_bfloat16']:>9.4f} {i['miou_diff']:>+7.4f} {i['speedup_end_to_end']:>6.2f} | "
            f"{f32:>19} {b16:>19} {str(t['mixed_bfloat16_within_spread']):>6} {t['speedup']:>7.2f}"
        )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="default the example's")
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS))
    ap.add_argument("--quick", action="store_true", help="2 seeds, at most 10 epochs")
    _env.add_arguments(ap)
    args = ap.parse_args(argv)
    run = _env.Run(args)
    if args.quick:
        args.seeds, args.epochs = 2, args.epochs or 10
    if run.smoke:
        args.seeds, args.epochs, args.datasets = 1, 1, ["demo_landsat"]
    from reseg import demo
    from reseg.inference.precision import cpu_flags, native_bfloat16

    os.environ.setdefault("RESEG_DEMO_DATA", str(demo.fetch_landsat()))
    os.environ.setdefault("RESEG_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    native, where = native_bfloat16()
    res: dict = {
        "cpu_flags": list(cpu_flags()),
        "native_bfloat16": native,
        "device": where,
        "seeds": args.seeds,
        "datasets": {},
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as t:
        for name in args.datasets:
            res["datasets"][name] = dataset(name, Path(t), args.seeds, args.epochs, run.smoke)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    table(res)
    run.write("precision.json", res)
    return res


if __name__ == "__main__":
    main()
