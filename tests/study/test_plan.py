"""The study file, its profiles, and the plan of cells and jobs it makes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reseg.config import parse_config
from reseg.errors import ConfigError
from reseg.study.config import deep_merge, load_study, parse_study
from reseg.study.plan import build_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("study_*.yaml"))
PLAIN = [p for p in EXAMPLES if not p.stem.startswith("study_pseudo_")]
"""The labelled-pixel studies; the pseudo-label ones are tests/study/test_pseudo_cells.py's."""


def _study(tmp_path: Path, **raw) -> Path:
    doc = {"name": "s", "base": str(REPO / "examples" / "demo_landsat.yaml"), **raw}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_deep_merge_merges_mappings_and_replaces_lists():
    a = {"grid": {"percent": [1, 5], "score": ["margin"]}, "parallel": 2}
    b = {"grid": {"percent": [20]}, "parallel": 1}
    assert deep_merge(a, b) == {"grid": {"percent": [20], "score": ["margin"]}, "parallel": 1}
    assert a["grid"]["percent"] == [1, 5]


def test_a_profile_is_merged_before_validation():
    raw = {
        "name": "s",
        "base": "b.yaml",
        "grid": {"percent": [1, 5]},
        "profiles": {"quick": {"grid": {"percent": [9]}, "parallel": 1}},
    }
    assert parse_study(raw).grid.percent == [1, 5]
    quick = parse_study(raw, profile="quick")
    assert quick.grid.percent == [9] and quick.parallel == 1 and quick.profile == "quick"


@pytest.mark.parametrize(
    ("raw", "profile", "message"),
    [
        ({"name": "s", "base": "b", "gird": {}}, None, "gird: unknown key"),
        ({"name": "s", "base": "b", "grid": {"percent": [0]}}, None, "within (0, 100]"),
        ({"name": "s", "base": "b", "grid": {"resolution": [2, 2]}}, None, "distinct integers"),
        ({"name": "s", "base": "b", "grid": {"band": [[60, 40]]}}, None, "0 <= low < high"),
        ({"name": "s", "base": "b"}, "fast", "no profile 'fast'"),
        (
            {"name": "s", "base": "b", "grid": {"models": [{"name": "unet"}, {"name": "unet"}]}},
            None,
            "distinct labels",
        ),
        (
            {
                "name": "s",
                "base": "b",
                "grid": {"models": [{"name": "unet", "params": {"encoder": "resnet19"}}]},
            },
            None,
            "grid.models.0: .*Received: encoder='resnet19'",
        ),
        (
            {
                "name": "s",
                "base": "b",
                "grid": {"models": [{"name": "unet", "train": {"freeze": 2}}]},
            },
            None,
            "grid.models.0: .*train: unknown key.*'freeze'.* for model 'unet'",
        ),
    ],
)
def test_bad_studies_say_what_is_wrong(raw, profile, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("]", r"\]")):
        parse_study(raw, profile=profile)


