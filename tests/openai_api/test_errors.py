"""Every error under /v1 is in OpenAI's shape, with OpenAI's statuses, wherever it is raised;
the service's own routes keep theirs."""

import openai
import pytest

from model_registry.batcher import DeadlineExceeded
from web.errors import InvalidInput, ModelUnavailable, TooManyRequests

from ..conftest import new_key
from .conftest import assert_openai_error

EMBED = {"input": "hello", "model": "english"}


def test_a_missing_or_unknown_key_is_401_invalid_api_key(serve):
    service = serve()
    message = assert_openai_error(service.post("/v1/embeddings", EMBED), 401, "invalid_request_error",
                                  code="invalid_api_key")
    assert "x-api-key" in message and "Authorization: Bearer" in message
    assert_openai_error(service.get("/v1/models", key="ik_wrong"), 401, "invalid_request_error",
                        code="invalid_api_key")

    with pytest.raises(openai.AuthenticationError) as refused:
        service.sdk("ik_wrong").models.list()
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert refused.value.type == "invalid_request_error"


def test_an_unknown_route_and_a_wrong_method_are_openai_errors(client, headers):
    assert_openai_error(client.get("/v1/nope", headers=headers), 404, "invalid_request_error", code="unknown_url")
    assert_openai_error(client.get("/v1", headers=headers), 404, "invalid_request_error", code="unknown_url")
    assert_openai_error(client.get("/v1/embeddings", headers=headers), 405, "invalid_request_error",
                        code="method_not_allowed")


def test_the_openai_shape_stops_at_the_v1_path_boundary(client, headers):
    response = client.get("/v1beta/models", headers=headers)  # not under /v1
    assert response.status_code == 404 and response.json["code"] == 404 and "error" not in response.json


def test_an_oversized_body_is_413_in_openai_shape(make_app):
    app = make_app(MAX_CONTENT_LENGTH=1000, MAX_EMBEDDING_BODY_BYTES=1500)
    headers = {"Authorization": f"Bearer {new_key(app, 'alice')}"}
    response = app.test_client().post("/v1/completions", json={"prompt": "x" * 2000, "model": "gpt2-large"},
                                      headers=headers)
    assert "INFER_MAX_CONTENT_LENGTH" in assert_openai_error(response, 413, "invalid_request_error")
    response = app.test_client().post("/v1/embeddings", json={"input": "x" * 2000, "model": "english"},
                                      headers=headers)
    assert "INFER_MAX_EMBEDDING_BODY_BYTES" in assert_openai_error(response, 413, "invalid_request_error")


def v1_post_paths(app) -> list[str]:
    return sorted(rule.rule for rule in app.url_map.iter_rules()
                  if "POST" in rule.methods and rule.rule.startswith("/v1/"))


@pytest.mark.parametrize("raw", ["{bad json", "[" * 100_000])
def test_invalid_or_too_deeply_nested_json_is_400_on_every_v1_post_route(app, client, headers, raw):
    paths = v1_post_paths(app)
    assert "/v1/embeddings" in paths
    for path in paths:
        response = client.post(path, data=raw, headers={**headers, "content-type": "application/json"})
        assert "not valid JSON" in assert_openai_error(response, 400, "invalid_request_error")


@pytest.mark.parametrize(
    "error,status,error_type,param,code,retry_after",
    [
        (TooManyRequests("The queue is full.", headers={"Retry-After": "1"}), 429, "requests", None,
         "rate_limit_exceeded", "1"),
        (ModelUnavailable.just_unloaded("all-MiniLM-L6-v2"), 503, "server_error", None, None, "1"),
        (DeadlineExceeded("Timed out waiting for the model."), 504, "server_error", None, None, None),
        # The service's 422 is OpenAI's 400; reason and param become code and param.
        (InvalidInput("The input is too long.", reason="context_length_exceeded", param="input"), 400,
         "invalid_request_error", "input", "context_length_exceeded", None),
    ],
)
def test_errors_from_the_model_layer_keep_their_meaning_and_headers(app, client, headers, monkeypatch, error,
                                                                    status, error_type, param, code, retry_after):
    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(app.extensions["models"].cache, "get", refuse)
    response = client.post("/v1/embeddings", json=EMBED, headers=headers)
    assert assert_openai_error(response, status, error_type, param=param, code=code) == error.message
    assert response.headers.get("Retry-After") == retry_after

    # The same error on the service's own route keeps the service's shape and status.
    own = client.post("/text-vectorisation", json={"text": "hello"}, headers=headers)
    assert own.status_code == error.status
    assert own.json == {"code": error.status, "status": own.json["status"], "message": error.message}
    assert own.headers.get("Retry-After") == retry_after


def test_an_unexpected_error_is_a_500_server_error_without_details(app, client, headers, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["models"].cache, "get", broken)
    response = client.post("/v1/embeddings", json=EMBED, headers=headers)
    message = assert_openai_error(response, 500, "server_error")
    assert response.headers["X-Request-Id"] in message and "secret" not in response.get_data(as_text=True)


def test_an_unknown_route_says_so_with_a_code_and_names_where_the_routes_are(client, headers):
    message = assert_openai_error(client.post("/v1/responses", json={}, headers=headers), 404,
                                  "invalid_request_error", code="unknown_url")
    assert "POST /v1/responses" in message and "/docs" in message
    message = assert_openai_error(client.get("/v1/embeddings", headers=headers), 405, "invalid_request_error",
                                  code="method_not_allowed")
    assert "GET /v1/embeddings" in message and "POST" in message


def test_a_nested_validation_message_names_the_field_by_its_path_not_a_python_repr(client, headers):
    response = client.post("/v1/chat/completions", headers=headers, json={
        "model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": 5}]})
    message = assert_openai_error(response, 400, "invalid_request_error", param="messages")
    assert "messages[0].content" in message, message
    assert "{" not in message and "[" not in message.replace("messages[0]", ""), message
