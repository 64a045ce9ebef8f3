"""Transfer learning measured: a U-Net on a ResNet-18 encoder pretrained on other ISPRS/LoveDA
scenes, fine-tuned on Vaihingen with 10 %, 25 % and 100 % of the labelled blocks, against the
same U-Net trained from scratch, over seeds x folds.

There are no downloadable weights on this machine, so the pretraining is supervised on this
project's own data (../shared/data): the Potsdam crop (RGB, the six ISPRS classes of
Vaihingen) and the three LoveDA images (RGB, 0.3 m), whose classes are mapped onto the ISPRS
ones (building -> building, road -> impervious, forest -> tree, agriculture and barren ->
low vegetation, background and water -> clutter; no-data ignored). One U-Net (encoder
resnet18) trains on every tile of these four scenes; its nested "encoder" layer's weights
are saved as a `.weights.h5`, which is what `model.params.encoder_weights` reads.

Fine-tuning (Vaihingen: near-infrared, red, green; the RGB weights see those bands in that
order, as ImageNet weights would): the tile set is cut once (reseg's own tile and stats
steps); for evaluation fold k the training blocks (`reseg.folds.training_folds`) are put in
one seeded random order per fold, and a fraction f keeps the first ceil(f n) of them (10 %
within 25 % within 100 %): a training TFRecord set holds the tiles of the kept blocks, with
the labels of every pixel outside them set to ignore (255). Both arms and every seed of a
(fold, fraction) train on the same files; validation (early stopping, best epoch) is fold
k + 1 as always. The pretrained arm freezes the encoder for `--freeze` epochs and then moves
it at `--encoder-lr` times the learning rate (examples/vaihingen_pretrained.yaml's recipe);
the scratch arm is the same network, randomly initialised, no freezing. Every training has
the same number of updates (`train.steps_per_epoch` x epochs) whatever the fraction.

Scored on the core pixels of fold k's tiles (the evaluation fold, never seen in training or
validation), mIoU over the classes with labelled pixels. The gain at each fraction is the
paired difference d[s, k] = mIoU(pretrained) - mIoU(scratch) over seeds x folds, compared
with `reseg.study.stats.compare_runs` (crossed seed x fold model, overlap-corrected for
K = `--folds-total` folds, t-interval, MDE at 80 % power) and the three fractions' p-values
Holm-adjusted together (`adjust_family`). Seed spread: per fold the standard deviation over
seeds, averaged over folds, for each arm.

Run: `nice -n 10 .venv/bin/python bench/transfer.py [--seeds 3] [--folds 0 1 2]`
(defaults: 64-pixel tiles, 4 folds, 3 evaluated). `--pretrained FILE` reuses an earlier
pretraining's encoder weights; `--log FILE` appends every run as a JSON line and skips the
runs already in it (a cut-short run resumes). Writes bench/results/transfer.json with the
environment block (`bench/_env.py`). `--smoke`: one seed, one fold, half the blocks, one
epoch of two steps on the Potsdam crop alone (under a minute; checks that it runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
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
BEAM = ["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]
FRACTIONS = (0.1, 1.0, 0.25)  # run order: the extremes first
# LoveDA value -> ISPRS value (1 impervious, 2 building, 3 low vegetation, 4 tree, 6 clutter)
LOVEDA_TO_ISPRS = {0: 0, 1: 6, 2: 2, 3: 1, 4: 6, 5: 3, 6: 4, 7: 3}


def shared_data() -> Path:
    return Path(os.environ.get("RESEG_SHARED_DATA", REPO.parent / "shared" / "data"))


def base_config(name: str, args, scenes: list[dict] | None = None):
    """The example config `name` with the bench's tiling, model and training overrides."""
    from reseg.config import load_config

    cfg = load_config(REPO / "examples" / f"{name}.yaml")
    data = cfg.data
    if scenes is not None:
        data = data.model_validate({**data.model_dump(mode="json"), "scenes": scenes})
    tiling = cfg.tiling.model_copy(
        update={
            "tile_size": args.tile,
            "overlap": args.overlap,
            "block_size": args.block,
            "folds": args.folds_total,
        }
    )
    model = cfg.model.model_validate(
        {
            "name": "unet",
            "params": {
                "encoder": "resnet18",
                "base_filters": args.base_filters,
                "dropout": 0.1,
            },
        }
    )
    train = cfg.train.model_copy(
        update={
            "progress": "log",
            "epochs": args.epochs,
            "steps_per_epoch": args.steps,
            "batch_size": args.batch,
            "learning_rate": args.lr,
            "early_stopping": None,
        }
    )
    return cfg.model_copy(
        update={
            "data": data,
            "tiling": tiling,
            "model": model,
            "train": train,
            "beam": cfg.beam.model_validate({"args": BEAM}),
            "tracking": cfg.tracking.model_validate({"enabled": False}),
        }
    )


