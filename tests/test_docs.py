"""The documentation site builds strictly, and the README is a front page whose links hold."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")


def _build(src: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "-f", str(src / "mkdocs.yml"), "-d", str(out)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_the_site_builds_strictly_with_every_page(tmp_path):
    out = _build(REPO, tmp_path / "site")
    assert out.returncode == 0, out.stderr[-3000:]
    site = tmp_path / "site"
    index = (site / "index.html").read_text()
    assert "confidence rounds" in index and 'src="img/demo_prediction.jpg"' in index
    assert (site / "img" / "demo_prediction.jpg").is_file()
    nav = re.findall(r":\s*([\w/]+\.md)\s*$", (REPO / "mkdocs.yml").read_text(), re.M)
    assert len(nav) >= 18
    for page in nav:
        built = site / page.replace(".md", "/index.html") if page != "index.md" else None
        assert built is None or built.is_file(), page
    assert "Holm" in (site / "studies" / "index.html").read_text()


def test_a_broken_link_fails_the_build(tmp_path):
    src = tmp_path / "repo"
    src.mkdir()
    shutil.copy(REPO / "mkdocs.yml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "docs", src / "docs")
    page = src / "docs" / "rounds.md"
    page.write_text(page.read_text() + "\nSee [the missing page](nowhere.md).\n")
    out = _build(src, tmp_path / "site")
    assert out.returncode != 0 and "nowhere.md" in out.stderr


def test_the_readme_is_a_front_page_whose_links_exist():
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 300, len(lines)
    assert "make demo" in lines[3] and "make test" in lines[4]
    links = re.findall(r"\]\(([^)#]+)\)", text)
    local = [x for x in links if not x.startswith(("http://", "https://"))]
    assert len(local) >= 15
    for target in local:
        assert (REPO / target).exists(), target
    # no machine paths in the documentation
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        assert "/work/" not in path.read_text(), path
