"""Model zoo benchmark: size, FLOPs and CPU inference speed of every registry entry.

For each model at its default size (4 bands, 7 classes): parameters, GFLOP per
256 x 256 tile (2 x multiply-adds of convolutions and transposed convolutions,
as in shared/ANCHORS.md), and inference at batch 8 in Mpx/s and GFLOP/s, with
its ratio to the machine's float32 matmul rate (TF, 2048 x 2048) measured in
the same run. The U-Net is also written in PyTorch here (same layers, weights
copied from Keras and outputs compared) and timed side by side.

Tried, fastest kept: TF thread pools (one subprocess per setting, since they
are fixed when TF starts), XLA (`jit_compile`) or not, `predict_on_batch` or
a bare `tf.function`, batch norm folded into the convolutions or not
(`reseg.models.inference.fold_batch_norm`); PyTorch eager NCHW, eager channels_last, and
`torch.compile` channels_last. Keras' convolutions on the TF CPU backend take
NHWC only (channels_first needs XLA's layout assignment, which reseg's models
do not use), so the data layout is tried on the PyTorch side; there conv + BN
are folded too (`torch.fx.experimental.optimization.fuse`) for a fair match.

Precision (every run, `--quick` too): the matmul rate (2048², TF) in float32,
bfloat16 and float16, and the folded U-Net through a bare `tf.function` in each
precision (`reseg.models.precision.with_precision`, as `KerasBackend` runs it;
with and without XLA), with its share of the matmul rate of the same precision
and the share of pixels whose class equals float32's (an untrained network on
noise: a lower bound, its classes are near-ties). The table says which of the
processor's instruction sets for bfloat16 / float16 (AMX, AVX-512 BF16 / FP16)
it has; without them bfloat16 and float16 are emulated and only what runs is reported.

Timings are round-robin between the variants being compared (a matmul in
every round), best of `--rounds`, so a burst of load from other processes
hits all variants alike. Run: `.venv/bin/python bench/models.py [--quick]`;
the PyTorch side needs the bench extra (torch) and is skipped, with a line saying so,
where torch is not installed. Writes bench/results/models.json. `--smoke`: the U-Net on
2 x 64² tiles, one thread setting, one round, no `torch.compile` (seconds; checks that
everything runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import _env

BANDS, CLASSES, SIZE, BATCH = 4, 7, 256, 8
SMOKE_SIZE, SMOKE_BATCH = 64, 2
# (intra_op, inter_op); 0 = TF's default (all cores). (1, 2) lost clearly in earlier runs.
THREADS = [(0, 0), (2, 1)]
UNET_VARIANTS = ("keras", "keras_xla", "tf_function_xla", "keras_folded", "tf_function_xla_folded")
VARIANTS = ("keras_folded", "tf_function_xla", "tf_function_xla_folded")


# --------------------------------------------------------------------- helpers


def timed_rounds(variants: dict, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each variant, interleaved round by round."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for key, fn in variants.items():
            time.sleep(0.05)  # let spinning thread pools of the previous variant sleep
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return times


def conv_gflop(model, height: int, width: int) -> float:
    """GFLOP of one `height x width` image: 2 x MACs of conv and transposed conv layers."""
    import keras

    fixed = keras.models.clone_model(
        model, input_tensors=keras.Input((height, width, model.input.shape[-1]))
    )
    flops = 0
    for layer in fixed.layers:
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            continue
        (_, hi, wi, cin), (_, ho, wo, cout) = layer.input.shape, layer.output.shape
        kh, kw = layer.kernel_size
        if isinstance(layer, keras.layers.Conv2DTranspose):
            flops += 2 * hi * wi * kh * kw * cin * cout
        else:
            flops += 2 * ho * wo * kh * kw * (cin // layer.groups) * cout
    return flops / 1e9


def tf_setup(intra: int, inter: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    return tf


def tf_variants(model, x, tf, which: tuple[str, ...]) -> dict:
    """Keras inference paths of one model on batch `x`: `predict_on_batch` without
    and with XLA, a bare XLA-compiled `tf.function` of the model's call, each
    also on the model with batch norm folded into the convolutions (`_folded`)."""
    import keras

    from reseg.models.inference import fold_batch_norm

    folded = fold_batch_norm(model)
    xt = tf.constant(x)
    variants = {}
    for key in which:
        m = folded if key.endswith("_folded") else model
        if key.startswith("tf_function_xla"):
            fn = tf.function(lambda t, m=m: m(t, training=False), jit_compile=True)
            variants[key] = lambda fn=fn: fn(xt).numpy()
        else:
            clone = keras.models.clone_model(m)
            clone.set_weights(m.get_weights())
            clone.compile(jit_compile=key.startswith("keras_xla"))
            variants[key] = lambda c=clone: c.predict_on_batch(x)
    return variants


def matmul_fn(tf, dtype: str = "float32"):
    a = tf.cast(tf.random.normal((2048, 2048)), dtype)
    b = tf.cast(tf.random.normal((2048, 2048)), dtype)
    mm = tf.function(lambda: tf.linalg.matmul(a, b))
    return lambda: mm().numpy(), 2 * 2048**3 / 1e9


# --------------------------------------------------------------------- PyTorch U-Net


def torch_unet(bands: int, classes: int, depth: int, base: int):
    """The reseg U-Net (batch norm, transposed-conv upsampling) in PyTorch."""
    import torch
    from torch import nn

    def double_conv(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [base * 2**i for i in range(depth + 1)]
            self.enc = nn.ModuleList(
                [double_conv(bands if i == 0 else widths[i - 1], widths[i]) for i in range(depth)]
            )
            self.bottleneck = double_conv(widths[depth - 1], widths[depth])
            self.up = nn.ModuleList(
                [nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)]
            )
            self.dec = nn.ModuleList([double_conv(2 * widths[i], widths[i]) for i in range(depth)])
            self.classifier = nn.Conv2d(base, classes, 1)

        def forward(self, x):
            skips = []
            for block in self.enc:
                x = block(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.bottleneck(x)
            for i in reversed(range(depth)):
                x = self.dec[i](torch.cat([skips[i], self.up[i](x)], dim=1))
            return torch.softmax(self.classifier(x), dim=1)

    return UNet().eval()


def copy_keras_unet(keras_model, net, depth: int) -> None:
    """Copy the Keras U-Net's weights into the PyTorch one (kernels HWIO -> OIHW)."""
    import torch

    def put(param, array):
        param.data.copy_(torch.from_numpy(array))

    def conv(module, name):
        put(module.weight, keras_model.get_layer(name).get_weights()[0].transpose(3, 2, 0, 1))

    def bn(module, name):
        g, b, m, v = keras_model.get_layer(name).get_weights()
        put(module.weight, g), put(module.bias, b)
        put(module.running_mean, m), put(module.running_var, v)

    def double(seq, name):
        conv(seq[0], f"{name}_1_conv"), bn(seq[1], f"{name}_1_bn")
        conv(seq[3], f"{name}_2_conv"), bn(seq[4], f"{name}_2_bn")

    for i in range(depth):
        double(net.enc[i], f"enc{i + 1}")
        double(net.dec[i], f"dec{i + 1}")
        k, bias = keras_model.get_layer(f"dec{i + 1}_up").get_weights()
        put(net.up[i].weight, k.transpose(3, 2, 0, 1)), put(net.up[i].bias, bias)
    double(net.bottleneck, "bottleneck")
    k, bias = keras_model.get_layer("classifier").get_weights()
    put(net.classifier.weight, k.transpose(3, 2, 0, 1)), put(net.classifier.bias, bias)


