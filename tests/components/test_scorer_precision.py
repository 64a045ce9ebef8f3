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
    # the demo rounds' model is barely trained (2 epochs of a tiny U-Net): ~40% of its pixels
    # have their two best classes within 0.01. Where the margin exceeds twice bfloat16's
    # largest error the class cannot change; elsewhere near-ties may flip.
    same = total = clear = clear_same = 0
    for t in got:
        p, q = t.probs.astype(np.float32), ref[t.key]
        err = np.abs(p - q).max()
        assert err < 0.05
        top2 = np.sort(q, -1)[..., -2:]
        sure = top2[..., 1] - top2[..., 0] > 2 * err + 2e-3  # + float16 storage rounding
        eq = p.argmax(-1) == q.argmax(-1)
        same, total = same + int(eq.sum()), total + eq.size
        clear, clear_same = clear + int(sure.sum()), clear_same + int(eq[sure].sum())
    assert clear_same == clear > total / 4
    assert same / total >= 0.98
