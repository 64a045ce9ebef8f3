"""Which floating-point precision inference runs in, and what the hardware offers.

`resolve("auto")` picks `bfloat16` where the hardware computes it natively and
`float32` elsewhere, and logs its choice once per process:

- a GPU of compute capability >= 8.0 (Ampere and later have bfloat16 tensor cores);
- else the CPU, when /proc/cpuinfo lists `amx_bf16` (Intel AMX tiles) or `avx512_bf16`
  (AVX-512 BF16 dot products): oneDNN, which TensorFlow uses on x86, then runs
  bfloat16 convolutions and matmuls at 2 to 4 times the float32 rate.

Elsewhere bfloat16 still runs (emulated), only slower than float32, so `auto` keeps
float32. `float16` is never picked by `auto`: on CPUs without AMX-FP16 it is
emulated, and on GPUs bfloat16 needs no care about range.

XLA (`jit_compile`) on the CPU lowers bfloat16 convolutions without oneDNN (measured
6x slower than oneDNN here), so `KerasBackend` keeps XLA off for bfloat16 and
float16 on a CPU (`xla_ok`).
"""

from __future__ import annotations

import functools
import logging

from reseg import environment

log = logging.getLogger(__name__)

CHOICES = ("auto", "float32", "bfloat16", "float16")
"""Values of `predict.precision`, `export.precision` and `rounds.score_precision`."""

CPU_FLAGS = ("amx_bf16", "amx_fp16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f")
"""The /proc/cpuinfo flags reported (bench tables, logs)."""

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The flags of `CPU_FLAGS` this processor has (empty where /proc/cpuinfo is missing).

    Read by `reseg.environment`, the one reader of /proc/cpuinfo (`reseg info`, benchmarks).
    """
    return environment.cpu_flags(CPU_FLAGS, cpuinfo)


@functools.cache
def gpus() -> tuple[tuple[str, tuple[int, int] | None], ...]:
    """(name, compute capability) of every visible GPU."""
    import tensorflow as tf

    out = []
    for dev in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(dev)
        out.append((details.get("device_name", dev.name), details.get("compute_capability")))
    return tuple(out)


def native_bfloat16() -> tuple[bool, str]:
    """(True, where) when bfloat16 runs natively on the device TF will use, else (False, why)."""
    found = gpus()
    if found:
        name, cc = found[0]
        if cc is not None and tuple(cc) >= (8, 0):
            return True, f"GPU {name} (compute capability {cc[0]}.{cc[1]})"
        return False, f"GPU {name} has no bfloat16 units (compute capability {cc})"
    flags = [f for f in cpu_flags() if f in NATIVE_BF16_FLAGS]
    if flags:
        return True, f"CPU with {', '.join(flags)}"
    return False, "CPU without AMX-BF16 or AVX-512 BF16"


def auto_choice() -> tuple[str, str]:
    """(what `auto` resolves to here, why): the rule of the module docstring, unlogged
    (`reseg info` shows it)."""
    native, where = native_bfloat16()
    return ("bfloat16" if native else "float32"), where


@functools.cache
def _auto() -> str:
    choice, where = auto_choice()
    log.info("precision auto: %s (%s)", choice, where)
    return choice


def resolve(precision: str) -> str:
    """`precision` of `CHOICES` as a concrete one: `auto` becomes bfloat16 or float32."""
    if precision not in CHOICES:
        raise ValueError(
            f"Argument `precision` must be one of {CHOICES}. Received: precision={precision!r}"
        )
    return _auto() if precision == "auto" else precision


TRAIN_CHOICES = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
"""Values of `train.precision` (Keras dtype policies, and `auto`)."""


def resolve_train(precision: str, jit_compile: bool = False) -> str:
    """`train.precision` as a Keras dtype policy: `auto` becomes `mixed_bfloat16` where
    bfloat16 is native (the rule of `resolve`) and `float32` elsewhere.

    With `jit_compile` on a CPU `auto` stays float32: XLA lowers bfloat16 convolutions
    without oneDNN (`xla_ok`). Accuracy is level: mixed_bfloat16 - float32 round-0 mIoU
    measured over 3 seeds x 4 folds was -0.001 [-0.007, +0.005] on Sentinel-2 and
    +0.000 [-0.005, +0.005] on Vaihingen (docs/benchmarks.md).
    """
    if precision not in TRAIN_CHOICES:
        raise ValueError(
            f"Argument `precision` must be one of {TRAIN_CHOICES}. Received: precision={precision!r}"
        )
    if precision != "auto":
        return precision
    policy = train_policy(resolve("auto"), jit_compile)
    if policy == "float32" and jit_compile and resolve("auto") != "float32":
        _log_once("train.precision auto: float32 (jit_compile on a CPU compiles bfloat16 slowly)")
    return policy


def train_policy(auto: str, jit_compile: bool = False) -> str:
    """The training policy of `auto` when inference's `auto` is `auto` (unlogged; `reseg info`)."""
    if auto == "float32" or (jit_compile and not xla_ok("bfloat16")):
        return "float32"
    return "mixed_bfloat16"


@functools.cache
def _log_once(message: str) -> None:
    log.info(message)


def xla_ok(precision: str) -> bool:
    """Whether XLA should compile a model in `precision` here (module docstring)."""
    return precision == "float32" or bool(gpus())


def pinned_section(section: dict, key: str = "precision", guard_key: str | None = None) -> dict:
    """A config section's dump for a fingerprint, `auto` replaced by what it resolves to here.

    A fingerprint names what was computed, and `auto` computes float32 on one machine and
    bfloat16 on another. Pinned, a config that leaves the precision unset (`auto`, the
    default) fingerprints like one that set float32 where `auto` is float32, so roots made
    before `auto` became the default stay current there. `guard_key` (the threshold of
    `reseg.inference.guard`, a field newer than the fingerprints) counts only where `auto`
    resolves to bfloat16, and is dropped elsewhere for the same reason.
    """
    out = dict(section)
    auto = out.get(key) == "auto"
    if auto:
        out[key] = resolve("auto")
    if guard_key and not (auto and out[key] != "float32"):
        out.pop(guard_key, None)
    return out


def pinned_config(dump: dict) -> dict:
    """A whole config's dump with `pinned_section` applied to predict, rounds and export,
    and `train.precision` pinned to the policy it resolves to (`resolve_train`)."""
    out = dict(dump)
    train = out.get("train")
    if isinstance(train, dict) and train.get("precision") == "auto":
        out["train"] = {
            **train,
            "precision": resolve_train("auto", bool(train.get("jit_compile", False))),
        }
    for section, key, guard_key in (
        ("predict", "precision", "min_agreement"),
        ("rounds", "score_precision", None),
        ("export", "precision", None),
    ):
        if isinstance(out.get(section), dict):
            out[section] = pinned_section(out[section], key, guard_key)
    return out