def with_params(cfg, **params):
    p = {**cfg.model.params, **params}
    return cfg.model_copy(update={"model": cfg.model.model_validate({"name": "unet", "params": p})})


def with_train(cfg, **over):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=over)})


# --------------------------------------------------------------------------- pretraining


def loveda_scenes(tmp: Path, count: int) -> list[dict]:
    """LoveDA images with their labels re-encoded in ISPRS values (PNG files in `tmp`)."""
    from PIL import Image

    src = shared_data() / "loveda"
    lut = np.zeros(256, np.uint8)
    for a, b in LOVEDA_TO_ISPRS.items():
        lut[a] = b
    out = []
    for i in range(count):
        label = np.asarray(Image.open(src / "ann_dir" / f"{i}.png"))
        path = tmp / f"loveda_{i}_isprs.png"
        Image.fromarray(lut[label]).save(path)
        out.append(
            {"id": f"loveda_{i}", "image": str(src / "img_dir" / f"{i}.png"), "labels": str(path)}
        )
    return out


def pretrain(args, tmp: Path) -> tuple[Path, dict]:
    """Train the U-Net on every tile of the pretraining scenes; save its encoder's weights."""
    import keras

    import reseg.models  # noqa: F401  (registers reseg's layers for loading)
    from reseg import artifacts, layout
    from reseg.components.trainer import train
    from reseg.pipeline import run_pipeline

    d = shared_data()
    scenes = [
        {
            "id": "potsdam_2_10",
            "image": str(d / "potsdam/img_dir/2_10_0_0_512_512.png"),
            "labels": str(d / "potsdam/ann_dir/2_10_0_0_512_512.png"),
        }
    ]
    scenes += loveda_scenes(tmp, args.loveda)
    cfg = base_config("potsdam", args, scenes)
    cfg = with_train(
        cfg, epochs=args.pretrain_epochs, steps_per_epoch=args.pretrain_steps, seed=1000
    )
    root = tmp / "pretrain"
    run_pipeline(cfg, root, steps=["tile", "stats"])
    tiles = artifacts.TileSet.load(layout.tiles_dir(root))
    stats = artifacts.Stats.load(layout.stats_dir(root))
    t0 = time.perf_counter()
    out = train(cfg, tiles, stats, layout.model_dir(root, 0, None), fold=None)
    seconds = time.perf_counter() - t0
    model = keras.models.load_model(
        artifacts.Model.load(out).keras_file, safe_mode=True, compile=False
    )
    weights = tmp / "pretrained_resnet18.weights.h5"
    model.get_layer("encoder").save_weights(weights)
    m = artifacts.read_manifest(out)
    info = {
        "scenes": [s["id"] for s in scenes],
        "epochs": m["counts"]["epochs"],
        "steps_per_epoch": args.pretrain_steps,
        "seconds": round(seconds, 1),
        "train_loss": m["metrics"].get("loss"),
    }
    Path(f"{weights}.json").write_text(json.dumps(info))  # read back by --pretrained
    print(f"pretrained on {info['scenes']}: {info}", flush=True)
    return weights, info


# --------------------------------------------------------------------------- label subsets


def block_ids(t, grids: dict, block_cells: int) -> np.ndarray:
    """(H, W) int block id (scene-unique) of the core owning each pixel of tile `t`."""
    from reseg.windows import cell_of

    g = grids[t.scene]
    h, w = t.label.shape
    ci = cell_of(t.row + np.arange(h), g.rows, g.tile, g.overlap) // block_cells
    cj = cell_of(t.col + np.arange(w), g.cols, g.tile, g.overlap) // block_cells
    return ci[:, None] * 10_000 + cj[None, :]


