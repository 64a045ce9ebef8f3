"""Export sources (`merged`, `last`, `r<k>`) are found by their manifests, written last: a model
whose files are there but whose publication did not finish (a crash, or an upload to a bucket
still under way) is not a source."""

from __future__ import annotations

import pytest

from reseg import artifacts, layout
from reseg.config import parse_config
from reseg.errors import ArtifactError
from reseg.pipeline.sources import resolve
from tests.rasters import config_dict


def _model(root, r, published: bool) -> None:
    d = layout.model_dir(root, r, 0)
    d.mkdir(parents=True)
    (d / layout.MODEL_KERAS).write_bytes(b"weights")
    if published:
        artifacts.write_json(d / layout.MANIFEST, {"fingerprint": f"r{r}"})


def test_sources_are_found_by_manifests(tmp_path):
    cfg = parse_config(config_dict(tmp_path / "a.tif", None))
    root = tmp_path / "root"
    _model(root, 0, True)
    _model(root, 1, True)
    _model(root, 2, False)  # model.keras there, its manifest not yet
    assert resolve(cfg, root, "last", 0) == ("r1", 0, layout.model_dir(root, 1, 0))
    assert resolve(cfg, root, 1, 0)[2] == layout.model_dir(root, 1, 0)
    with pytest.raises(ArtifactError, match=r"r2/fold0/model: no published model"):
        resolve(cfg, root, "r2", 0)
    merged = layout.merged_dir(root, 0)
    merged.mkdir(parents=True)
    (merged / layout.MERGED_JSON).write_text("{}")
    with pytest.raises(ArtifactError, match="no published merge"):
        resolve(cfg, root, "merged", 0)
    artifacts.write_json(merged / layout.MANIFEST, {"fingerprint": "m"})
    assert resolve(cfg, root, "merged", 0) == ("merged", 0, merged)
