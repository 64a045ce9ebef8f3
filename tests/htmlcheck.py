"""Checks of the HTML reports: every referenced file exists, nothing is fetched from elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

REF_ATTRS = {"src", "href", "srcset", "poster", "data", "action"}
PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.css: list[str] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in = tag
        for k, v in attrs:
            if k in REF_ATTRS and v:
                self.refs.append((tag, k, v))
            elif k == "style" and v:
                self.css.append(v)

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "style":
            self.css.append(data)
        elif self._in == "title":
            self.title += data


def html_problems(path: str | Path) -> tuple[list[str], int]:
    """(problems, number of local files referenced) of the HTML page at `path`.

    A problem is a reference to another host or scheme (http, https, protocol-relative
    //, file; `data:` and `#fragment` are self-contained), a referenced local file that
    does not exist, an image that is not a PNG file, CSS `@import` or `url(...)` (the
    reports' style is inline and loads nothing), a `<script>`, or a page without
    `<html>`, `<head>`, `<title>` and `<body>`.
    """
    path = Path(path)
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    problems = [f"no <{t}>" for t in ("html", "head", "title", "body") if t not in page.tags]
    if not page.title.strip():
        problems.append("empty <title>")
    if "script" in page.tags:
        problems.append("a <script>")
    problems += [f"CSS loads {m}" for css in page.css for m in re.findall(r"@import|url\(", css)]
    local = 0
    for tag, attr, ref in page.refs:
        parts = urlsplit(ref)
        if parts.scheme == "data" or (not parts.scheme and not parts.path and parts.fragment):
            continue
        if parts.scheme or parts.netloc or ref.startswith("//"):
            problems.append(f"<{tag} {attr}={ref!r}> is outside the report")
            continue
        target = path.parent / unquote(parts.path)
        local += 1
        if not target.is_file():
            problems.append(f"<{tag} {attr}={ref!r}>: {target} does not exist")
        elif tag == "img" and target.read_bytes()[:8] != PNG:
            problems.append(f"<img src={ref!r}>: {target} is not a PNG file")
    return problems, local