def test_grid_and_baselines_become_cells_that_share_round_zero(landsat, tmp_path):
    path = _study(
        tmp_path,
        grid={
            "percent": [5, 20],
            "direction": ["top", "bottom", "band"],
            "band": [[40, 60]],
            "resolution": [1, 2],
        },
        baselines={"bottom": {"percent": 20}, "tta": True},
        folds=[0, 2],
    )
    study, base = load_study(path)
    plan = build_plan(study, base, tmp_path / "root")
    assert [g.id for g in plan.groups] == ["res1-unet", "res2-unet"] and plan.folds == [0, 2]
    cells = {c.id: c for c in plan.cells if c.group == "res1-unet"}
    assert set(cells) == {
        "res1-unet.true_class.top5",
        "res1-unet.true_class.top20",
        "res1-unet.true_class.bottom5",
        "res1-unet.true_class.bottom20",
        "res1-unet.true_class.band40-60",
        "res1-unet.all_pixels",
        "res1-unet.cbst20-5-50",
        "res1-unet.tta3",
    }
    # the bottom baseline is the grid's bottom 20% cell, kept once
    assert cells["res1-unet.true_class.bottom20"].aliases == ["bottom"]
    allp = cells["res1-unet.all_pixels"].config["rounds"]["selection"]
    assert (allp["direction"], allp["percent"], allp["weighting"]) == ("top", 100.0, "only")
    assert cells["res1-unet.cbst20-5-50"].config["rounds"]["selection"]["grow"] == {
        "start": 20.0,
        "step": 5.0,
        "max": 50.0,
    }
    assert cells["res1-unet.tta3"].tta == [
        "identity",
        "rot90",
        "rot180",
    ]  # rounds 0..2: 3 predictions
    group = parse_config(plan.groups[0].config)
    for c in cells.values():
        if c.config is None:
            continue
        cfg = parse_config(c.config)
        # what round 0's fingerprints read is the same in every cell of the group
        assert cfg.section_json("data", "tiling", "model", "train") == group.section_json(
            "data", "tiling", "model", "train"
        )
        assert cfg.tracking.uri == f"sqlite:///{(tmp_path / 'root').resolve()}/mlflow.db"
        assert cfg.tracking.experiment == "s" and cfg.rounds.folds == [0, 2]
    res2 = parse_config(plan.groups[1].config)
    assert res2.tiling.tile_size == 32 and res2.tiling.block_size == 48
    assert res2.data.scenes[0].image == str(
        (tmp_path / "root" / "data" / "res2" / "scenes" / "landsat.image.tif").resolve()
    )
    kinds = {j.kind for j in plan.jobs}
    assert kinds == {"data", "r0", "cell"}
    r0 = next(j for j in plan.jobs if j.id == "r0.res1-unet.seed0.fold2")
    assert r0.params == {"group": "res1-unet", "seed": 0, "fold": 2, "tta_cell": "res1-unet.tta3"}
    cell_job = next(j for j in plan.jobs if j.id == "cell.res1-unet.all_pixels.seed0")
    assert cell_job.deps == ["r0.res1-unet.seed0.fold0", "r0.res1-unet.seed0.fold2"]
    assert len({j.fingerprint for j in plan.jobs}) == len(plan.jobs)


def test_every_cell_and_baseline_trains_once_per_seed_deterministically(landsat, tmp_path):
    study, base = load_study(
        _study(
            tmp_path,
            grid={"percent": [20]},
            baselines={"bottom": None, "cbst": None},
            folds=[0, 1],
            seeds=[3, 7],
            overrides={"train": {"jit_compile": True, "deterministic": False}},
        )
    )
    plan = build_plan(study, base, tmp_path / "root")
    assert plan.seeds == [3, 7]
    r0 = sorted(j.id for j in plan.jobs if j.kind == "r0")
    assert r0 == [f"r0.res1-unet.seed{s}.fold{k}" for s in (3, 7) for k in (0, 1)]
    cells = sorted(j.id for j in plan.jobs if j.kind == "cell")
    assert cells == [
        f"cell.res1-unet.{c}.seed{s}" for c in ("all_pixels", "true_class.top20") for s in (3, 7)
    ]
    seven = next(j for j in plan.jobs if j.id == "cell.res1-unet.all_pixels.seed7")
    assert seven.deps == ["r0.res1-unet.seed7.fold0", "r0.res1-unet.seed7.fold1"]
    assert len({j.fingerprint for j in plan.jobs}) == len(plan.jobs)
    # deterministic ops by default inside a study (and XLA off, which excludes them)
    for raw in [g.config for g in plan.groups] + [c.config for c in plan.cells if c.config]:
        train = parse_config(raw).train
        assert train.deterministic and not train.jit_compile
    study, base = load_study(_study(tmp_path, deterministic=False))
    plan = build_plan(study, base, tmp_path / "other")
    assert not parse_config(plan.groups[0].config).train.deterministic
    with pytest.raises(ConfigError, match="distinct integers"):
        parse_study({"name": "s", "base": "b", "seeds": [1, 1]})


