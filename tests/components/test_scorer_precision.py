"""Scoring in bfloat16 (`rounds.score_precision`) against the float32 scores of the demo rounds."""

from __future__ import annotations

import numpy as np

from reseg import artifacts, layout
from reseg.components.scorer import score, score_files
from reseg.tfrecords_schema import read_tiles


def test_bfloat16_scores_agree_with_float32(demo_rounds, tmp_path):
    root, cfg, _ = demo_rounds
    tiles = artifacts.TileSet.load(layout.tiles_dir(root))
    bf = cfg.model_copy(
        update={"rounds": cfg.rounds.model_copy(update={"score_precision": "bfloat16"})}
    )
    model = layout.model_dir(root, 0, 0)
    out = score(bf, model, list(tiles.files), tmp_path / "scores", 0)
    manifest = artifacts.read_manifest(out)
    ref_dir = layout.scores_dir(root, 0, 0)
    assert manifest["precision"] == "bfloat16"
    assert manifest["fingerprint"] != artifacts.read_manifest(ref_dir)["fingerprint"]
    ref = {t.key: t.probs.astype(np.float32) for t in read_tiles(score_files(ref_dir))}
    got = list(read_tiles(score_files(out)))
    assert len(got) == len(ref)
    same = total = 0
    for t in got:
        p = t.probs.astype(np.float32)
        assert np.abs(p - ref[t.key]).max() < 0.1
        same += int((p.argmax(-1) == ref[t.key].argmax(-1)).sum())
        total += p.shape[0] * p.shape[1]
    assert same / total >= 0.995
