"""MkDocs hook: the site's home page is the repository's README, its links made site-relative.

The README is the front page on the forge and links into `docs/`; on the site the same text
is `index.md`, so `docs/x.md` becomes `x.md` and `docs/img/` becomes `img/`. One text, two
places, nothing copied by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File


def readme_as_index(text: str) -> str:
    """README links (`](docs/...)`) rewritten for a page that lives in `docs/`."""
    return re.sub(r"\]\(docs/", "](", text)


def on_files(files, config):
    readme = Path(config["config_file_path"]).parent / "README.md"
    index = File.generated(config, "index.md", content=readme_as_index(readme.read_text()))
    old = files.get_file_from_path("index.md")
    if old is not None:
        files.remove(old)
    files.append(index)
    return files