def test_encoders_and_weights_are_a_model_factor_with_their_own_fine_tuning(landsat, tmp_path):
    models = [
        {"name": "unet", "label": "scratch", "params": {"depth": 2, "base_filters": 4}},
        {
            "name": "unet",
            "label": "pretrained",
            "params": {"encoder": "resnet18", "encoder_weights": "weights/r18.weights.h5"},
            "train": {"freeze_encoder_epochs": 2, "encoder_lr_multiplier": 0.1},
        },
    ]
    study, base = load_study(_study(tmp_path, grid={"percent": [5], "models": models}))
    plan = build_plan(study, base, tmp_path / "root")
    configs = {g.id.split("-", 1)[1]: parse_config(g.config) for g in plan.groups}
    assert set(configs) == {"scratch", "pretrained"}
    pre, scratch = configs["pretrained"], configs["scratch"]
    assert pre.model.params["encoder"] == "resnet18"
    assert pre.model.params["encoder_weights"] == str(tmp_path / "weights/r18.weights.h5")
    assert (pre.train.freeze_encoder_epochs, pre.train.encoder_lr_multiplier) == (2, 0.1)
    assert (scratch.train.freeze_encoder_epochs, scratch.train.encoder_lr_multiplier) == (0, 1.0)
    assert scratch.model.params["encoder"] == "none"
    assert pre.train.epochs == scratch.train.epochs == parse_config(base).train.epochs
    cells = {c.id for c in plan.cells}
    assert any("pretrained" in c for c in cells) and any("scratch" in c for c in cells)


def test_study_precision_sets_every_cells_training_precision(landsat, tmp_path):
    study, base = load_study(_study(tmp_path, precision="mixed_bfloat16"))
    plan = build_plan(study, base, tmp_path / "root")
    configs = [g.config for g in plan.groups] + [c.config for c in plan.cells if c.config]
    assert configs and all(parse_config(c).train.precision == "mixed_bfloat16" for c in configs)
    study, base = load_study(_study(tmp_path, overrides={"train": {"precision": "mixed_float16"}}))
    plan = build_plan(study, base, tmp_path / "root")
    assert parse_config(plan.groups[0].config).train.precision == "mixed_float16"
    with pytest.raises(ConfigError, match="precision"):
        parse_study({"name": "s", "base": "b", "precision": "bfloat16"})


def test_per_class_x_must_have_one_value_per_class(landsat, tmp_path):
    study, base = load_study(_study(tmp_path, grid={"percent": [[5, 10]]}))
    with pytest.raises(ConfigError, match="needs 7 values"):
        build_plan(study, base, tmp_path / "root")


def test_folds_outside_k_are_an_error(landsat, tmp_path):
    study, base = load_study(_study(tmp_path, folds=[7]))
    with pytest.raises(ConfigError, match="outside 0..4"):
        build_plan(study, base, tmp_path / "root")


@pytest.mark.parametrize("path", PLAIN, ids=[p.stem for p in PLAIN])
def test_example_studies_plan_with_and_without_the_quick_profile(
    path, landsat, shared_data, tmp_path
):
    for profile in (None, "quick"):
        study, base = load_study(path, profile)
        plan = build_plan(study, base, tmp_path / (profile or "full"))
        kinds = {c.kind for c in plan.cells}
        # every comparison has its other side: round 0, all pixels, TTA of round 0, last round
        assert {"grid", "all_pixels", "tta"} <= kinds and plan.rounds >= 1
        if profile == "quick":  # seeds are kept; the grid, epochs and folds shrink instead
            assert len(plan.seeds) >= 3 and len(plan.folds) >= 3
            assert parse_config(plan.groups[0].config).train.deterministic
        else:
            assert "cbst" in kinds
            assert any(c.kind == "bottom" or "bottom" in c.aliases for c in plan.cells)
    assert len(PLAIN) == 5
