"""What every benchmark shares: `--smoke`, where results go, and the machine they ran on.

A figure is only worth comparing with the processor, the libraries and the load it was
measured under, so every result file gets an `environment` block (`record`): the
processor's model and speed flags and the library versions (`reseg.environment`, the
same facts `reseg info` prints), the Python and system, and the load average before and
after the run (a load near the core count means the timings were shared).

`--smoke` runs a benchmark in seconds on tiny sizes, so a test can run every one of them
(tests/test_bench_smoke.py) and they cannot rot; its figures mean nothing. Smoke results
go to bench/results/smoke/ unless `--results` says otherwise, never over a real result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from reseg import environment  # noqa: E402  (the repository's reseg, as the benches use)

RESULTS = REPO / "bench" / "results"
BENCH_LIBRARIES = ("reseg", "tensorflow", "keras", "numpy", "apache-beam")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--smoke` and `--results`, the options every benchmark takes."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds on tiny sizes: checks that the benchmark runs; its figures mean nothing",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of the result JSON (default bench/results, bench/results/smoke with --smoke)",
    )


class Run:
    """One benchmark run: the load average at its start, and where its result goes."""

    def __init__(self, args: argparse.Namespace):
        self.smoke = bool(args.smoke)
        self.folder = args.results or (RESULTS / "smoke" if self.smoke else RESULTS)
        self.load_before = environment.load_average()
        self.started = time.time()

    def path(self, name: str) -> Path:
        """Where result file `name` (e.g. "models.json") goes."""
        return self.folder / name

    def write(self, name: str, result: dict, used: tuple[str, ...] = ()) -> Path:
        """Write `result` with its `environment` block as JSON; return the file.

        `used`: further distributions whose versions matter, e.g. torch where a worker
        process of the run imported it.
        """
        out = self.path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**result, "environment": self.record(used)}, indent=2))
        print(f"wrote {out}")
        return out

    def record(self, used: tuple[str, ...] = ()) -> dict:
        """The `environment` block (module docstring)."""
        versions = environment.versions(BENCH_LIBRARIES)
        if "torch" in sys.modules:  # only where this run used it
            versions["torch"] = environment.version("torch")
        versions.update(environment.versions(used))
        return {
            **environment.machine(),
            "versions": versions,
            "load_average_before": self.load_before,
            "load_average_after": environment.load_average(),
            "wall_s": round(time.time() - self.started, 1),
            "smoke": self.smoke,
        }
