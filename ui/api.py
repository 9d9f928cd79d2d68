"""The JSON API, called as the signed-in account over an in-process request: what
the playground (ui/playground.py) still runs through. Every other page calls the
domain services directly (ui/acting.py)."""

from flask import abort, current_app, g

from web.internal_calls import Answer, request_as


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
