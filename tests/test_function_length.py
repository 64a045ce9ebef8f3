"""Functions short enough to read at once (STYLE.md, choice 12): every function in reseg/ is at
most `LIMIT` lines, counted from `def` to its last line, docstring included, or says why not
with a comment `# long: <reason>` on its `def` line or the line after.

Checked on the source (ast), nested functions included; a failure lists every offender.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 60
REASON = re.compile(r"#\s*long:\s*\S")


def _functions(
    node: ast.AST, prefix: str = ""
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    """Every function under `node` with its qualified name (`Class.method`, `outer.inner`)."""
    for child in ast.iter_child_nodes(node):
        name = prefix
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                yield child, name
            name += "."
        yield from _functions(child, name)


def long_in(text: str, rel: str) -> list[tuple[str, int, int]]:
    """(`rel::name`, first line, length) of every function of source `text` over `LIMIT`
    lines that gives no `# long:` reason."""
    lines = text.splitlines()
    out = []
    for fn, name in _functions(ast.parse(text)):
        length = fn.end_lineno - fn.lineno + 1
        said = lines[fn.lineno - 1 : fn.lineno + 1]  # the def line and the next
        if length > LIMIT and not any(REASON.search(line) for line in said):
            out.append((f"{rel}::{name}", fn.lineno, length))
    return out


def long_functions() -> list[tuple[str, int, int]]:
    """`long_in` of every module of reseg/."""
    out = []
    for path in sorted((REPO / "reseg").rglob("*.py")):
        out += long_in(path.read_text(), path.relative_to(REPO).as_posix())
    return out


def _source(head: str, lines: int, indent: str = "") -> str:
    """A function of `lines` lines: `head` (its def line) and assignments."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))
    return f"{indent}{head}\n{body}"


def test_the_check_counts_def_to_last_line_and_reads_the_reason():
    assert long_in(_source("def fits():", LIMIT), "m.py") == []
    method = "class A:\n" + _source("def over(self):", LIMIT + 1, "    ")
    assert long_in(method, "m.py") == [("m.py::A.over", 2, LIMIT + 1)]
    why = _source("def why():  # long: one table, read top to bottom", LIMIT + 1)
    assert long_in(why, "m.py") == []
    why_next = "def why_next(\n    a,  # long: one table\n):\n" + _source("", LIMIT)[1:]
    assert long_in(why_next, "m.py") == []
    assert long_in(_source("def bare():  # long:", LIMIT + 1), "m.py") != []  # no reason


def test_functions_are_short_or_say_why():
    offenders = [f"{key} (line {line}): {n} lines" for key, line, n in long_functions()]
    assert not offenders, (
        f"{len(offenders)} functions over {LIMIT} lines: split them at their stages, or say why "
        "not with `# long: <reason>` on the def line:\n  " + "\n  ".join(offenders)
    )
