"""report.html opens in headless Chromium with no broken images."""

from __future__ import annotations

import pytest
from helpers.store import CHROMIUM, launch_chromium, write_fixture_store

from reports.build import ReportConfig, build_report

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed")


@pytest.mark.parametrize("embed", [True, False], ids=["embedded", "linked"])
@pytest.mark.slow  # ~4 s each in Chromium; smoke: test_report_cli.py
def test_report_html_has_no_broken_images(tmp_path, embed):
    from playwright.sync_api import sync_playwright

    run = write_fixture_store(tmp_path / "run")
    res = build_report(run, ReportConfig(formats=("html",), embed_images=embed))
    html = res.report_dir / "report.html"
    with sync_playwright() as p:
        ctx = launch_chromium(p, tmp_path / "profile")
        try:
            page = ctx.new_page()
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            widths = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            tables = page.evaluate("document.querySelectorAll('table').length")
        finally:
            ctx.close()
    assert len(widths) == len(res.files["figures"]) == 12
    broken = [alt for complete, w, alt in widths if not complete or w <= 0]
    assert not broken, broken
    assert tables >= 5
