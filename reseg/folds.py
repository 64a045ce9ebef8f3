"""Folds: which models a step works on, and the one `--fold` parser.

A fold is an `int` k, the models trained without fold k's tiles and evaluated on
fold k's pixels, or `None`, the models trained on every tile with nothing held out
(their folder is `full`: `rounds/r<r>/full/`). Every step command takes `--fold`
with one meaning:

- absent: the folds of the config's `rounds.folds` (what `reseg run` does);
- `k`: fold k;
- `all`: every fold 0..K-1 in turn (K = `tiling.folds`);
- `full`: the models trained on every tile (steps that evaluate refuse it).

Pixels of a fold-k model have three roles, by spatial block (`validation_fold`):
evaluation (fold k: the reported metrics and nothing else), validation (fold
(k + 1) mod K: early stopping, best-epoch restore, merge weights, stopping rounds)
and training (every other fold). With K < 3 there is no validation fold.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from reseg.errors import ConfigError
from reseg.layout import FULL

log = logging.getLogger(__name__)

Fold = int | None
"""Evaluation fold k, or None for the models trained on every tile (`full`)."""


def parse_folds(
    text: str | None, k: int, default: Sequence[int], *, allow_full: bool = True
) -> list[Fold]:
    """The folds named by a `--fold` value (module docstring); `k` is `tiling.folds`."""
    if text is None:
        return list(default)
    if text == "all":
        return list(range(k))
    if text == FULL:
        if not allow_full:
            raise ConfigError(
                f"--fold {FULL}: the models trained on every tile have no evaluation pixels; "
                "name a fold k or 'all'"
            )
        return [None]
    try:
        fold = int(text)
    except ValueError:
        raise ConfigError(
            f"--fold must be a fold number, 'all' or '{FULL}'; received {text!r}"
        ) from None
    if not 0 <= fold < k:
        raise ConfigError(f"--fold must be in 0..{k - 1} (tiling.folds = {k}), received {fold}")
    return [fold]


def validation_fold(fold: Fold, k: int) -> int | None:
    """The fold whose pixels validate the models of evaluation fold `fold` (module docstring).

    (fold + 1) mod k: a whole fold of spatial blocks drawn from the training folds, so
    no evaluation pixel chooses an epoch, a merge weight or when rounds stop. None for
    the `full` models and when k < 3 (a validation fold would leave nothing to train on).
    """
    if fold is None or k < 3:
        return None
    return (fold + 1) % k


def training_folds(fold: Fold, k: int) -> list[int]:
    """The folds whose pixels train the models of evaluation fold `fold`."""
    held = {fold, validation_fold(fold, k)} - {None}
    return [f for f in range(k) if f not in held]


def held_folds(fold: Fold, k: int) -> tuple[int, ...]:
    """The folds whose pixels never train the models of `fold`: evaluation and validation."""
    return tuple(f for f in (fold, validation_fold(fold, k)) if f is not None)


@functools.cache
def warn_no_validation(k: int) -> None:
    """One warning line per process when K < 3 leaves no validation fold."""
    log.warning(
        "tiling.folds = %d: no validation fold (it needs 3 or more), so no early stopping or "
        "best-epoch restore, equal merge weights and no rounds.stop_when_no_gain",
        k,
    )
