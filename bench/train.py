"""Training benchmark: the tf.data input pipeline against the U-Net training step it feeds.

One run, one process, on synthetic tiles written with reseg's own shard writer
(uint16, 4 bands, 7 classes, blob-shaped classes so gzip compresses them as it
would real imagery):

- input: examples/s of `reseg.components.trainer.data.training_dataset` alone
  (parse, normalise, shuffle, batch, augment with the default flips + 90-degree
  turns; also without augmentation and with a 15-degree rotation), iterated
  without a model;
- step: training steps/s of a U-Net (`reseg.models`, batch norm) on one batch
  already in memory, through `reseg.components.trainer.steps.Steps` (the custom
  loop the trainer uses), and the same steps fed by the input pipeline;
- ratio input / step in examples/s (target: at least 5: the input never starves
  the step) and the training GFLOP/s, counted as 3 x the forward FLOPs (2 x the
  multiply-adds of every convolution and transposed convolution; backward costs
  about twice the forward), as a share of TF's float32 matmul rate (2048 x 2048),
  timed in alternation with the step (best of each), so load from other processes
  hits both alike;
- deterministic: training fed by the input with `train.deterministic` off and on (TF op
  determinism and tf.data's deterministic order), timed in alternation; the ratio of step
  times decides the default (on if at most 1.3x);
- precision: the same training step under `train.precision` float32, mixed_bfloat16
  and mixed_float16 (loss scaling), timed in alternation, with the bfloat16 / float16
  matmul rates and the processor's instruction sets for them (AMX, AVX-512 BF16 / FP16).
  mixed_float16 only with a GPU or `--float16`: on a CPU TF's float16 convolution
  gradients are emulated (65-97 s per step here against 0.57 s in float32).

Run: `.venv/bin/python bench/train.py [--quick] [--tile 128 --base 16 --depth 4 --batch 8]`.
Writes bench/results/train.json. `--smoke`: 32² tiles, a U-Net of depth 2 and base 4,
one window of one step (seconds; checks that it runs).
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
from models import conv_gflop, matmul_fn  # noqa: E402  (bench/models.py)

BANDS, CLASSES = 4, 7


def write_tiles(directory: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """`count` tiles of `size` x `size` in 4 gzip shards."""
    import numpy as np

    from reseg.tfrecords_schema import TFRecordShardWriter, Tile, encode

    rng = np.random.default_rng(seed)
    paths = [directory / f"part-{i:05d}.tfrecord.gz" for i in range(4)]
    writers = [TFRecordShardWriter(p) for p in paths]
    means = 2000 + 600 * ((np.arange(CLASSES)[:, None] + np.arange(BANDS)[None, :]) % CLASSES)
    for i in range(count):
        coarse = rng.integers(0, CLASSES, size=(size // 16, size // 16))
        label = np.kron(coarse, np.ones((16, 16), np.int64)).astype(np.uint8)
        image = (means[label] + rng.normal(0, 40, size=(size, size, BANDS))).astype(np.uint16)
        tile = Tile(
            image=image,
            label=label,
            valid=np.ones((size, size), np.uint8),
            fold_map=np.zeros((size, size), np.uint8),
            scene="bench",
            row=0,
            col=i * size,
            core=(0, i * size, size, size),
            fold=0,
        )
        writers[i % 4].write(encode(tile))
    for w in writers:
        w.close()
    return paths


def best_rate(fn, items_per_call: int, calls: int, windows: int) -> float:
    """Items per second: best of `windows` timings of `calls` calls each."""
    best = float("inf")
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return items_per_call * calls / best


def determinism_rates(args, make_steps, data, files, spec, augment) -> dict:
    """Steps/s of training fed by the input pipeline with `train.deterministic` off and on.

    On: TF op determinism and tf.data's deterministic order (what the trainer sets);
    off: neither. Each setting gets its own model and pipeline, built with the flag in
    force; windows alternate (best of each), so load from other processes hits both.
    """
    from tensorflow.python.framework import config as tf_config  # the switch has no public off

    def set_flag(on: bool) -> None:
        (tf_config.enable_op_determinism if on else tf_config.disable_op_determinism)()

    runs = {}
    for on in (False, True):
        set_flag(on)
        st = make_steps("float32")[1]
        it = iter(
            data.training_dataset(
                files, spec, batch_size=args.batch, augment=augment, deterministic=on
            )
        )
        st.train_epoch(it, 1)  # trace, fill the shuffle buffer
        runs[on] = (st, it)
    rates = dict.fromkeys(runs, 0.0)
    for _ in range(args.windows):
        for on, (st, it) in runs.items():
            set_flag(on)
            rate = best_rate(lambda st=st, it=it: st.train_epoch(it, args.steps), args.steps, 1, 1)
            rates[on] = max(rates[on], rate)
    set_flag(False)
    return {
        "fed_steps_per_s": {"off": round(rates[False], 3), "on": round(rates[True], 3)},
        "step_time_on_over_off": round(rates[False] / rates[True], 3),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--base", type=int, default=16, help="U-Net base filters")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tiles", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="training steps per timing window")
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="32 tiles, 2 timing windows")
    p.add_argument("--float16", action="store_true", help="time mixed_float16 on a CPU too")
    _env.add_arguments(p)
    args = p.parse_args(argv)
    run = _env.Run(args)
    if args.quick:
        args.tiles, args.windows = 32, 2
    if run.smoke:
        args.tile, args.base, args.depth, args.batch = 32, 4, 2, 4
        args.tiles, args.steps, args.windows = 8, 1, 1
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import tensorflow as tf

    import reseg.models as models
    from reseg.components.trainer import data
    from reseg.components.trainer.distribute import get_cluster
    from reseg.components.trainer.inputs import dtype_policy
    from reseg.components.trainer.loop import make_optimizer
    from reseg.components.trainer.losses import make_loss
    from reseg.components.trainer.steps import Steps
    from reseg.config.train import AugmentConfig, TrainConfig

    mm, mm_gflop = matmul_fn(tf)

    tmp = Path(tempfile.mkdtemp(prefix="reseg-bench-train-"))
    files = write_tiles(tmp, args.tiles, args.tile)
    spec = data.InputSpec("uint16", BANDS, CLASSES, (4000.0,) * BANDS, (1200.0,) * BANDS)

    def pipeline_rate(augment: AugmentConfig | None) -> float:
        it = iter(data.training_dataset(files, spec, batch_size=args.batch, augment=augment))
        for _ in range(3):
            next(it)  # warm-up: tracing, shuffle buffer, autotuning
        batches = max(8, args.tiles // args.batch)
        return best_rate(lambda: next(it), args.batch, batches, args.windows)

    default_aug = TrainConfig().augment
    input_rates = {
        "default (flips, rot90)": pipeline_rate(default_aug),
        "no augmentation": pipeline_rate(None),
        "rotation 15 deg + photometric": pipeline_rate(
            AugmentConfig(rotation=15, brightness=0.1, contrast=0.1, noise_std=0.05)
        ),
    }

    cluster = get_cluster("default")

    def make_steps(precision: str):
        """Model, optimiser and steps as the trainer makes them under `train.precision`."""
        keras.utils.set_random_seed(0)
        with dtype_policy(precision):
            model = models.build_model(
                "unet", CLASSES, BANDS, depth=args.depth, base_filters=args.base
            )
            train_model, loss_weights = models.training_model(model)
        cfg = TrainConfig(batch_size=args.batch, precision=precision)
        optimizer = make_optimizer(cfg, steps_per_epoch=100)
        optimizer.build(train_model.trainable_variables)
        return model, Steps(
            cluster,
            model,
            train_model,
            loss_weights,
            optimizer,
            make_loss("crossentropy", CLASSES),
            CLASSES,
            args.batch,
        )

    model, steps = make_steps("float32")
    fixed = next(
        iter(data.training_dataset(files, spec, batch_size=args.batch, augment=default_aug))
    )
    fixed = tuple(tf.constant(t) for t in fixed)
    steps._train(fixed)[0].numpy()  # trace
    # matmul and step timed in alternation, best of each: load from other processes hits both
    step_rate = mm_rate = 0.0
    for _ in range(args.windows):
        mm_rate = max(mm_rate, best_rate(mm, 1, 3, 1) * mm_gflop)
        step_rate = max(
            step_rate, best_rate(lambda: steps._train(fixed)[0].numpy(), 1, args.steps, 1)
        )
    fed = iter(data.training_dataset(files, spec, batch_size=args.batch, augment=default_aug))
    fed_rate = best_rate(lambda: steps.train_epoch(fed, args.steps), args.steps, 1, args.windows)

    names = ["mixed_bfloat16"]
    if args.float16 or tf.config.list_physical_devices("GPU"):
        names.append("mixed_float16")
    precisions = {p: make_steps(p)[1] for p in names}
    precisions = {"float32": steps, **precisions}
    for st in precisions.values():
        st._train(fixed)[0].numpy()  # trace
    mms = {d: matmul_fn(tf, d)[0] for d in ("float32", "bfloat16", "float16")}
    for d in ("bfloat16", "float16"):
        mms[d]()  # trace
    prec_rates = dict.fromkeys(precisions, 0.0)
    mm_rates = dict.fromkeys(mms, 0.0)
    for _ in range(args.windows):  # alternating, best of each
        for k, st in precisions.items():
            rate = best_rate(lambda st=st: st._train(fixed)[0].numpy(), 1, args.steps, 1)
            prec_rates[k] = max(prec_rates[k], rate)
        for d, fn in mms.items():
            mm_rates[d] = max(mm_rates[d], best_rate(fn, 1, 3, 1) * mm_gflop)
    det = determinism_rates(args, make_steps, data, files, spec, default_aug)

    from reseg.inference.precision import cpu_flags

    gflop_fwd = conv_gflop(model, args.tile, args.tile)
    train_gflop_per_step = 3 * gflop_fwd * args.batch
    result = {
        "setting": {
            "tile": args.tile,
            "bands": BANDS,
            "classes": CLASSES,
            "batch": args.batch,
            "unet": {"depth": args.depth, "base_filters": args.base},
            "tiles": args.tiles,
            "cpus": os.cpu_count(),
        },
        "matmul_gflop_per_s": round(mm_rate, 1),
        "input_examples_per_s": {k: round(v, 1) for k, v in input_rates.items()},
        "train_steps_per_s": round(step_rate, 3),
        "train_examples_per_s": round(step_rate * args.batch, 2),
        "train_fed_steps_per_s": round(fed_rate, 3),
        "input_over_step": round(
            input_rates["default (flips, rot90)"] / (step_rate * args.batch), 1
        ),
        "forward_gflop_per_tile": round(gflop_fwd, 3),
        "train_gflop_per_s": round(train_gflop_per_step * step_rate, 1),
        "train_share_of_matmul": round(train_gflop_per_step * step_rate / mm_rate, 3),
        "deterministic": det,
        "precision": {
            "cpu_flags": list(cpu_flags()),
            "not_timed": [] if "mixed_float16" in precisions else ["mixed_float16 (CPU)"],
            "matmul_gflop_per_s": {k: round(v, 1) for k, v in mm_rates.items()},
            "steps_per_s": {k: round(v, 3) for k, v in prec_rates.items()},
            "speed_vs_float32": {
                k: round(v / prec_rates["float32"], 2) for k, v in prec_rates.items()
            },
            "share_of_matmul_same_precision": {
                k: round(train_gflop_per_step * v / mm_rates[k.removeprefix("mixed_")], 3)
                for k, v in prec_rates.items()
            },
        },
    }
    print(
        f"\nU-Net depth {args.depth} base {args.base}, {args.tile}x{args.tile}x{BANDS} tiles, batch {args.batch}"
    )
    print(f"matmul 2048^2 float32: {mm_rate:.1f} GFLOP/s\n")
    print(f"{'':34} {'examples/s':>11}")
    for k, v in input_rates.items():
        print(f"{'input, ' + k:34} {v:>11.1f}")
    print(
        f"{'training step (batch in memory)':34} {step_rate * args.batch:>11.2f}   ({step_rate:.3f} steps/s)"
    )
    print(
        f"{'training fed by the input':34} {fed_rate * args.batch:>11.2f}   ({fed_rate:.3f} steps/s)"
    )
    print(f"\ninput / step: {result['input_over_step']}x (target >= 5x)")
    print(
        f"training: {train_gflop_per_step:.1f} GFLOP/step (3 x forward {gflop_fwd:.3f} GFLOP/tile), "
        f"{result['train_gflop_per_s']} GFLOP/s = {result['train_share_of_matmul']:.0%} of matmul"
    )
    print(
        f"\ntrain.deterministic (fed steps/s): off {det['fed_steps_per_s']['off']:.3f}, "
        f"on {det['fed_steps_per_s']['on']:.3f}; step time on / off = "
        f"{det['step_time_on_over_off']:.2f}x"
    )
    pr = result["precision"]
    print(
        f"\nprecision (processor flags: {', '.join(pr['cpu_flags']) or 'none'}); matmul GFLOP/s "
        + ", ".join(f"{k} {v}" for k, v in pr["matmul_gflop_per_s"].items())
    )
    if pr["not_timed"]:
        print("  not timed: mixed_float16 (emulated on a CPU; --float16 to time it)")
    for k, v in pr["steps_per_s"].items():
        print(
            f"  {k:15} {v:.3f} steps/s = {pr['speed_vs_float32'][k]:.2f}x float32, "
            f"{pr['share_of_matmul_same_precision'][k]:.0%} of its matmul rate"
        )
    run.write("train.json", result)
    for f in files:
        f.unlink()
    tmp.rmdir()

    return result


if __name__ == "__main__":
    main()
