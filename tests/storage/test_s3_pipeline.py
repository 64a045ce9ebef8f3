"""`reseg run` with its scenes and its root in an S3 bucket (moto's server on loopback), Beam on
worker processes: the same artifacts as the same run on a local disk (`demo_rounds`), and
nothing written locally but the shard cache."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import yaml

from reseg import artifacts, layout, storage
from reseg.cli import main
from tests.conftest import TINY
from tests.storage.conftest import BEAM_PROCESSES

pytestmark = pytest.mark.slow  # tile, stats, rounds 0 and 1, merge: about 3 minutes


def scenes_in_bucket(cfg, bucket: str) -> dict:
    """The config as a dict with every scene file copied into `bucket/scenes/`."""
    raw = cfg.model_dump(mode="json")
    for scene in raw["data"]["scenes"]:
        for key in ("image", "labels"):
            if scene.get(key):
                uri = f"{bucket}/scenes/{os.path.basename(scene[key])}"
                storage.upload(scene[key], uri)
                scene[key] = uri
    raw["beam"] = {"args": BEAM_PROCESSES}
    return raw


def read_bytes(p) -> bytes:
    return storage.path(p).read_bytes()


def read_json(p) -> dict:
    return json.loads(read_bytes(p))


@pytest.fixture(scope="module")
def s3_run(s3_endpoint, demo_config, tmp_path_factory):
    """(root, cfg_file, cache, local files written): `reseg run --steps tile,stats,rounds` of
    the tiny demo config with scenes and root in a new bucket, run from an empty folder."""
    import boto3

    bucket = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    raw = scenes_in_bucket(demo_config, f"s3://{bucket}")
    raw.update(TINY)
    tmp = tmp_path_factory.mktemp("s3_run")
    cfg_file = tmp / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    work, cache = tmp / "cwd", tmp / "cache"
    work.mkdir()
    root = f"s3://{bucket}/runs/demo"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("RESEG_CACHE_DIR", str(cache))
        code = main(["run", str(cfg_file), "--root", root, "--steps", "tile,stats,rounds"])
        written = [str(p.relative_to(work)) for p in work.rglob("*")]
    assert code == 0
    return root, cfg_file, cache, written


def test_nothing_is_written_locally_but_the_cache(s3_run):
    root, _, cache, written = s3_run
    assert written == []
    cached = [p for p in (cache / "objects").iterdir()]
    assert any(p.name.endswith(".tfrecord.gz") for p in cached)  # TF read staged shards
    assert not list((cache / "staging").iterdir())  # models and selections were uploaded
    names = storage.files_under(root)
    assert not [n for n in names if ".tmp-" in n]  # nothing staged is left in the bucket
    for d in (
        "tiles",
        "stats",
        "rounds/r0/fold0/model",
        "rounds/r1/fold0/selection",
        "merged/fold0",
    ):
        assert f"{d}/{layout.MANIFEST}" in names, d


def test_tiles_are_the_local_tiles_byte_for_byte(s3_run, demo_root):
    root = s3_run[0]
    remote = artifacts.TileSet.load(layout.tiles_dir(root))
    local = artifacts.TileSet.load(layout.tiles_dir(demo_root))
    assert [f.name for f in remote.files] == [f.name for f in local.files]
    for r, loc in zip(remote.files, local.files, strict=True):
        assert read_bytes(r) == loc.read_bytes(), r.name
    assert remote.manifest["counts"] == local.manifest["counts"]
    stats_remote = read_json(layout.stats_dir(root) / layout.STATS_JSON)
    stats_local = json.loads((layout.stats_dir(demo_root) / layout.STATS_JSON).read_text())
    assert stats_remote["class_pixels_per_fold"] == stats_local["class_pixels_per_fold"]
    for a, b in zip(stats_remote["bands"], stats_local["bands"], strict=True):
        assert a == pytest.approx(b, rel=1e-9)


def test_metrics_equal_the_local_run(s3_run, demo_rounds):
    """Deterministic training: the same weights, so the same confusion matrices."""
    root = s3_run[0]
    local_root = demo_rounds[0]
    pairs = [(layout.eval_dir(root, r, 0), layout.eval_dir(local_root, r, 0)) for r in (0, 1)] + [
        (layout.merged_eval_dir(root, 0), layout.merged_eval_dir(local_root, 0))
    ]
    for remote, local in pairs:
        got = read_json(remote / layout.METRICS_JSON)
        ref = json.loads((local / layout.METRICS_JSON).read_text())
        assert got["confusion"] == ref["confusion"], remote
        assert got["mean_iou"] == pytest.approx(ref["mean_iou"], abs=0, nan_ok=True), remote
    digests = [
        read_json(layout.model_dir(root, r, 0) / layout.MANIFEST)["weights_digest"] for r in (0, 1)
    ]
    assert digests == [
        artifacts.read_manifest(layout.model_dir(local_root, r, 0))["weights_digest"]
        for r in (0, 1)
    ]


def test_a_rerun_trusts_what_is_in_the_bucket(s3_run, capsys):
    root, cfg_file, _, _ = s3_run
    before = {
        d: read_bytes(d / layout.MANIFEST)
        for d in (layout.tiles_dir(root), layout.model_dir(root, 1, 0), layout.merged_dir(root, 0))
    }
    assert main(["run", str(cfg_file), "--root", root, "--steps", "tile,stats,rounds"]) == 0
    assert {d: read_bytes(d / layout.MANIFEST) for d in before} == before


def test_report_of_a_bucket_root(s3_run, demo_rounds, capsys):
    from reseg.report import collect, round_table

    root = s3_run[0]
    assert main(["report", root]) == 0
    md = storage.path(f"{root}/report/report.md").read_text()
    assert "## Evaluation fold0" in md
    assert "../rounds/r1/fold0/eval/confusion.png" in md  # links relative inside the bucket
    assert storage.path(f"{root}/report/report.html").exists()
    assert storage.path(f"{root}/report/miou_fold0.png").exists()
    remote, local = collect(root), collect(demo_rounds[0])
    assert [round_table(v) for v in remote] == [round_table(v) for v in local]


def test_the_predict_step_writes_into_the_bucket_root(s3_run, demo_rounds, tmp_path, monkeypatch):
    """`--steps predict` on the bucket root: the published predictions equal the local run's
    array for array, staged in the bucket with the manifest last, nothing written locally but
    the cache; a rerun trusts them."""
    import numpy as np
    import rasterio

    root, cfg_file, cache, _ = s3_run
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RESEG_CACHE_DIR", str(cache))
    assert main(["run", str(cfg_file), "--root", root, "--steps", "predict"]) == 0
    assert [str(p.relative_to(work)) for p in work.rglob("*")] == []
    assert not [p for p in (cache / "staging").rglob("*") if p.is_file()]
    final = layout.predictions_dir(root)
    remote = artifacts.Predictions.load(final)
    local = artifacts.Predictions.load(layout.predictions_dir(demo_rounds[0]))
    assert [e["outputs"] for e in remote.scenes] == [e["outputs"] for e in local.scenes]
    names = storage.files_under(final)
    assert not [n for n in names if n.startswith(".")], "scene staging and records removed"
    assert not [n for n in storage.files_under(root) if "predictions.tmp-" in n]
    for entry in local.scenes:
        for name in entry["outputs"].values():
            assert name in names
            if name.endswith(".tif"):
                with rasterio.open(storage.gdal_path(final / name)) as a:
                    with rasterio.open(local.path / name) as b:
                        np.testing.assert_array_equal(a.read(), b.read(), err_msg=name)
                        assert (a.crs, a.transform) == (b.crs, b.transform)
            elif name.endswith(".json"):
                assert (
                    read_json(final / name)["confusion"]
                    == json.loads((local.path / name).read_text())["confusion"]
                )
    before = read_bytes(final / layout.MANIFEST)
    assert main(["run", str(cfg_file), "--root", root, "--steps", "predict"]) == 0
    assert read_bytes(final / layout.MANIFEST) == before


def test_the_predict_step_resumes_from_the_bucket(s3_run, tmp_path, monkeypatch):
    """Killed after the scenes were staged, before publishing: the scenes stay in the bucket
    with their records, and the rerun publishes them without predicting any scene again."""
    from reseg.config import load_config
    from reseg.pipeline import predict as predict_root_module

    root, cfg_file, cache, _ = s3_run
    monkeypatch.setenv("RESEG_CACHE_DIR", str(cache))
    cfg = load_config(cfg_file)
    cfg = cfg.model_copy(update={"predict": cfg.predict.model_copy(update={"preview": False})})
    final = layout.predictions_dir(root)
    with monkeypatch.context() as mp:

        def killed(*a, **k):  # the clean-up that runs once every scene is staged
            raise KeyboardInterrupt

        mp.setattr(predict_root_module, "_drop_records", killed)
        with pytest.raises(KeyboardInterrupt):
            predict_root_module.predict_root(cfg, root)
    staged = [n for n in storage.files_under(storage.path(root)) if "predictions.tmp-" in n]
    assert any(n.endswith(".done.json") for n in staged)
    assert any(n.endswith(".confidence.tif") for n in staged)
    if (final / layout.MANIFEST).exists():  # an earlier version (with previews) is still whole
        assert read_json(final / layout.MANIFEST)["scenes"][0]["outputs"].get("preview")

    def no_prediction(*a, **k):
        raise AssertionError("a staged scene was predicted again")

    monkeypatch.setattr(predict_root_module, "predict_scene", no_prediction)
    preds = predict_root_module.predict_root(cfg, root)
    assert "preview" not in preds.scenes[0]["outputs"]
    assert not [n for n in storage.files_under(storage.path(root)) if "predictions.tmp-" in n]
    assert not [n for n in storage.files_under(final) if n.startswith(".")]
