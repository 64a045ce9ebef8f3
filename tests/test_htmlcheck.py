"""The HTML report checker finds what it is meant to find (its users: the report tests)."""

from __future__ import annotations

from tests.htmlcheck import PNG, html_problems


def test_checker_accepts_a_self_contained_page_and_flags_each_kind_of_problem(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG + b"rest")
    (tmp_path / "b.png").write_bytes(b"GIF89a")
    good = tmp_path / "good.html"
    good.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>t</title>"
        "<style>img{max-width:100%}</style></head><body><img alt='a' src='a.png'>"
        "<a href='#top'>top</a><img src='data:image/png;base64,AAAA'></body></html>"
    )
    assert html_problems(good) == ([], 1)
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><head><title>t</title><link rel=stylesheet href='https://cdn.example/x.css'>"
        "<style>@import 'x.css';</style></head><body><img src='missing.png'>"
        "<img src='b.png'><img src='//host/y.png'><script src='s.js'></script></body></html>"
    )
    problems, local = html_problems(bad)
    text = "\n".join(problems)
    assert local == 3
    for needle in ("cdn.example", "@import", "missing.png", "not a PNG", "//host", "<script>"):
        assert needle in text, (needle, text)
