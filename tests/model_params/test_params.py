"""Each architecture's `Params`: defaults, bounds, key-path errors, config round trip, schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from reseg import model_params
from reseg.config import Config, parse_config
from reseg.errors import ConfigError
from reseg.model_params import deeplabv3plus, pspnet, unet

REPO = Path(__file__).resolve().parents[2]


def _raw(model: dict) -> dict:
    return {
        "data": {
            "scenes": [{"image": "a.tif", "labels": "b.tif"}],
            "classes": [{"name": "x"}, {"name": "y"}],
        },
        "model": model,
    }


def _error_lines(model: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(_raw(model))
    text = str(err.value)
    assert "\n" not in text  # one line: "<config>: invalid configuration: <key>: ...; <key>: ..."
    return re.split(r"; (?=model\.)", text.split("invalid configuration: ", 1)[1])


@pytest.mark.parametrize(
    ("model", "line"),
    [
        (
            {"name": "unet", "params": {"depth": 0}},
            "model.params.depth: must be >= 1 (received: 0)",
        ),
        ({"params": {"depth": 9}}, "model.params.depth: must be <= 8 (received: 9)"),
        (
            {"name": "unet", "params": {"batch_norm": "yes"}},
            "model.params.batch_norm: must be a bool (received: 'yes')",
        ),
        (
            {"name": "segnet", "params": {"base_filters": 8.0}},
            "model.params.base_filters: must be an int (received: 8.0)",
        ),
        (
            {"name": "cnn", "params": {"kernel_size": 4}},
            "model.params.kernel_size: must be odd (received: 4)",
        ),
        (
            {"name": "fcn8s", "params": {"dropout": 1.0}},
            "model.params.dropout: must be < 1.0 (received: 1.0)",
        ),
        (
            {"name": "alexnet_fcn", "params": {"width": 0}},
            "model.params.width: must be > 0.0 (received: 0)",
        ),
        (
            {"name": "pspnet", "params": {"output_stride": 32}},
            "model.params.output_stride: must be one of [8, 16] (received: 32)",
        ),
        (
            {"name": "pspnet", "params": {"bins": [1, 0]}},
            "model.params.bins.1: must be >= 1 (received: 0)",
        ),
        (
            {"name": "deeplabv3plus", "params": {"encoder_widths": [8, 8]}},
            "model.params.encoder_widths: must have at least 4 entries (received: [8, 8])",
        ),
        (
            {"name": "deeplabv3plus", "params": {"hdc": [[1, 2], [1, 2]]}},
            "model.params.hdc: gives 2 patterns but output_stride=16 has 1 dilated stage(s) "
            "(received: [[1, 2], [1, 2]])",
        ),
        (
            # absolute: a relative path is resolved against the config's folder first
            {"name": "pspnet", "params": {"encoder_weights": "/w.h5"}},
            "model.params.encoder_weights: needs a keras.applications encoder "
            "['resnet50', 'mobilenetv2', 'efficientnetb0'], not encoder='small' "
            "(received: '/w.h5')",
        ),
        (
            {"name": "unet", "params": [3]},
            "model.params: must be a mapping of parameter names to values (received: [3])",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key_path(model, line):
    assert _error_lines(model) == [line]


def test_unknown_keys_are_rejected_with_the_allowed_ones():
    allowed = (
        "['base_filters', 'batch_norm', 'depth', 'dropout', 'encoder', 'encoder_bands', "
        "'encoder_depth', 'encoder_weights']"
    )
    assert _error_lines({"name": "unet", "params": {"widht": 3, "bins": [1]}}) == [
        f"model.params.widht: unknown parameter; allowed: {allowed} (received: 3)",
        f"model.params.bins: unknown parameter; allowed: {allowed} (received: [1])",
    ]
    with pytest.raises(ValueError, match=r"\['widht'\] for model 'unet'\. Allowed: "):
        model_params.validate_params("unet", {"widht": 3})
    with pytest.raises(ValidationError, match="unknown parameter"):
        unet.Params(widht=3)


def test_an_unknown_name_is_reported_alone():
    assert _error_lines({"name": "vgg", "params": {"depth": 0}}) == [
        f"model.name: unknown model 'vgg'; available: {model_params.names()} (received: 'vgg')"
    ]


def test_omitted_params_take_the_defaults_of_the_named_model():
    cfg = parse_config(_raw({"name": "deeplabv3plus", "params": {"output_stride": 8}}))
    assert isinstance(cfg.model.params, deeplabv3plus.Params)
    assert cfg.model.params == deeplabv3plus.Params(output_stride=8)
    assert cfg.model.params.rates == (12, 24, 36)
    assert parse_config(_raw({"name": "pspnet"})).model.params == pspnet.Params()
    assert parse_config(_raw({"params": {"depth": 2}})).model.params.output_stride == 4


def test_the_saved_config_round_trips_with_every_parameter():
    model = {"name": "deeplabv3plus", "params": {"output_stride": 8, "hdc": [[1, 2], [1, 2, 5]]}}
    cfg = parse_config(_raw(model))
    saved = json.loads(cfg.to_json())
    assert saved["model"]["params"]["hdc"] == [[1, 2], [1, 2, 5]]
    assert set(saved["model"]["params"]) == set(deeplabv3plus.Params.model_fields)
    assert saved["model"]["params"]["aspp_filters"] == 256
    again = parse_config(saved)
    assert again == cfg and again.model.params.hdc == ((1, 2), (1, 2, 5))


def test_params_read_as_keyword_arguments_and_are_immutable():
    p = unet.Params(depth=2)
    assert (
        {**p}
        == dict(p)
        == p.model_dump()
        == {
            "depth": 2,
            "base_filters": 32,
            "batch_norm": True,
            "dropout": 0.0,
            "encoder": "none",
            "encoder_weights": None,
            "encoder_bands": None,
            "encoder_depth": 5,
        }
    )
    with pytest.raises(KeyError):
        p["bins"]
    with pytest.raises(ValidationError, match="frozen"):
        p.depth = 3
    assert model_params.validate_params("unet", p) is p
    with pytest.raises(TypeError, match=r"'cnn' takes CNNParams\. Received: params=UNetParams"):
        model_params.validate_params("cnn", p)


def test_the_schema_gives_each_name_its_params():
    schema = Config.model_json_schema()
    section = schema["$defs"]["ModelConfig"]
    assert section["properties"]["name"]["enum"] == model_params.names()
    chosen = {}
    for rule in section["allOf"]:
        name = rule["if"]["properties"]["name"]["const"]
        ref = rule["then"]["properties"]["params"]["$ref"].removeprefix("#/$defs/")
        chosen[name] = ref
        # an omitted name is the default, unet: only its rule holds without a name
        assert ("required" in rule["if"]) == (name != "unet")
    assert set(chosen) == set(model_params.names())
    for name, ref in chosen.items():
        cls = model_params.params_class(name)
        props = schema["$defs"][ref]["properties"]
        assert set(props) == set(cls.model_fields)
        assert all(props[k]["description"] for k in props)
        assert schema["$defs"][ref]["additionalProperties"] is False
    depth = schema["$defs"][chosen["unet"]]["properties"]["depth"]
    assert (depth["minimum"], depth["maximum"], depth["default"]) == (1, 8, 4)


def test_loading_a_config_does_not_import_keras(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent(
            """
            data:
              scenes: [{image: a.tif, labels: b.tif}]
              classes: [{name: x}, {name: y}]
            model: {name: pspnet, params: {bins: [1, 2], hdc: [1, 2]}}
            """
        )
    )
    code = (
        "import sys; from reseg.config import load_config; "
        f"cfg = load_config({str(path)!r}); "
        "print(cfg.model.params.bins, 'keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["(1,", "2)", "False", "False"]
