"""`reseg schema [--study] [--markdown] [--out FILE]`: the JSON Schema of the config files.

Without `--out` the schema is printed. `docs/reseg.schema.json` and
`docs/reseg-study.schema.json` are this command's output, committed so that the
example configs' `# yaml-language-server: $schema=...` line finds them; with
`--markdown`, the reference pages `docs/reference/config.md` and `docs/reference/study.md`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--study",
        action="store_true",
        help="the schema of a study file (reseg study) instead of a pipeline config",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="a Markdown reference page (one table per section) instead of JSON Schema",
    )
    parser.add_argument(
        "--out",
        type=Path,  # local: a file of the source tree (docs/reference), not a pipeline location
        metavar="FILE",
        help="write the schema here instead of printing it",
    )


def study_schema() -> dict[str, Any]:
    """The schema of a study file; `profiles` are partial studies merged in before validation."""
    from reseg.config.schema import json_schema
    from reseg.study.config import StudyConfig

    profiles = {
        "type": "object",
        "description": (
            "Named partial studies (`--profile NAME`), deep-merged into the study before "
            "validation: mappings key by key, other values replace."
        ),
        "additionalProperties": {"type": "object"},
    }
    return json_schema(StudyConfig, "reseg study", {"profiles": profiles})


def run(args: argparse.Namespace) -> int:
    from reseg.config.schema import config_schema, dumps, markdown
    from reseg.errors import InputError

    schema = study_schema() if args.study else config_schema()
    text = markdown(schema) if args.markdown else dumps(schema)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        args.out.write_text(text)
    except OSError as e:
        raise InputError(f"{args.out}: cannot write the schema: {e.strerror or e}") from None
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