def label_subsets(cfg, root: Path, fold: int, fractions, order_seed: int) -> dict:
    """Per fraction: a folder of training TFRecords with only the first ceil(f n) training blocks
    (of a seeded order) labelled, and the counts."""
    from reseg.artifacts import TileSet
    from reseg.folds import training_folds
    from reseg.layout import tiles_dir
    from reseg.tfrecords_schema.schema import TFRecordShardWriter, encode, read_tiles
    from reseg.windows import TileGrid

    tiles = TileSet.load(tiles_dir(root))
    all_tiles = list(read_tiles(list(tiles.files)))
    t, o = cfg.tiling.tile_size, cfg.tiling.overlap
    grids = {}
    for scene in {x.scene for x in all_tiles}:
        ends = [
            (x.core[0] + x.core[2], x.core[1] + x.core[3]) for x in all_tiles if x.scene == scene
        ]
        grids[scene] = TileGrid(max(e[0] for e in ends), max(e[1] for e in ends), t, o)
    bc = cfg.tiling.block_cells
    train_folds = set(training_folds(fold, tiles.folds))
    blocks = sorted(
        {(x.scene, int(block_ids(x, grids, bc)[x.core_slice()][0, 0])) for x in all_tiles
         if x.fold in train_folds}
    )  # fmt: skip
    random.Random(order_seed * 1000 + fold).shuffle(blocks)
    out = {}
    for f in fractions:
        keep = set(blocks[: max(1, math.ceil(f * len(blocks)))])
        folder = root / "subsets" / f"fold{fold}_f{f:g}"
        folder.mkdir(parents=True, exist_ok=True)
        n_tiles = labelled = 0
        with TFRecordShardWriter(folder / "train-00000.tfrecord.gz") as w:
            for x in all_tiles:
                if x.fold not in train_folds:
                    continue
                ids = block_ids(x, grids, bc)
                kept = np.isin(ids, [b for s, b in keep if s == x.scene])
                label = np.where(kept, x.label, 255).astype(np.uint8)
                if not (label != 255).any():
                    continue
                w.write(encode(dataclasses.replace(x, label=label)))
                n_tiles += 1
                core = label[x.core_slice()]
                labelled += int((core != 255).sum())
        out[f] = {
            "files": folder,
            "blocks": len(keep),
            "of_blocks": len(blocks),
            "tiles": n_tiles,
            "labelled_core_pixels": labelled,
        }
    return out


# --------------------------------------------------------------------------- evaluation


def evaluate_fold(model_dir: Path, root: Path, fold: int, num_classes: int) -> float:
    """mIoU of the model on the core pixels of fold `fold`'s tiles (labelled classes)."""
    import keras

    import reseg.models  # noqa: F401
    from reseg import artifacts
    from reseg.artifacts import TileSet
    from reseg.layout import tiles_dir
    from reseg.metrics import confusion, mean_iou_of
    from reseg.tfrecords_schema.schema import read_tiles

    m = artifacts.Model.load(model_dir)
    model = keras.models.load_model(m.keras_file, safe_mode=True, compile=False)
    mean = np.asarray(m.info.mean, np.float32)
    std = np.asarray(m.info.std, np.float32)
    tiles = [x for x in read_tiles(list(TileSet.load(tiles_dir(root)).files)) if x.fold == fold]
    images = np.stack(
        [
            np.where(x.valid[..., None] > 0, (x.image.astype(np.float32) - mean) / std, 0)
            for x in tiles
        ]
    )
    probs = model.predict(images, batch_size=16, verbose=0)
    cm = np.zeros((num_classes, num_classes), np.int64)
    for x, p in zip(tiles, probs, strict=True):
        rs, cs = x.core_slice()
        cm += confusion(x.label[rs, cs], p[rs, cs].argmax(-1), num_classes)
    return float(mean_iou_of(cm))


# --------------------------------------------------------------------------- main


