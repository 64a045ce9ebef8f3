"""JSON Schema of the config files, from the pydantic models (with their field descriptions).

Editors validate and complete YAML against it: the example configs start with

    # yaml-language-server: $schema=../docs/reseg.schema.json

(the YAML language server of VS Code, Neovim, Helix, JetBrains, ...). The committed
`docs/reseg.schema.json` and `docs/reseg-study.schema.json` are `reseg schema`'s output,
and a test checks that they stay so.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from reseg.config import Config

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(
    model: type[BaseModel], title: str, extra_properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `model` as a config file, titled `title`.

    `extra_properties` are keys the file may hold that the model does not validate
    itself (e.g. a study's `profiles`, merged in before validation).
    """
    schema = model.model_json_schema(mode="validation")
    if extra_properties:
        schema["properties"] = {**schema["properties"], **extra_properties}
    return {"$schema": DIALECT, "title": title, **{k: v for k, v in schema.items() if k != "title"}}


def config_schema() -> dict[str, Any]:
    """The schema of a pipeline config (`reseg run CONFIG`, every step command)."""
    return json_schema(Config, "reseg pipeline config")


def dumps(schema: dict[str, Any]) -> str:
    """The schema as written by `reseg schema`: 2-space indented JSON and a final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
