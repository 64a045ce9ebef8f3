"""Config validation: errors name the key path and what was received; examples load."""

import json
from pathlib import Path

import pytest

from reseg.config import load_config, parse_config
from reseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def base():
    return {
        "data": {
            "scenes": [{"image": "a.tif", "labels": "b.tif"}],
            "classes": [{"name": "x"}, {"name": "y"}],
        }
    }


def test_unknown_key_is_named():
    raw = base()
    raw["tiling"] = {"tile_sise": 64}
    with pytest.raises(ConfigError, match=r"tiling\.tile_sise: unknown key"):
        parse_config(raw)


def test_wrong_type_is_named_with_the_value():
    raw = base()
    raw["tiling"] = {"tile_size": "big"}
    with pytest.raises(ConfigError, match=r"tiling\.tile_size: .*integer.*received: 'big'"):
        parse_config(raw)


@pytest.mark.parametrize(
    "patch, pattern",
    [
        ({"tiling": {"tile_size": 64, "overlap": 64}}, "overlap must be smaller than tile_size"),
        ({"tiling": {"overlap": 7}}, "overlap must be even"),
        ({"data": {"label_values": {3: 9}}}, "outside 0..1"),
        (
            {"data": {"classes": [{"name": "a", "color": "red"}, {"name": "b"}]}},
            r"data\.classes\.0\.color",
        ),
        ({"data": {"bands": [0]}}, "1-based"),
    ],
)
def test_bad_values(patch, pattern):
    raw = base()
    for section, values in patch.items():
        raw.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError, match=pattern):
        parse_config(raw)


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"data: required key is missing"):
        parse_config({"name": "x"})


def test_paths_resolve_relative_to_the_config_file_and_expand_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("MYDATA", "/data/here")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "data:\n  scenes:\n    - {image: img.tif, labels: '${MYDATA}/l.tif'}\n"
        "  classes: [{name: a}, {name: b}]\n"
    )
    cfg = load_config(cfg_file)
    assert cfg.data.scenes[0].image == str(tmp_path / "img.tif")
    assert cfg.data.scenes[0].labels == "/data/here/l.tif"
    assert '"tile_size": 256' in cfg.to_json()


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("study_")),
)
def test_examples_validate(name, shared_data, landsat):
    cfg = load_config(REPO / "examples" / name)
    for s in cfg.data.scenes:
        assert Path(s.image).exists(), s.image


def test_seed_option_of_reseg_run_overrides_train_seed_and_keeps_the_folds(tmp_path):
    """`reseg run --seed N` writes train.seed N into the root's config; tiling.seed (the folds)
    and the rest stay as in the file; without --seed the file's seed is kept."""
    import json

    import yaml

    from reseg import cli, layout
    from tests.rasters import config_dict, scene

    img, lab = scene(tmp_path, height=40, width=40)
    raw = config_dict(img, lab)
    raw["train"] = {"seed": 3}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.with_seed(None) is cfg
    seeded = cfg.with_seed(11)
    assert seeded.train.seed == 11 and seeded.tiling == cfg.tiling and cfg.train.seed == 3
    for args, expected in (([], 3), (["--seed", "7"], 7)):
        root = tmp_path / f"root{expected}"
        assert cli.main(["run", str(path), "--root", str(root), "--steps", "tile", *args]) == 0
        written = json.loads(layout.config_file(root).read_text())
        assert written["train"]["seed"] == expected
        assert written["tiling"]["seed"] == cfg.tiling.seed
    # the same folds whatever the training seed
    folds = [
        json.loads((layout.tiles_dir(tmp_path / f"root{s}") / "manifest.json").read_text())[
            "fingerprint"
        ]
        for s in (3, 7)
    ]
    assert folds[0] == folds[1]


def test_encoder_weights_resolve_against_the_config_folder_and_imagenet_stays(tmp_path):
    base = {
        "data": {
            "scenes": [{"image": "a.tif", "labels": "b.tif"}],
            "classes": [{"name": "x"}, {"name": "y"}],
        },
        "model": {"name": "unet", "params": {"encoder": "resnet18", "encoder_weights": "w/r.h5"}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(base))
    assert load_config(path).model.params.encoder_weights == str(tmp_path / "w" / "r.h5")
    base["model"]["params"] = {"encoder": "resnet50", "encoder_weights": "imagenet"}
    path.write_text(json.dumps(base))
    assert load_config(path).model.params.encoder_weights == "imagenet"


def test_segformer_weights_are_a_preset_folder_or_a_keras_hub_preset_name(tmp_path):
    base = {
        "data": {
            "scenes": [{"image": "a.tif", "labels": "b.tif"}],
            "classes": [{"name": "x"}, {"name": "y"}],
        },
        "model": {"name": "segformer", "params": {"encoder_weights": "mit_b0_ade20k_512"}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(base))
    assert load_config(path).model.params.encoder_weights == "mit_b0_ade20k_512"  # keras-hub's
    (tmp_path / "mit_local").mkdir()  # a folder of that name beside the config wins
    base["model"]["params"]["encoder_weights"] = "mit_local"
    path.write_text(json.dumps(base))
    assert load_config(path).model.params.encoder_weights == str(tmp_path / "mit_local")
    base["model"]["params"]["encoder_weights"] = "presets/mit"
    path.write_text(json.dumps(base))
    assert load_config(path).model.params.encoder_weights == str(tmp_path / "presets" / "mit")