def finetune(args, tmp: Path, weights: Path) -> dict:
    # long: the benchmark's procedure in the order it runs
    from reseg import artifacts, layout
    from reseg.components.trainer import train
    from reseg.pipeline import run_pipeline

    cfg = base_config("vaihingen", args)
    if args.smoke:  # the Potsdam crop stands in for Vaihingen: seconds, not minutes
        d = shared_data() / "potsdam"
        cfg = base_config(
            "vaihingen",
            args,
            [
                {
                    "id": "potsdam_2_10",
                    "image": str(d / "img_dir/2_10_0_0_512_512.png"),
                    "labels": str(d / "ann_dir/2_10_0_0_512_512.png"),
                }
            ],
        )
    base = tmp / "vaihingen"
    run_pipeline(cfg, base, steps=["tile", "stats"])
    tiles = artifacts.TileSet.load(layout.tiles_dir(base))
    stats = artifacts.Stats.load(layout.stats_dir(base))
    arms = {
        "scratch": cfg,
        "pretrained": with_train(
            with_params(cfg, encoder_weights=str(weights)),
            freeze_encoder_epochs=args.freeze,
            encoder_lr_multiplier=args.encoder_lr,
        ),
    }
    done = _logged(args.log)
    runs: list[dict] = list(done.values())
    subsets_info, subsets = {}, {}
    for fold in args.folds:
        subsets[fold] = label_subsets(cfg, base, fold, args.fractions, order_seed=7)
        subsets_info[fold] = {
            f"{f:g}": {k: v for k, v in s.items() if k != "files"} for f, s in subsets[fold].items()
        }
    # fraction by fraction, so that a run cut short still has whole seed x fold tables
    for f in args.fractions:
        for fold in args.folds:
            for seed in range(args.seeds):
                for arm, acfg in arms.items():
                    if (fold, f, seed, arm) in done:
                        continue
                    root = tmp / "runs" / f"fold{fold}_f{f:g}_s{seed}_{arm}"
                    root.mkdir(parents=True)
                    t0 = time.perf_counter()
                    out = train(
                        with_train(acfg, seed=seed),
                        tiles,
                        stats,
                        layout.model_dir(root, 0, fold),
                        fold=fold,
                        tile_files=[subsets[fold][f]["files"]],
                    )
                    seconds = time.perf_counter() - t0
                    miou = evaluate_fold(out, base, fold, cfg.data.num_classes)
                    shutil.rmtree(root)  # a ResNet-18 U-Net is 60 MB; 54 of them fill a disk
                    run = {
                        "fold": fold,
                        "fraction": f,
                        "seed": seed,
                        "arm": arm,
                        "miou": miou,
                        "seconds": round(seconds, 1),
                    }
                    runs.append(run)
                    if args.log:
                        with args.log.open("a") as fh:
                            fh.write(json.dumps(run) + "\n")
                    print(f"  {run}", flush=True)
    return {"runs": runs, "subsets": subsets_info}


def _logged(log: Path | None) -> dict:
    """Runs already in the `--log` file, by (fold, fraction, seed, arm)."""
    if log is None or not log.is_file():
        return {}
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {(r["fold"], r["fraction"], r["seed"], r["arm"]): r for r in runs}


def analyse(runs: list[dict], fractions, folds_total: int) -> list[dict]:
    from reseg.study.stats import adjust_family, compare_runs

    rows, comps = [], []
    for f in fractions:
        by = {(r["arm"], r["seed"], r["fold"]): r["miou"] for r in runs if r["fraction"] == f}
        d = {
            (s, k): by[("pretrained", s, k)] - by[("scratch", s, k)]
            for (arm, s, k) in by
            if arm == "pretrained" and ("scratch", s, k) in by
        }
        comps.append(compare_runs(d, k_total=folds_total))
        row = {"fraction": f}
        for arm in ("scratch", "pretrained"):
            vals = [v for (a, _, _), v in by.items() if a == arm]
            per_fold = {}
            for (a, _, k), v in by.items():
                if a == arm:
                    per_fold.setdefault(k, []).append(v)
            sds = [float(np.std(v, ddof=1)) for v in per_fold.values() if len(v) > 1]
            row[arm] = {
                "miou_mean": float(np.mean(vals)) if vals else None,
                "seed_sd": float(np.mean(sds)) if sds else None,
                "seed_range": (
                    float(np.mean([max(v) - min(v) for v in per_fold.values()])) if vals else None
                ),
            }
        rows.append(row)
    for row, c in zip(rows, adjust_family(comps), strict=True):
        row["gain"] = c.as_dict()
        s, p = row["scratch"]["seed_sd"], row["pretrained"]["seed_sd"]
        row["seed_sd_change"] = None if s is None or p is None else p - s
    return rows


