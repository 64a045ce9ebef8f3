"""`reseg info [--json]`: what this installation runs with, for bug reports and speed questions.

Versions of reseg and its main libraries (GDAL as rasterio links it), the processor and
the flags that decide its speed, the GPUs TensorFlow sees, what `auto` picks for each
precision setting and why, the local cache and the object-store settings found. The
same facts as the benchmarks' result files (`reseg.environment`); `auto` is decided by
the rule every command uses (`reseg.inference.precision`), not a copy of it. Secrets
are never printed: of credentials only where they come from.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reseg import environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def gather() -> dict[str, Any]:
    """Everything `reseg info` reports, as JSON-ready values."""
    import rasterio

    from reseg.config import ExportConfig, PredictConfig, RoundsConfig, TrainConfig
    from reseg.inference import precision

    versions = environment.versions()
    versions["GDAL"] = rasterio.__gdal_version__
    choice, why = precision.auto_choice()
    settings = {
        "predict.precision": PredictConfig().precision,
        "export.precision": ExportConfig().precision,
        "rounds.score_precision": RoundsConfig().score_precision,
    }
    return {
        "versions": versions,
        "machine": environment.machine(),
        "gpus": [
            {"name": name, "compute_capability": ".".join(map(str, cc)) if cc else None}
            for name, cc in precision.gpus()
        ],
        "precision": {
            "auto": {"choice": choice, "why": why},
            "settings": {
                k: {"default": v, "runs_in": choice if v == "auto" else v}
                for k, v in settings.items()
            },
            "train.precision": {
                "default": TrainConfig().precision,
                "runs_in": precision.train_policy(choice),
            },
        },
        "cache": environment.cache_usage(),
        "storage": environment.storage_settings(),
    }


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _runs_in(setting: dict[str, str]) -> str:
    """One precision setting's row: its default and what it runs in here."""
    row = f"default {setting['default']}, runs in {setting['runs_in']}"
    if setting["default"] == "auto" and setting["runs_in"] != "float32":
        row += " (float32 for a model whose classes disagree: the agreement guard)"
    return row


def render(info: dict[str, Any]) -> str:
    """`info` as aligned `key: value` lines under a heading per section."""
    m, p, c, s = info["machine"], info["precision"], info["cache"], info["storage"]
    gpus = [f"{g['name']} (compute capability {g['compute_capability']})" for g in info["gpus"]]
    auto = p["auto"]
    sections: dict[str, dict[str, Any]] = {
        "versions": {k: v or "not installed" for k, v in info["versions"].items()},
        "machine": {
            "processor": m["processor"],
            "flags": " ".join(m["cpu_flags"]) or "none found",
            "cores": m["cpu_count"],
            "system": m["system"],
            "python": m["python"],
            "GPUs": ", ".join(gpus) or "none",
        },
        "precision": {
            "auto": f"{auto['choice']} ({auto['why']})",
            **{k: _runs_in(v) for k, v in p["settings"].items()},
            "train.precision": f"default {p['train.precision']['default']}, "
            f"trains in {p['train.precision']['runs_in']} (float32 with jit_compile on a CPU)",
        },
        "cache": {
            "folder": f"{c['dir']} ({'RESEG_CACHE_DIR' if c['set_by'] != 'default' else 'default; RESEG_CACHE_DIR overrides'})",
            "size": f"{_size(c['bytes'])} in {c['files']} files"
            if c["exists"]
            else "empty (no folder yet)",
            "bound": f"{_size(c['bound_bytes'])} (RESEG_CACHE_BYTES)",
        },
        "storage": {
            "AWS_ENDPOINT_URL": s["AWS_ENDPOINT_URL"] or "not set (AWS S3)",
            "AWS_PROFILE": s["AWS_PROFILE"] or "not set",
            "AWS region": s["AWS_REGION"] or "not set",
            "AWS credentials": ", ".join(s["aws_credentials"]) or "none found",
            "STORAGE_EMULATOR_HOST": s["STORAGE_EMULATOR_HOST"] or "not set",
            "GOOGLE_APPLICATION_CREDENTIALS": s["GOOGLE_APPLICATION_CREDENTIALS"] or "not set",
            "Google default credentials": "found" if s["google_default_credentials"] else "none",
        },
    }
    width = max(len(k) for rows in sections.values() for k in rows)
    lines = []
    for title, rows in sections.items():
        lines.append(title)
        lines += [f"  {k + ':':<{width + 1}} {v}" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    info = gather()
    sys.stdout.write(json.dumps(info, indent=2) + "\n" if args.json else render(info))
    return 0
