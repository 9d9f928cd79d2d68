"""Every response carries an X-Request-Id; a model's failure is logged under it, with
its traceback, and the client gets the id instead of the exception's text."""

import logging
import re

import pytest

SECRET = "sk_live_51HxSecretLooking0123456789"


def test_a_sane_incoming_request_id_is_kept_on_every_response(client, headers):
    for incoming in ("req-42", "a.B_c-9", "x" * 64):
        ok = client.get("/keys", headers={**headers, "X-Request-Id": incoming})
        refused = client.get("/keys", headers={"X-Request-Id": incoming})  # no key: a 401
        assert ok.status_code == 200 and refused.status_code == 401
        assert ok.headers["X-Request-Id"] == incoming == refused.headers["X-Request-Id"]


@pytest.mark.parametrize("incoming", ["", "two words", "x" * 65, "id;drop", "ünïcode", "a/b"])
def test_an_invalid_incoming_request_id_is_replaced_by_a_new_one(client, headers, incoming):
    response = client.get("/keys", headers={**headers, "X-Request-Id": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/healthz").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.fixture
def failing_emotion_model(client_for, tiny_model_dir, monkeypatch):
    """The built-in emotion model (tiny), rigged so that its forward pass raises."""
    api = client_for(MODEL_DIR=tiny_model_dir)
    model = api.app.extensions["models"].get("emotion", None)

    def broken(items):
        raise RuntimeError(f"tensor dump {SECRET} for input {items[0]['text']!r}")

    monkeypatch.setitem(model.runners, "emotion", broken)  # read when its batcher is made, on first use
    return api.client, api.headers


@pytest.mark.parametrize("incoming", ["req-from-proxy-7", None])
def test_a_failing_model_answers_500_with_the_request_id_and_logs_the_exception(
        failing_emotion_model, caplog, incoming):
    client, headers = failing_emotion_model
    if incoming:
        headers = {**headers, "X-Request-Id": incoming}
    with caplog.at_level(logging.ERROR):
        response = client.post("/emotion", json={"text": "my private note"}, headers=headers)

    request_id = response.headers["X-Request-Id"]
    if incoming:
        assert request_id == incoming  # the proxy's id is kept
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)  # a new one was made
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert SECRET not in body and "my private note" not in body
    assert "failed on this input" in response.json["message"]
    assert f"request id {request_id}" in response.json["message"]
    logged = [r for r in caplog.records if r.exc_info and request_id in r.getMessage()]
    assert len(logged) == 1
    assert SECRET in caplog.text and "Traceback" in caplog.text
