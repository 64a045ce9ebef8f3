"""Experiment tracking with MLflow; the only module of reseg that imports mlflow.

A `Run` is a handle on one MLflow run. Components receive a `Run` and log into
it; they never open runs themselves (they know no root). Where a step has no run to
give, it gives an `opener` (`open_run` with its config and root bound), which the
component calls only when it has work to log (an artifact found current opens none):

    with open_run(cfg, root, run_name="pipeline") as parent:      # one per pipeline run
        with parent.nested("r0/fold1") as run:                     # one per round/fold
            train(cfg, tiles, stats, out, fold=1, tracking=run)
    train(cfg, tiles, stats, out, fold=1, open_run=opener(cfg, root))  # a run of its own

`open_run` and `Run.nested` end the run FINISHED when the block completes,
FAILED when it raises, KILLED on Ctrl-C. With `tracking.enabled: false` (or on a
non-chief worker) they yield `NULL_RUN`, whose methods do nothing.

The default store is `sqlite:///<root>/mlflow.db` with artifacts under
`<root>/mlartifacts`; look at it with

    mlflow ui --backend-store-uri sqlite:///<root>/mlflow.db

An `http://host:port` URI logs to an MLflow tracking server instead (the server
stores the artifacts).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from reseg import layout, storage
from reseg.config import Config

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
BATCH = 100  # params or tags per log_batch call (MAX_PARAMS_TAGS_PER_BATCH)
RESUME_TAG = "reseg.resume_key"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings to dotted keys; lists and None as JSON text, cut to MLflow's limit.

    >>> flatten_params({"train": {"batch_size": 8, "augment": {"flips": True}}, "tags": [1, 2]})
    {'train.batch_size': '8', 'train.augment.flips': 'True', 'tags': '[1, 2]'}
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, prefix=f"{name}."))
            continue
        if isinstance(value, str | bool | int | float):
            text = str(value)
        else:
            text = json.dumps(value, default=str)
        out[name] = text[:MAX_PARAM_LENGTH]
    return out


class Run:
    """A handle on one MLflow run, or a no-op handle (`NULL_RUN`).

    Args:
        client: an `mlflow.MlflowClient`, None for the no-op handle.
        run_id: id of the run the handle logs into.
        experiment_id: the run's experiment (nested runs go there too).
    """

    def __init__(
        self, client: Any = None, run_id: str | None = None, experiment_id: str | None = None
    ):
        self._client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    @property
    def enabled(self) -> bool:
        """False for the no-op handle."""
        return self._client is not None

    @property
    def tracking_uri(self) -> str | None:
        return None if self._client is None else self._client.tracking_uri

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log (nested) parameters; see `flatten_params`."""
        if not self.enabled:
            return
        from mlflow.entities import Param

        flat = [Param(k, v) for k, v in flatten_params(params).items()]
        for i in range(0, len(flat), BATCH):
            self._client.log_batch(self.run_id, params=flat[i : i + BATCH], synchronous=True)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        """Log numeric metrics at `step` (e.g. the epoch); None values are left out."""
        if not self.enabled:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_history(self, records: Sequence[Mapping[str, Any]], step_key: str = "epoch") -> None:
        """Log per-step records (e.g. epochs of a resumed training) whose steps the run lacks.

        A metric already logged at a step is not logged again, so a process killed after
        some epochs and resumed into the same run ends with one value per epoch.
        """
        if not self.enabled or not records:
            return
        keys = {
            k
            for r in records
            for k, v in r.items()
            if k != step_key and isinstance(v, int | float) and not isinstance(v, bool)
        }
        have = {k: {m.step for m in self._client.get_metric_history(self.run_id, k)} for k in keys}
        for r in records:
            step = int(r[step_key])
            missing = {k: v for k, v in r.items() if k in keys and step not in have[k]}
            self.log_metrics(missing, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), BATCH):
            self._client.log_batch(self.run_id, tags=items[i : i + BATCH], synchronous=True)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload one file into the run's artifacts (under `artifact_path`)."""
        if self.enabled:
            with _local(path) as local:
                self._client.log_artifact(self.run_id, str(local), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        """Upload a directory's files into the run's artifacts (under `artifact_path`)."""
        if self.enabled:
            with _local(directory) as local:
                self._client.log_artifacts(self.run_id, str(local), artifact_path)

    @contextmanager
    def nested(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Iterator[Run]:
        """A child run of this one (a round/fold of a pipeline run), ended like `open_run`."""
        if not self.enabled:
            yield NULL_RUN
            return
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        info = self._client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={
                MLFLOW_PARENT_RUN_ID: self.run_id,
                **{k: str(v) for k, v in (tags or {}).items()},
            },
        ).info
        with _ended(Run(self._client, info.run_id, self.experiment_id)) as child:
            yield child

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        if self.enabled:
            self._client.set_terminated(self.run_id, status)
            log.debug("MLflow run %s ended %s", self.run_id, status)


NULL_RUN = Run()


@contextmanager
def _ended(run: Run) -> Iterator[Run]:
    try:
        yield run
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except BaseException:
        run.end("FAILED")
        raise
    else:
        run.end("FINISHED")


@contextmanager
def _local(p: str | Path) -> Iterator[Path]:
    """`p`, or a temporary local copy of it when it is on object storage (MLflow uploads
    local files)."""
    with tempfile.TemporaryDirectory(prefix="reseg-mlflow-") as d:
        yield storage.fetch(p, d)  # `p` itself when local


def resolve_uri(cfg: Config, root: str | Path) -> str | None:
    """`tracking.uri`, or the default sqlite store of a local pipeline root (None for a root
    on object storage: no local file to hold the store)."""
    return cfg.tracking.uri or layout.tracking_uri(root)


_UNTRACKED: set[str] = set()
"""Roots on object storage already warned about (no local MLflow store), once per process."""


def _quiet() -> None:
    for name in ("mlflow", "alembic", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # created meanwhile by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextmanager
def open_run(
    cfg: Config,
    root: str | Path,
    *,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
    resume_key: str | None = None,
    reopen: bool = False,
) -> Iterator[Run]:
    """Open a top-level MLflow run of the config's experiment; yields `NULL_RUN` when disabled.

    Args:
        cfg: the pipeline config; `tracking` gives URI and experiment (default `cfg.name`).
        root: pipeline root (default store `sqlite:///<root>/mlflow.db`, artifacts in
            `<root>/mlartifacts` for local stores).
        run_name: name shown in the MLflow UI.
        tags: extra run tags.
        resume_key: when a RUNNING run (one killed before it could end) carries this key,
            log into it again instead of starting a new run; a resumed training continues its run.
        reopen: with `resume_key`, also continue the latest run with the key that has ended
            (set RUNNING again): a study run again after it finished keeps its one run.
    """
    if not cfg.tracking.enabled:
        yield NULL_RUN
        return
    from mlflow import MlflowClient

    _quiet()

    uri = resolve_uri(cfg, root)
    if uri is None:
        _warn_untracked(root)
        yield NULL_RUN
        return
    client = MlflowClient(tracking_uri=uri)
    artifacts = _artifact_location(uri, root)
    exp_id = _experiment_id(client, cfg.tracking.experiment or cfg.name, artifacts)
    run_id = None if resume_key is None else _resumable(client, exp_id, resume_key, reopen)
    if run_id is not None:
        log.info("continuing MLflow run %s (%s)", run_id, run_name)
    else:
        all_tags = {k: str(v) for k, v in (tags or {}).items()}
        if resume_key is not None:
            all_tags[RESUME_TAG] = resume_key
        run_id = client.create_run(exp_id, run_name=run_name, tags=all_tags).info.run_id
        log.info("MLflow run %s (%s) in %s", run_id, run_name, uri)
    with _ended(Run(client, run_id, exp_id)) as run:
        yield run


def _warn_untracked(root: str | Path) -> None:
    """Warn, once per root, that a root on object storage is not tracked (no local store)."""
    if str(root) not in _UNTRACKED:  # a pipeline opens a run per step: say it once
        _UNTRACKED.add(str(root))
        log.warning(
            "%s: a root on object storage has no local MLflow store; not tracking this "
            "run (set tracking.uri to a tracking server, whose artifact store can be in "
            "the same bucket)",
            root,
        )


def _artifact_location(uri: str, root: str | Path) -> str | None:
    """Where a new experiment keeps its artifacts: `<root>/mlartifacts` for a local store
    (a bucket's root: the bucket), None (the server's default) for a tracking server."""
    local = uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri
    if not local:
        return None
    here = storage.path(root) / "mlartifacts"
    return str(here) if storage.is_remote(here) else Path(here).resolve().as_uri()


def _resumable(client: Any, exp_id: str, resume_key: str, reopen: bool) -> str | None:
    """Id of the latest run carrying `resume_key` (RUNNING only unless `reopen`), set
    RUNNING again; None when there is none."""
    status = "" if reopen else " and attributes.status = 'RUNNING'"
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{RESUME_TAG}` = '{resume_key}'{status}",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not found:
        return None
    run_id = found[0].info.run_id
    if found[0].info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    return run_id


class RunOpener(Protocol):
    """`open_run` with its config and root bound (`opener`): what a component calls to open
    a top-level run of its own, when its step gave it none."""

    def __call__(
        self,
        *,
        run_name: str,
        tags: Mapping[str, Any] | None = None,
        resume_key: str | None = None,
    ) -> AbstractContextManager[Run]: ...


def opener(cfg: Config, root: str | Path) -> RunOpener:
    """A `RunOpener` of `cfg`'s experiment in the store of `root` (see `open_run`)."""
    return partial(open_run, cfg, root)


# --- model registry (exports) ------------------------------------------------------------

EXPORT_VERSION_TAG = "reseg.export_version"
EXPORT_FINGERPRINT_TAG = "reseg.export_fingerprint"


def _registry_versions(run: Run, name: str) -> dict[int, Any]:
    """Visible (not deleted) versions of registered model `name`: number -> ModelVersion."""
    found = run._client.search_model_versions(f"name = '{name}'")
    return {int(mv.version): mv for mv in found}


def latest_registered_version(run: Run, name: str) -> int:
    """Highest visible version of registered model `name`; 0 when none or tracking is off."""
    if not run.enabled:
        return 0
    _quiet()
    return max(_registry_versions(run, name), default=0)


def register_export(
    run: Run,
    name: str,
    version: int,
    source: str,
    *,
    fingerprint: str | None = None,
    backfill: Mapping[int, Path] | None = None,
    description: str | None = None,
) -> int | None:
    """Register export `version` of model `name` so that its registry version is `version`.

    The registry numbers versions itself (highest ever used + 1), so numbers are
    matched by creating versions in order:

    - already registered (a version `version` tagged with the same fingerprint): nothing to do;
    - registry behind (exports were made with tracking off): versions in between are
      registered first, from `backfill[k]` (the export folder k, tagged `reseg.backfilled`)
      or, when that folder is gone, as a placeholder that is deleted at once (a deleted
      version keeps its number, so the count goes on);
    - registry ahead (the exporter picks `max(on disk, registry) + 1`, so only versions
      deleted at the top of the registry, which the registry hides, get here): the version
      gets the next registry number, a warning says so, and the tag
      `reseg.export_version` keeps the export version.

    Args:
        run: the run that logged the export (its id is recorded); `NULL_RUN`: nothing happens.
        name: registered model name (the export's `model_name`).
        version: the export's version number.
        source: where the registry points, e.g. the run's artifact URI of the export.
        fingerprint: the export's fingerprint (tag `reseg.export_fingerprint`).
        backfill: export folders of older versions, by number.
        description: shown in the registry UI.

    Returns:
        The registry version (equal to `version` except in the "ahead" case), None when disabled.
    """
    if not run.enabled:
        return None
    _quiet()
    client = run._client
    _ensure_registered_model(client, name)
    existing = _registry_versions(run, name)
    mv = existing.get(version)
    if mv is not None and fingerprint and mv.tags.get(EXPORT_FINGERPRINT_TAG) == fingerprint:
        return version
    _fill_gap(client, name, max(existing, default=0) + 1, version, source, backfill)
    tags = {EXPORT_VERSION_TAG: str(version)}
    if fingerprint:
        tags[EXPORT_FINGERPRINT_TAG] = fingerprint
    mv = client.create_model_version(
        name, source, run_id=run.run_id, tags=tags, description=description
    )
    got = int(mv.version)
    _log_registered(name, version, got, source)
    return got


def _ensure_registered_model(client: Any, name: str) -> None:
    """Create registered model `name` unless it exists."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="reseg exports (TF Serving SavedModels)")
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _fill_gap(
    client: Any,
    name: str,
    following: int,
    version: int,
    source: str,
    backfill: Mapping[int, Path] | None,
) -> None:
    """Register versions `following` .. `version - 1` of `name` (the registry is behind):
    from `backfill[k]` when that folder exists, else as a placeholder deleted at once."""
    while following < version:
        folder = (backfill or {}).get(following)
        if folder is not None and Path(folder).exists():
            got = client.create_model_version(
                name,
                Path(folder).resolve().as_uri(),
                tags={EXPORT_VERSION_TAG: str(following), "reseg.backfilled": "true"},
                description=f"export version {following}, made while tracking was off",
            )
        else:
            got = client.create_model_version(
                name, source, tags={EXPORT_VERSION_TAG: str(following), "reseg.placeholder": "true"}
            )
            client.delete_model_version(name, got.version)
        log.info(
            "registry: %s version %s stands for export version %d", name, got.version, following
        )
        following = int(got.version) + 1


def _log_registered(name: str, version: int, got: int, source: str) -> None:
    """Say which registry version export `version` became (a warning when they differ)."""
    if got != version:
        log.warning(
            "registry: %s export version %d became registry version %d (the registry had used "
            "numbers up to %d, some deleted); tag %s holds the export version",
            name,
            version,
            got,
            got - 1,
            EXPORT_VERSION_TAG,
        )
    else:
        log.info("registered %s version %d (%s)", name, got, source)


def artifact_uri(run: Run, artifact_path: str = "") -> str | None:
    """URI of `artifact_path` among the run's artifacts (None when tracking is off)."""
    if not run.enabled:
        return None
    base = run._client.get_run(run.run_id).info.artifact_uri.rstrip("/")
    return f"{base}/{artifact_path}" if artifact_path else base