def torch_variants(keras_model, x, depth: int, base: int, compile_: bool) -> tuple[dict, dict]:
    import numpy as np
    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    net = torch_unet(BANDS, CLASSES, depth, base)
    copy_keras_unet(keras_model, net, depth)
    small = x[:1, :64, :64]
    with torch.inference_mode():
        got = net(torch.from_numpy(small.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    diff = float(np.abs(got - np.asarray(keras_model(small, training=False))).max())
    n_params = sum(p.numel() for p in net.parameters()) + sum(
        b.numel() for n, b in net.named_buffers() if "num_batches" not in n
    )
    check = {"max_abs_diff_vs_keras": diff, "params": n_params}
    nchw = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    cl_net = torch_unet(BANDS, CLASSES, depth, base)
    cl_net.load_state_dict(net.state_dict())
    cl_net = cl_net.to(memory_format=torch.channels_last)
    cl_x = nchw.contiguous(memory_format=torch.channels_last)

    def run(m, t):
        with torch.inference_mode():
            return m(t)

    from torch.fx.experimental.optimization import fuse

    fused = fuse(cl_net).to(memory_format=torch.channels_last)  # conv + BN folded
    variants = {
        "torch_eager_nchw": lambda: run(net, nchw),
        "torch_eager_channels_last": lambda: run(cl_net, cl_x),
        "torch_eager_channels_last_folded": lambda: run(fused, cl_x),
    }
    if compile_:
        try:
            compiled = torch.compile(fused)
            start = time.perf_counter()
            run(compiled, cl_x)
            check["torch_compile_s"] = time.perf_counter() - start
            variants["torch_compile_channels_last_folded"] = lambda: run(compiled, cl_x)
        except Exception as e:  # a missing compiler must not lose the other figures
            check["torch_compile_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    return variants, check


# --------------------------------------------------------------------- workers


def worker_threads(spec: dict) -> dict:
    """U-Net with and without XLA under one TF thread setting."""
    tf = tf_setup(spec["intra"], spec["inter"])
    import numpy as np

    from reseg.models import build_model

    model = build_model("unet", CLASSES, BANDS)
    x = np.random.default_rng(0).normal(size=(BATCH, SIZE, SIZE, BANDS)).astype("float32")
    variants = tf_variants(model, x, tf, ("keras", "tf_function_xla_folded"))
    mm, mm_gflop = matmul_fn(tf)
    times = timed_rounds({**variants, "matmul": mm}, spec["rounds"])
    return {k: min(v) for k, v in times.items()}


def worker_main(spec: dict) -> dict:
    """Everything else under the chosen TF thread setting."""
    tf = tf_setup(spec["intra"], spec["inter"])
    import numpy as np

    from reseg.models import build_model, names

    models = spec["models"] or names()
    spec["models"] = ["unet"] + [m for m in models if m != "unet"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, SIZE, SIZE, BANDS)).astype("float32")
    mm, mm_gflop = matmul_fn(tf)
    out: dict = {"models": {}, "matmul_s": []}
    for name in spec["models"]:
        model = build_model(name, CLASSES, BANDS)
        gflop = conv_gflop(model, SIZE, SIZE)
        variants = tf_variants(model, x, tf, UNET_VARIANTS if name == "unet" else VARIANTS)
        check = {}
        if name == "unet" and spec["torch"]:
            extra, check = torch_variants(model, x, 4, 32, spec["torch_compile"])
            variants.update(extra)
        rounds = spec["rounds"] * (2 if name == "unet" else 1)
        times = timed_rounds({**variants, "matmul": mm}, rounds)
        out["matmul_s"] += times.pop("matmul")
        out["models"][name] = {
            "params": int(model.count_params()),
            "gflop_per_tile": gflop,
            "seconds": {k: min(v) for k, v in times.items()},
            "seconds_median": {k: float(np.median(v)) for k, v in times.items()},
            "torch_check": check,
        }
        del model, variants
    out["matmul_gflop"] = mm_gflop
    out["names"] = names()
    return out


PRECISION_VARIANTS = ("float32", "float32_xla", "bfloat16", "bfloat16_xla", "float16")


def worker_precision(spec: dict) -> dict:
    """The U-Net (batch norm folded) and matmul in float32, bfloat16 and float16."""
    tf = tf_setup(spec["intra"], spec["inter"])
    import numpy as np

    from reseg.inference.precision import cpu_flags, native_bfloat16
    from reseg.models import build_model, fold_batch_norm
    from reseg.models.precision import with_precision

    model = build_model("unet", CLASSES, BANDS)
    folded = fold_batch_norm(model)
    x = np.random.default_rng(0).normal(size=(BATCH, SIZE, SIZE, BANDS)).astype("float32")
    xt = tf.constant(x)
    fns, classes = {}, {}
    for key in PRECISION_VARIANTS:
        p = key.removesuffix("_xla")
        m = with_precision(folded, p)
        fn = tf.function(
            lambda t, m=m: tf.cast(m(t, training=False), tf.float32),
            jit_compile=key.endswith("_xla"),
        )
        classes[key] = fn(xt).numpy().argmax(-1)
        fns[key] = lambda fn=fn: fn(xt).numpy()
    mms = {}
    for dtype in ("float32", "bfloat16", "float16"):
        mms[f"matmul_{dtype}"], mm_gflop = matmul_fn(tf, dtype)
    times = timed_rounds({**fns, **mms}, spec["rounds"])
    native, where = native_bfloat16()
    return {
        "cpu_flags": list(cpu_flags()),
        "native_bfloat16": native,
        "device": where,
        "gflop_per_tile": conv_gflop(model, SIZE, SIZE),
        "matmul_gflop": mm_gflop,
        "seconds": {k: min(v) for k, v in times.items()},
        "agreement_with_float32": {
            k: float((c == classes["float32"]).mean()) for k, c in classes.items()
        },
    }


def summarise_precision(r: dict) -> dict:
    px = BATCH * SIZE * SIZE
    mm = {
        d: r["matmul_gflop"] / r["seconds"][f"matmul_{d}"]
        for d in ("float32", "bfloat16", "float16")
    }
    rows = []
    for key in PRECISION_VARIANTS:
        p = key.removesuffix("_xla")
        s = r["seconds"][key]
        rate = BATCH * r["gflop_per_tile"] / s
        rows.append(
            {
                "variant": key,
                "seconds_per_batch": round(s, 4),
                "mpx_per_s": round(px / s / 1e6, 3),
                "gflop_per_s": round(rate, 1),
                "share_of_matmul_same_precision": round(rate / mm[p], 3),
                "speed_vs_float32": round(r["seconds"]["float32"] / s, 2),
                "class_agreement_untrained": round(r["agreement_with_float32"][key], 5),
            }
        )
    return {
        "cpu_flags": r["cpu_flags"],
        "native_bfloat16": r["native_bfloat16"],
        "device": r["device"],
        "matmul_gflop_per_s": {k: round(v, 1) for k, v in mm.items()},
        "unet": rows,
    }


def print_precision(p: dict) -> None:
    flags = ", ".join(p["cpu_flags"]) or "none"
    print(
        f"\nprecision: processor flags {flags}; bfloat16 native: {p['native_bfloat16']} ({p['device']})"
    )
    print(
        "matmul 2048^2 GFLOP/s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in p["matmul_gflop_per_s"].items())
    )
    print(
        f"{'U-Net (BN folded)':18} {'s/batch':>8} {'Mpx/s':>7} {'GFLOP/s':>8} {'/matmul':>8} {'x fp32':>7} {'classes = fp32':>15}"
    )
    for r in p["unet"]:
        print(
            f"{r['variant']:18} {r['seconds_per_batch']:>8.3f} {r['mpx_per_s']:>7.3f} {r['gflop_per_s']:>8.1f} "
            f"{r['share_of_matmul_same_precision']:>8.0%} {r['speed_vs_float32']:>7.2f} "
            f"{100 * r['class_agreement_untrained']:>14.2f}%"
        )  # fmt: skip


def run_worker(kind: str, spec: dict) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------- report


def summarise(threads: list[dict], main: dict, setting: tuple[int, int]) -> dict:
    mm_rate = main["matmul_gflop"] / min(main["matmul_s"])
    px = BATCH * SIZE * SIZE
    rows = []
    for name, m in main["models"].items():
        keras_keys = [k for k in m["seconds"] if not k.startswith("torch")]
        best = min(keras_keys, key=m["seconds"].get)
        s = m["seconds"][best]
        rate = BATCH * m["gflop_per_tile"] / s
        rows.append(
            {
                "model": name,
                "params": m["params"],
                "gflop_per_tile": round(m["gflop_per_tile"], 3),
                "best_variant": best,
                "seconds_per_batch": round(s, 4),
                "mpx_per_s": round(px / s / 1e6, 3),
                "gflop_per_s": round(rate, 2),
                "share_of_matmul": round(rate / mm_rate, 3),
                "variants_s": {k: round(v, 4) for k, v in m["seconds"].items()},
            }
        )
    unet = main["models"].get("unet", {})
    torch_keys = [k for k in unet.get("seconds", {}) if k.startswith("torch")]
    comparison = {}
    if torch_keys:
        keras_best = min(v for k, v in unet["seconds"].items() if not k.startswith("torch"))
        comparison = {
            "reseg_vs_" + k: round(unet["seconds"][k] / keras_best, 3) for k in torch_keys
        }
        comparison["reseg_vs_best_torch"] = round(
            min(unet["seconds"][k] for k in torch_keys) / keras_best, 3
        )
        comparison["torch_check"] = {**unet["torch_check"], "keras_params": unet["params"]}
    return {
        "settings": {"bands": BANDS, "classes": CLASSES, "tile": SIZE, "batch": BATCH},
        "cpus": os.cpu_count(),
        "tf_threads_intra_inter": list(setting),
        "thread_trials": threads,
        "matmul_gflop_per_s": round(mm_rate, 2),
        "models": rows,
        "unet_vs_pytorch": comparison,
    }


def print_table(result: dict) -> None:
    print(f"\nmatmul 2048^2 float32: {result['matmul_gflop_per_s']:.1f} GFLOP/s; TF threads "
          f"(intra, inter) = {tuple(result['tf_threads_intra_inter'])}; batch {BATCH} x "
          f"{SIZE}^2 x {BANDS} bands, {CLASSES} classes")  # fmt: skip
    head = f"{'model':15} {'params':>11} {'GFLOP/tile':>10} {'Mpx/s':>7} {'GFLOP/s':>8} "
    print(head + f"{'/matmul':>8}  best variant")
    for r in result["models"]:
        print(
            f"{r['model']:15} {r['params']:>11,} {r['gflop_per_tile']:>10.2f} {r['mpx_per_s']:>7.3f} "
            f"{r['gflop_per_s']:>8.1f} {r['share_of_matmul']:>8.0%}  {r['best_variant']}"
        )
    for r in result["models"]:
        if r["model"] == "unet":
            print("\nU-Net variants, s/batch:", json.dumps(r["variants_s"]))
    if result["unet_vs_pytorch"]:
        print("U-Net PyTorch time / reseg time:", json.dumps(result["unet_vs_pytorch"]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per variant")
    parser.add_argument("--models", nargs="*", default=None, help="registry names (default all)")
    parser.add_argument("--quick", action="store_true", help="U-Net only, one thread setting")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-torch-compile", action="store_true")
    _env.add_arguments(parser)
    args = parser.parse_args(argv)
    sizes(args.smoke)
    run = _env.Run(args)
    if run.smoke:
        args.quick, args.rounds, args.no_torch_compile = True, 1, True
    has_torch = importlib.util.find_spec("torch") is not None
    if not has_torch and not args.no_torch:
        print("torch is not installed (pip install -e '.[bench]'): PyTorch side skipped")
    settings = [] if run.smoke else THREADS[:1] if args.quick else THREADS
    trials = [{"intra": i, "inter": j} for i, j in THREADS[:1]] if run.smoke else []
    for intra, inter in settings:
        t = run_worker("threads", {"intra": intra, "inter": inter, "rounds": 2, "smoke": run.smoke})
        trials.append({"intra": intra, "inter": inter, **{k: round(v, 4) for k, v in t.items()}})
        print(f"threads intra={intra} inter={inter}: {trials[-1]}", flush=True)
    # by U-Net time, not its share of matmul: one intra-op thread slows matmul more
    best = min(trials, key=lambda t: min(t.get("keras", 0), t.get("tf_function_xla_folded", 0)))
    setting = (best["intra"], best["inter"])
    spec = {
        "intra": setting[0],
        "inter": setting[1],
        "rounds": args.rounds,
        "models": args.models or (["unet"] if args.quick else None),  # None: the registry
        "torch": has_torch and not args.no_torch,
        "torch_compile": not args.no_torch_compile,
        "smoke": run.smoke,
    }
    result = summarise(trials, run_worker("main", spec), setting)
    result["torch"] = spec["torch"]
    result["precision"] = summarise_precision(run_worker("precision", spec))
    print_table(result)
    print_precision(result["precision"])
    run.write("models.json", result, used=("torch",) if spec["torch"] else ())
    return result


def sizes(smoke: bool) -> None:
    """Tiles of the run: the benchmark's, or `--smoke`'s tiny ones (for every worker)."""
    global SIZE, BATCH
    SIZE, BATCH = (SMOKE_SIZE, SMOKE_BATCH) if smoke else (256, 8)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker = {"threads": worker_threads, "main": worker_main, "precision": worker_precision}[
            sys.argv[2]
        ]
        spec = json.loads(sys.argv[3])
        sizes(spec.get("smoke", False))
        print(json.dumps(worker(spec)))
    else:
        main()
