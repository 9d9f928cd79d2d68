"""The Usage page in a real browser for an account whose first requests are minutes old:
the first view is the last hour (not a day with a spike at its right edge), the chart's
legend reads the window's totals and then the hovered bucket's, never uPlot's "--"."""

import re

from playwright.sync_api import expect

from .conftest import PHONE

BAD_BODY = {"text": 5}  # refused by the schema (422) before any model is loaded: counted, as an error


def test_a_new_accounts_first_requests_fill_the_first_view(open_tab, live):
    key = live.key("usage")
    client = live.api()
    for _ in range(3):
        assert client.post("/emotion", json=BAD_BODY, headers={"x-api-key": key}).status_code == 422

    for viewport, suffix in ((None, ""), (PHONE, "-phone")):
        tab = open_tab(viewport=viewport)
        tab.sign_in(key)
        tab.menu("Usage").click()
        page = tab.page
        expect(page.locator("#usage-hours")).to_have_value("1")
        expect(page.locator("#window-note")).to_contain_text("The shortest window that holds all your requests")
        expect(page.locator("#usage-summary")).to_have_text("3 requests, 3 errors.")
        chart = page.locator("#usage-chart")
        expect(chart.locator("canvas")).to_be_visible()
        legend = chart.locator(".u-legend")
        expect(legend).to_contain_text("the whole window")
        expect(legend).to_contain_text(re.compile(r"Requests:?\s*3"))
        expect(legend).not_to_contain_text("--")
        tab.shot("usage-first-view" + suffix)

        page.locator("#usage-chart .u-over").hover()  # a bucket: its own figures and times
        expect(legend).not_to_contain_text("the whole window")
        expect(legend).not_to_contain_text("--")