def _f(v, fmt="+.3f"):
    return "-" if v is None else format(v, fmt)


def table(rows: list[dict]) -> None:
    print(
        f"\n{'labels':>6} {'scratch':>8} {'pretr.':>8} {'gain':>7} {'95% interval':>17} "
        f"{'MDE':>6} {'p Holm':>7} {'verdict':>20} {'sd scr':>7} {'sd pre':>7}"
    )
    for r in rows:
        g = r["gain"]
        print(
            f"{100 * r['fraction']:>5.0f}% {_f(r['scratch']['miou_mean'], '.3f'):>8} "
            f"{_f(r['pretrained']['miou_mean'], '.3f'):>8} {_f(g['estimate']):>7} "
            f"[{_f(g['low'])}, {_f(g['high'])}]".rjust(18)
            + f" {_f(g['mde'], '.3f'):>6} {_f(g['p_adj'], '.3f'):>7} {g['verdict']:>20} "
            f"{_f(r['scratch']['seed_sd'], '.3f'):>7} {_f(r['pretrained']['seed_sd'], '.3f'):>7}"
        )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2], help="evaluation folds")
    ap.add_argument("--folds-total", type=int, default=4, help="tiling.folds")
    ap.add_argument("--fractions", type=float, nargs="*", default=list(FRACTIONS))
    ap.add_argument(
        "--log",
        type=Path,
        default=None,
        help="append each run here (JSON lines); runs in it are skipped",
    )
    ap.add_argument("--tile", type=int, default=64)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--block", type=int, default=96)
    ap.add_argument("--base-filters", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12, help="steps per epoch (every fraction)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--freeze", type=int, default=1, help="pretrained arm: frozen epochs")
    ap.add_argument("--encoder-lr", type=float, default=0.1, help="encoder lr multiplier")
    ap.add_argument("--loveda", type=int, default=3, help="LoveDA images in the pretraining")
    ap.add_argument("--pretrain-epochs", type=int, default=6)
    ap.add_argument("--pretrain-steps", type=int, default=60)
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    ap.add_argument(
        "--pretrained", type=Path, default=None, help="encoder weights of an earlier pretraining"
    )
    ap.add_argument(
        "--analyse-only", action="store_true", help="no training: the table of the runs in --log"
    )
    _env.add_arguments(ap)
    args = ap.parse_args(argv)
    run = _env.Run(args)
    if run.smoke:
        args.seeds, args.folds, args.fractions = 1, [0], [0.5]
        args.epochs, args.steps, args.freeze, args.base_filters = 1, 2, 0, 4
        args.loveda, args.pretrain_epochs, args.pretrain_steps = 0, 1, 2
        args.tile, args.overlap, args.block = 64, 16, 96
    t0 = time.perf_counter()
    if args.analyse_only:
        if not args.log or not args.log.is_file():
            ap.error("--analyse-only needs --log FILE with the runs")
        return report(args, run, {"runs": list(_logged(args.log).values()), "subsets": {}}, {}, t0)
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as t:
        tmp = args.keep or Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        if args.pretrained:
            meta = Path(f"{args.pretrained}.json")  # what the pretraining recorded, if kept
            pre = json.loads(meta.read_text()) if meta.is_file() else {}
            weights, pre = args.pretrained, {**pre, "weights": str(args.pretrained)}
        else:
            weights, pre = pretrain(args, tmp)
        res = finetune(args, tmp, weights)
    return report(args, run, res, pre, t0)


def report(args, run, res: dict, pre: dict, t0: float) -> dict:
    """The table and the result file of the runs in `res`."""
    if args.pretrained and not pre:
        meta = Path(f"{args.pretrained}.json")
        pre = json.loads(meta.read_text()) if meta.is_file() else {}
    fractions = sorted({r["fraction"] for r in res["runs"]})
    rows = analyse(res["runs"], fractions, args.folds_total)
    out = {
        "setup": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("smoke", "results")
        },
        "pretraining": pre,
        "subsets": res["subsets"],
        "rows": rows,
        "runs": res["runs"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    table(rows)
    run.write("transfer.json", json.loads(json.dumps(out, default=str)))
    return out


if __name__ == "__main__":
    main()
