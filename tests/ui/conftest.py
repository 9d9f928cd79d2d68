"""Fixtures of the web UI's server tests: a browser-like client signed in with a key."""

import re

import pytest

from ..conftest import new_key

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


class UiClient:
    """A test client that signs in through the sign-in form and sends the
    session's CSRF token with every form it posts (unless told not to)."""

    def __init__(self, app, key: str | None = None):
        self.app = app
        self.client = app.test_client()
        self.csrf = ""
        if key is not None:
            response = self.sign_in(key)
            assert response.status_code == 302, response.get_data(as_text=True)

    def sign_in(self, key: str):
        self.csrf = self.token_from(self.client.get("/ui/sign-in"))
        response = self.client.post("/ui/sign-in", data={"key": key, "csrf_token": self.csrf})
        # Signing in starts a fresh session with a new token: read it from a page.
        self.csrf = self.token_from(self.client.get("/ui/sign-in"))
        return response

    @staticmethod
    def token_from(response) -> str:
        match = CSRF_META.search(response.get_data(as_text=True))
        return match[1] if match else ""

    def get(self, path: str, **kwargs):
        return self.client.get(path, headers={"Accept": "text/html", **kwargs.pop("headers", {})}, **kwargs)

    def post(self, path: str, data: dict | None = None, csrf: bool = True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf)
        return self.client.post(path, data=data, headers={"Accept": "text/html", **kwargs.pop("headers", {})},
                                **kwargs)


@pytest.fixture
def ui_app(make_app):
    return make_app()


@pytest.fixture
def ui_for(ui_app):
    """ui_for("alice"): a UiClient signed in as a new key of that account."""

    def _for(account: str, app=None) -> UiClient:
        target = app or ui_app
        return UiClient(target, new_key(target, account))

    return _for
