"""The pipeline: the only place that wires components together.

`STEPS` declares the steps by name in order; `run_pipeline` runs them, each
skipped by its component when its manifest matches (resume / caching).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reseg.config import Config

log = logging.getLogger(__name__)


def _tile(cfg: Config, root: Path, beam_args: Sequence[str]) -> Any:
    from reseg.components.tiling import tile

    return tile(cfg, root, beam_args)


def _stats(cfg: Config, root: Path, beam_args: Sequence[str]) -> Any:
    from reseg.components.statistics import compute_stats

    return compute_stats(cfg, root, beam_args)


STEPS: dict[str, Callable[[Config, Path, Sequence[str]], Any]] = {
    "tile": _tile,
    "stats": _stats,
}


def run_pipeline(
    cfg: Config, root: str | Path, beam_args: Sequence[str] = (), steps: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the named steps (default all) in order; return each step's artifact."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(cfg.to_json())
    results: dict[str, Any] = {}
    for name in steps or STEPS:
        started = time.time()
        log.info("step %s", name)
        results[name] = STEPS[name](cfg, root, beam_args)
        log.info("step %s done in %.1f s", name, time.time() - started)
    return results
