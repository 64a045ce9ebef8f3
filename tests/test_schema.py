"""`reseg schema`: the committed schemas are its output, and every example config validates."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from reseg.cli import main
from tests.conftest import REPO

DOCS = REPO / "docs"
HEADER = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _schema_output(capsys, *args: str) -> str:
    assert main(["schema", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "committed"),
    [((), "reseg.schema.json"), (("--study",), "reseg-study.schema.json")],
)
def test_the_committed_schema_is_the_commands_output(capsys, args, committed):
    out = _schema_output(capsys, *args)
    assert (DOCS / committed).read_text() == out, (
        f"docs/{committed} is stale: run `reseg schema {' '.join(args)} --out docs/{committed}`"
    )
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(
    ("args", "committed"),
    [(("--markdown",), "reference/config.md"), (("--study", "--markdown"), "reference/study.md")],
)
def test_the_configuration_reference_pages_are_the_commands_output(capsys, args, committed):
    out = _schema_output(capsys, *args)
    assert (DOCS / committed).read_text() == out, (
        f"docs/{committed} is stale: run `reseg schema {' '.join(args)} --out docs/{committed}`"
    )
    # every key of every section has a row, and a section's type links to its table
    assert "| `deterministic` | bool | `true` |" in out or "--study" in args
    assert "[TrainConfig](#trainconfig)" in out or "--study" in args
    assert out.count("\n## ") >= (6 if "--study" in args else 10)


def test_schema_carries_the_field_descriptions(capsys):
    schema = json.loads(_schema_output(capsys))
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert "inverse_sqrt" in train["class_weights"]["description"]
    assert schema["$defs"]["TilingConfig"]["additionalProperties"] is False
    assert set(schema["properties"]) >= {"data", "tiling", "model", "train", "rounds", "predict"}
    params = schema["$defs"]["ModelConfig"]["properties"]["params"]["anyOf"]  # one per model
    assert {"#/$defs/UNetParams", "#/$defs/PSPNetParams"} <= {p["$ref"] for p in params}
    assert schema["$defs"]["UNetParams"]["properties"]["depth"]["minimum"] == 1


def _schema_of(example: Path) -> tuple[dict, str]:
    first = example.read_text().splitlines()[0]
    m = HEADER.match(first)
    assert m, f"{example.name}: first line is not a yaml-language-server $schema comment"
    path = (example.parent / m.group(1)).resolve()
    return json.loads(path.read_text()), path.name


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_validates_against_its_schema(example):
    schema, name = _schema_of(example)
    expected = (
        "reseg-study.schema.json" if example.name.startswith("study_") else "reseg.schema.json"
    )
    assert name == expected
    jsonschema.validate(yaml.safe_load(example.read_text()), schema)


def test_the_schema_rejects_what_the_loader_rejects():
    schema, _ = _schema_of(REPO / "examples" / "potsdam.yaml")
    raw = yaml.safe_load((REPO / "examples" / "potsdam.yaml").read_text())
    for path, value in [
        (("train", "epochz"), 3),  # unknown key
        (("train", "loss"), "hinge"),  # not one of the choices
        (("tiling", "tile_size"), "big"),  # wrong type
        (("model", "params"), {"depth": 0}),  # out of the architecture's bounds
    ]:
        bad = json.loads(json.dumps(raw, default=str))
        bad[path[0]][path[1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_schema_out_to_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "no" / "such" / "schema.json"
    assert main(["schema", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert str(out) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
