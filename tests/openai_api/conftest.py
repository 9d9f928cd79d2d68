"""/v1 is driven over real HTTP with OpenAI's own Python SDK, as a client would use it."""

import openai
import pytest
import requests

from app import create_app

from ..conftest import LiveServer, new_key


class Service:
    """An app behind a live server, with the ways a test talks to it."""

    def __init__(self, app, url: str):
        self.app = app
        self.url = url

    def key(self, account: str = "alice") -> str:
        return new_key(self.app, account)

    def sdk(self, key: str) -> openai.OpenAI:
        # No retries: a test wants the first answer, and 429/5xx would be retried.
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    def post(self, path: str, body, key: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.post(self.url + path, json=body, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, key: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.get(self.url + path, headers=headers, timeout=60)


@pytest.fixture
def serve(make_app):
    """serve(**config): a Service for an app with these settings (see make_app)."""
    servers = []

    def _serve(**config) -> Service:
        app = make_app(**config)
        server = LiveServer(app).__enter__()
        servers.append(server)
        return Service(app, server.url)

    yield _serve
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def packaged_service(tmp_path_factory):
    """One service per module on the default settings: english is the real packaged
    all-MiniLM-L6-v2, loaded once for the module's tests."""
    data_dir = tmp_path_factory.mktemp("v1") / "data"
    app = create_app({"DATA_DIR": str(data_dir), "BOOTSTRAP_KEY": False, "TESTING": True, "BUILDER": False})
    with LiveServer(app) as server:
        yield Service(app, server.url)


def assert_openai_error(response, status: int, error_type: str, param=None, code=None) -> str:
    """The exact OpenAI error shape (a requests or a Flask test response); returns the message."""
    assert response.status_code == status, response.text
    body = response.json() if callable(response.json) else response.json
    assert list(body) == ["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == error_type
    assert body["error"]["param"] == param
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]
