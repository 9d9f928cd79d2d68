"""Every path under /ui answers as a page: /ui itself (the README's link), an unknown
page, a method a page does not take. Never the API's JSON errors, which a browser
shows as raw text."""

import re

import pytest

from .conftest import UiClient

ALERT = re.compile(r'<p role="alert">(.*?)</p>', re.S)


def assert_page(response, status: int, says: str) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == status, body
    assert response.content_type.startswith("text/html"), (response.content_type, body)
    assert says in ALERT.search(body)[1], body
    assert "Content-Security-Policy" in response.headers  # the UI's own page, with its headers
    return body


def test_ui_without_the_slash_leads_to_the_ui_signed_in_or_not(ui_app, ui_for):
    for client in (UiClient(ui_app).client, ui_for("alice").client):
        answer = client.get("/ui", headers={"Accept": "text/html"})
        assert answer.status_code == 308 and answer.headers["Location"].endswith("/ui/"), answer.get_data()
    assert UiClient(ui_app).get("/ui/").headers["Location"] == "/ui/sign-in?next=/ui/"
    assert ui_for("alice").get("/ui/").headers["Location"] == "/ui/models"


@pytest.mark.parametrize("path", ["/ui/nope", "/ui/models/", "/ui/a/b/c", "/ui/keys/7/nothing"])
def test_an_unknown_page_asks_to_sign_in_first_then_answers_a_404_page_in_the_uis_layout(ui_app, ui_for, path):
    anonymous = UiClient(ui_app)
    answer = anonymous.get(path)
    assert answer.status_code == 302 and answer.headers["Location"] == f"/ui/sign-in?next={path}"
    # Not a browser navigation: the UI's 401 page, not the API's JSON.
    assert_page(anonymous.post(path), 401, "Sign in again")

    alice = ui_for("alice")
    body = assert_page(alice.get(path), 404, f"There is no page at {path}.")
    assert 'aria-label="Main"' in body and ">Back to your models</a>" in body  # the menu: the UI's layout
    # A stray form post there is told "not found", not "form out of date" (nothing changes on that path).
    assert_page(alice.post(path, csrf=False), 404, "There is no page")


@pytest.mark.parametrize("method,path,allowed", [("GET", "/ui/sign-out", "POST"), ("POST", "/ui/", "GET"),
                                                 ("DELETE", "/ui/models", "GET"), ("PUT", "/ui/keys", "GET, POST")])
def test_a_method_a_page_does_not_take_is_a_405_page_naming_the_ones_it_does(ui_for, method, path, allowed):
    answer = ui_for("alice").client.open(path, method=method, headers={"Accept": "text/html"})
    assert_page(answer, 405, f"{path} does not take {method}; it takes {allowed}.")
    assert answer.headers["Allow"] == allowed


def test_a_missing_static_file_is_a_page_and_paths_outside_the_ui_keep_the_apis_json(ui_app, ui_for):
    assert_page(ui_for("alice").get("/ui/static/no-such.css"), 404, "not found")
    outside = ui_app.test_client().get("/no-such-endpoint", headers={"Accept": "text/html"})
    assert outside.status_code == 401 and outside.is_json  # the API: its key check comes first, as before
