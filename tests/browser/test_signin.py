"""The sign-in page as a newcomer meets it (issue 19): readable on a phone (390 px) and on a
desktop (1280 px), with an icon and no request answered 404, and a first-run hint that says how
to get a token. The screenshots land in test-artifacts/browser/signin-*.png."""

from __future__ import annotations

import pytest

from access.console.static import ROOT

pytestmark = pytest.mark.integration

PHONE, DESKTOP = (390, 844), (1280, 900)


def open_signin(tab, size: tuple[int, int]) -> None:
    tab.page.set_viewport_size({"width": size[0], "height": size[1]})
    tab.responses.clear()
    tab.goto("/console/")
    tab.page.wait_for_load_state("networkidle")


def width_of(tab, selector: str) -> float:
    return tab.page.locator(selector).bounding_box()["width"]


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone-390", "desktop-1280"])
def test_the_sign_in_page_reads_well_with_no_request_answered_404(tab, size):
    open_signin(tab, size)
    width = size[0]
    failed = [(r.status, r.url) for r in tab.responses if r.status >= 400]
    assert failed == []
    assert any(r.url.endswith("/console/favicon.svg") and r.status == 200 for r in tab.responses)
    # Nothing wider than the screen, and the hints are not squeezed into a narrow column.
    assert tab.page.evaluate("() => document.documentElement.scrollWidth") <= width
    if size == PHONE:
        assert width_of(tab, "#first-run") >= 0.8 * width
        assert width_of(tab, "#token-hint") >= 0.8 * width
    else:
        assert width_of(tab, "#token-hint") >= 500 and width_of(tab, "#token") >= 500
    hint = tab.page.locator("#first-run")
    assert hint.evaluate("d => d.open") and "callvault users token" in hint.inner_text()
    assert tab.unlabelled() == []
    tab.shot(f"signin-{width}")


def test_every_page_links_the_icon_and_the_browser_default_icon_is_there_too(tab):
    pages = sorted(p.name for p in ROOT.glob("*.html"))
    assert [p for p in pages if 'rel="icon" href="favicon.svg"' not in (ROOT / p).read_text()] == []
    tab.goto("/console/")
    icon = tab.page.evaluate("""async () => {
        const r = await fetch("/favicon.ico");
        return [r.status, r.headers.get("content-type"), r.url];
    }""")
    assert icon[0] == 200 and icon[1].startswith("image/svg+xml") and icon[2].endswith("/console/favicon.svg")


def test_the_first_run_hint_folds_away_once_signed_in(tab):
    tab.sign_in("control-1")
    tab.goto("/console/")
    assert tab.page.locator("#first-run").evaluate("d => d.open") is False
    tab.page.locator("#first-run summary").click()
    assert "callvault users token" in tab.page.locator("#first-run").inner_text()
