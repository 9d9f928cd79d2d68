"""The JSON API, called as the signed-in account: every page's data comes from here."""

from urllib.parse import quote

from flask import abort, current_app, g

from app.internal_calls import Answer, request_as


def call(method: str, path: str, *, json=None, query: dict | None = None, data=None,
         content_type: str | None = None, headers: dict | None = None) -> Answer:
    return request_as(current_app._get_current_object(), g.ui_account_id, method, path, json=json, query=query,
                      data=data, content_type=content_type, headers=headers)


def get(path: str, query: dict | None = None):
    """The body of a GET that must succeed for the page to make sense: the API's
    404 (another account's or a deleted thing) becomes the page's 404."""
    answer = call("GET", path, query=query)
    if not answer.ok:
        abort(answer.status if answer.status in (400, 404, 409, 410, 422) else 502, answer.message)
    return answer.body


def path(*segments) -> str:
    """An API path from segments, each quoted: a name or id taken from the page's URL
    cannot add a '/', a '?' or '..' to the path it is put in."""
    return "".join("/" + quote(str(segment), safe="") for segment in segments)


def not_found_as_page(answer: Answer) -> None:
    """The API's 404 (another account's or a deleted thing) as the page's 404."""
    if answer.status == 404:
        abort(404, answer.message)
