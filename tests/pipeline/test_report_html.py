"""The pipeline's HTML report is self-contained: every picture exists, nothing comes from elsewhere."""

from __future__ import annotations

from tests.htmlcheck import html_problems


def test_pipeline_report_html_references_only_files_that_exist(demo_rounds):
    root = demo_rounds[0]
    html = root / "report" / "report.html"  # written by the pipeline's report step
    problems, local = html_problems(html)
    assert problems == []
    assert local >= 6  # class pixels, mIoU per round, confusion/per-class/histograms per round
