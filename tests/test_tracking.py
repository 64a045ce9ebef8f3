"""reseg.tracking against a real MLflow sqlite store."""

from __future__ import annotations

import logging

import pytest

from reseg import layout, tracking
from reseg.config import parse_config


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One pipeline root (one sqlite store) for the module: creating a store takes seconds."""
    return tmp_path_factory.mktemp("store")


def _cfg(tmp_path, name="tracking-test", **tracking_section):
    return parse_config(
        {
            "name": name,
            "data": {
                "scenes": [{"image": str(tmp_path / "a.tif")}],
                "classes": [{"name": "a"}, {"name": "b"}],
            },
            "tracking": tracking_section,
        }
    )


def _client(root):
    from mlflow import MlflowClient

    return MlflowClient(layout.tracking_uri(root))


def test_flatten_params_dotted_keys_and_json():
    flat = tracking.flatten_params(
        {
            "train": {"batch_size": 8, "augment": {"flips": True}, "weights": [1.0, 2.0]},
            "x": None,
            "e": {},
        }
    )
    assert flat == {
        "train.batch_size": "8",
        "train.augment.flips": "True",
        "train.weights": "[1.0, 2.0]",
        "x": "null",
        "e": "{}",
    }
    assert len(tracking.flatten_params({"long": "x" * 10_000})["long"]) == tracking.MAX_PARAM_LENGTH


def test_run_finished_with_params_metrics_artifacts_and_nested_child(store, tmp_path):
    cfg = _cfg(store, "finished")
    (tmp_path / "note.txt").write_text("hello")
    with tracking.open_run(cfg, store, run_name="parent", tags={"k": "v"}) as parent:
        assert parent.enabled
        parent.log_params({"train": {"batch_size": 8}})
        parent.log_metrics({"loss": 0.5, "skipped": None}, step=1)
        parent.log_metrics({"loss": 0.25}, step=2)
        parent.log_artifact(tmp_path / "note.txt")
        with parent.nested("child", tags={"fold": 1}) as child:
            child.log_metrics({"miou": 0.7}, step=1)
    client = _client(store)
    p = client.get_run(parent.run_id)
    assert p.info.status == "FINISHED"
    assert p.data.params == {"train.batch_size": "8"}
    assert [m.value for m in client.get_metric_history(parent.run_id, "loss")] == [0.5, 0.25]
    assert "skipped" not in p.data.metrics
    assert [a.path for a in client.list_artifacts(parent.run_id)] == ["note.txt"]
    assert p.info.artifact_uri.startswith((store.resolve() / "mlartifacts").as_uri())
    c = client.get_run(child.run_id)
    assert c.info.status == "FINISHED"
    assert c.data.tags["mlflow.parentRunId"] == parent.run_id
    assert c.data.tags["fold"] == "1"
    assert c.info.experiment_id == p.info.experiment_id


def test_failing_block_ends_failed_and_child_too(store):
    cfg = _cfg(store, "failed")
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.open_run(cfg, store, run_name="fails") as run:
            with run.nested("child") as child:
                raise RuntimeError("boom")
    client = _client(store)
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert client.get_run(child.run_id).info.status == "FAILED"


def test_resume_key_continues_a_run_left_running(store):
    cfg = _cfg(store, "resumed")
    client = _client(store)
    with tracking.open_run(cfg, store, run_name="first", resume_key="abc") as first:
        pass
    # a run whose process died: created, never ended
    dead = client.create_run(
        first.experiment_id, run_name="dead", tags={tracking.RESUME_TAG: "k1"}
    ).info.run_id
    with tracking.open_run(cfg, store, run_name="again", resume_key="k1") as again:
        assert again.run_id == dead
    with tracking.open_run(cfg, store, run_name="other", resume_key="abc") as other:
        assert other.run_id != first.run_id  # finished runs are not reopened
    assert client.get_run(dead).info.status == "FINISHED"


def test_disabled_tracking_yields_null_run_and_writes_nothing(tmp_path):
    cfg = _cfg(tmp_path, enabled=False)
    with tracking.open_run(cfg, tmp_path, run_name="off") as run:
        assert run is tracking.NULL_RUN and not run.enabled
        run.log_params({"a": 1})
        run.log_metrics({"b": 2.0}, step=1)
        with run.nested("child") as child:
            assert child is tracking.NULL_RUN
    assert not (tmp_path / "mlflow.db").exists()


def test_a_root_on_object_storage_is_reported_untracked_once(tmp_path, caplog):
    """A pipeline opens a run per step; the warning that none is tracked comes once."""
    cfg = _cfg(tmp_path)
    root = "s3://reseg-test-bucket/untracked-once"
    with caplog.at_level(logging.WARNING, logger="reseg.tracking"):
        for _ in range(3):
            with tracking.open_run(cfg, root, run_name="step") as run:
                assert run is tracking.NULL_RUN
        with tracking.open_run(cfg, root + "-another", run_name="step"):
            pass
    assert caplog.text.count("no local MLflow store") == 2
    assert caplog.text.count("untracked-once:") == 1


def test_experiment_name_and_uri_from_config(store, tmp_path):
    uri = layout.tracking_uri(store)  # given explicitly, for a root that has no store
    cfg = _cfg(tmp_path, uri=uri, experiment="my-exp")
    with tracking.open_run(cfg, tmp_path, run_name="r") as run:
        assert run.tracking_uri == uri
    assert _client(store).get_experiment_by_name("my-exp").experiment_id == run.experiment_id
    assert not (tmp_path / "mlflow.db").exists()


def test_log_history_fills_in_only_the_missing_steps(store):
    cfg = _cfg(store, "history")
    with tracking.open_run(cfg, store, run_name="h") as run:
        run.log_metrics({"loss": 1.0}, step=1)  # logged before a crash
        run.log_history(
            [
                {"epoch": 1, "loss": 9.0, "miou": 0.1, "best": True},
                {"epoch": 2, "loss": 0.5, "miou": None},
            ]
        )
    client = _client(store)
    loss = sorted((m.step, m.value) for m in client.get_metric_history(run.run_id, "loss"))
    assert loss == [(1, 1.0), (2, 0.5)]
    assert [(m.step, m.value) for m in client.get_metric_history(run.run_id, "miou")] == [(1, 0.1)]
    assert "best" not in client.get_run(run.run_id).data.metrics
