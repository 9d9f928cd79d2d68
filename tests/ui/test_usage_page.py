"""The Usage page: the account's requests per task and model in a table and a chart over
the chosen window; another account's requests never appear."""

import html
import json
import re
import time

import pytest
from sqlalchemy import select

from core.tables import Account

from ..conftest import new_key

HAPPY = {"text": "I am so happy today"}
TABLE = re.compile(r'<table id="usage-table">.*?<tbody>(.*?)</tbody>', re.S)
ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
CELL = re.compile(r"<td>(.*?)</td>", re.S)
CHART_DATA = re.compile(r'<script type="application/json" id="usage-data">(.*?)</script>', re.S)


@pytest.fixture
def ui_app(make_app, tiny_model_dir):
    return make_app(MODEL_DIR=tiny_model_dir)


def table_rows(page: str) -> list[list[str]]:
    body = TABLE.search(page)[1]
    return [[html.unescape(cell.strip()) for cell in CELL.findall(row)] for row in ROW.findall(body)]


def chart_data(page: str) -> dict:
    return json.loads(CHART_DATA.search(page)[1])


def send(app, key: str, body: dict) -> int:
    return app.test_client().post("/emotion", json=body, headers={"x-api-key": key}).status_code


def test_the_page_shows_the_accounts_requests_per_task_and_model(ui_app, ui_for):
    alice = ui_for("alice")
    alice_key, bob_key = new_key(ui_app, "alice"), new_key(ui_app, "bob")
    assert [send(ui_app, alice_key, body) for body in (HAPPY, HAPPY, {"text": 5})] == [200, 200, 422]
    assert send(ui_app, bob_key, {**HAPPY, "model": "bobs-model"}) == 404

    response = alice.get("/ui/usage")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    rows = table_rows(page)
    assert [row[:4] for row in rows] == [["emotion", "english", "3", "1"]]
    assert rows[0][4].endswith(" ms") and rows[0][5].endswith(" ms")
    assert "3 requests, 1 error." in page
    assert "bobs-model" not in page
    chart = chart_data(page)
    assert sum(chart["requests"]) == 3 and sum(chart["errors"]) == 1
    assert f'data-points="{len(chart["time"])}"' in page
    assert chart["time"] == sorted(chart["time"]) and len(set(chart["time"])) == len(chart["time"])
    assert [value is None for value in chart["latency_ms"]] == [count == 0 for count in chart["requests"]]
    # All of them in the last hour: the first view is that hour, not a day with a spike at its right edge.
    assert '<option value="1" selected>' in page and 'id="window-note"' in page
    assert 'id="usage-chart"' in page and "usage.js" in page and "uPlot.iife.min.js" in page


def test_another_account_sees_only_its_own_usage(ui_app, ui_for):
    assert send(ui_app, new_key(ui_app, "alice"), HAPPY) == 200

    page = ui_for("bob").get("/ui/usage").get_data(as_text=True)
    assert table_rows(page) == []
    assert "No requests in this window." in page and "english" not in page
    assert sum(chart_data(page)["requests"]) == 0


def test_the_window_is_one_of_the_choices_and_sets_the_charts_buckets(ui_app, ui_for):
    alice = ui_for("alice")
    assert send(ui_app, new_key(ui_app, "alice"), HAPPY) == 200

    week = alice.get("/ui/usage?hours=168").get_data(as_text=True)
    assert '<option value="168" selected>' in week and "The last 7 days" in week
    assert chart_data(week)["step_seconds"] == 3600 and sum(chart_data(week)["requests"]) == 1
    hour = chart_data(alice.get("/ui/usage?hours=1").get_data(as_text=True))
    assert hour["step_seconds"] == 300 and len(hour["time"]) in (13, 14)  # the bucket holding an hour ago, to now
    assert 'id="window-note"' not in week  # a window chosen is not explained as one fitted
    for odd in ("7", "abc", "-1"):  # as if none was chosen: the window that holds the requests
        assert '<option value="1" selected>' in alice.get(f"/ui/usage?hours={odd}").get_data(as_text=True)


def account_id(app, name: str) -> int:
    with app.extensions["db"].sessions() as session:
        return session.scalar(select(Account.id).where(Account.name == name))


@pytest.mark.parametrize("hours_ago,window", [(0, 1), (2, 6), (20, 24), (30, 168), (None, 24)])
def test_the_first_view_is_the_shortest_window_that_holds_every_request(ui_app, ui_for, hours_ago, window):
    alice = ui_for("alice")
    if hours_ago is not None:
        ui_app.extensions["usage"].record(account_id(ui_app, "alice"), "emotion", "english", 200, 12.0,
                                          at=time.time() - hours_ago * 3600)
        ui_app.extensions["usage"].record(account_id(ui_app, "alice"), "emotion", "english", 200, 8.0)
    page = alice.get("/ui/usage").get_data(as_text=True)
    assert f'<option value="{window}" selected>' in page
    chart = chart_data(page)
    assert sum(chart["requests"]) == (0 if hours_ago is None else 2)
    # Said only when there is something to fit: an account with no requests sees the day, plainly.
    assert ('id="window-note"' in page) == (hours_ago is not None)


def test_only_windows_within_the_retention_are_offered(make_app, ui_for):
    app = make_app(USAGE_RETENTION_HOURS=6)
    page = ui_for("alice", app=app).get("/ui/usage?hours=24").get_data(as_text=True)
    assert re.findall(r'<option value="(\d+)"', page) == ["1", "6"]
    assert '<option value="6" selected>' in page


def test_the_page_needs_a_session(ui_app):
    response = ui_app.test_client().get("/ui/usage", headers={"Accept": "text/html"})
    assert response.status_code == 302 and "/ui/sign-in" in response.headers["Location"]
