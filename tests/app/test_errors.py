"""Bad input gets a 4xx JSON error that names what to fix; never a 500."""

import re

import pytest


def post(client, headers, body=None, **kwargs):
    return client.post("/text-vectorisation", json=body, headers=headers, **kwargs)


def assert_error(response, status, *words):
    assert response.status_code == status, response.json
    assert set(response.json) >= {"code", "status", "message"}
    assert response.json["code"] == status
    for word in words:
        assert word in response.json["message"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"text": 5}, "text"),
        ({"text": {"a": 1}}, "text"),
        ({"text": ["ok", 3]}, "text"),
        ({"text": "ok", "model": 7}, "model"),
        ({}, "text"),
    ],
)
def test_wrong_types_name_the_field(client, headers, body, field):
    response = post(client, headers, body)
    assert_error(response, 422, field)
    assert field in response.json["errors"]


def test_empty_list_is_rejected(client, headers):
    assert_error(post(client, headers, {"text": []}), 422, "empty")


def test_over_long_batch_is_rejected_with_the_limit(client_for):
    api = client_for(MAX_BATCH_SIZE=3, MAX_EMBEDDING_INPUTS=5)
    response = post(api.client, api.headers, {"text": ["a"] * 6})  # a vectorising route: its own limit
    assert_error(response, 422, "at most 5", "INFER_MAX_EMBEDDING_INPUTS")
    response = api.client.post("/text-classification", json={"text": ["a"] * 4, "labels": ["x"]},
                               headers=api.headers)
    assert_error(response, 422, "at most 3", "INFER_MAX_BATCH_SIZE")


def test_over_long_text_is_rejected_with_the_limit(client_for):
    api = client_for(MAX_TEXT_LENGTH=10)
    response = post(api.client, api.headers, {"text": ["short", "x" * 11]})
    assert_error(response, 422, "limit is 10")
    assert list(response.json["errors"]["text"]) == ["1"]  # the offending item's index


def test_oversized_body_is_413(client_for):
    api = client_for(MAX_CONTENT_LENGTH=1000, MAX_EMBEDDING_BODY_BYTES=3000)
    response = api.client.post("/text-classification", json={"text": "x" * 2000, "labels": ["a"]},
                               headers=api.headers)
    assert_error(response, 413, "INFER_MAX_CONTENT_LENGTH")
    response = post(api.client, api.headers, {"text": "x" * 4000})  # the vectorising routes' own limit
    assert_error(response, 413, "INFER_MAX_EMBEDDING_BODY_BYTES")


def test_unknown_model_is_404_listing_the_choices(client, headers):
    response = post(client, headers, {"text": "hi", "model": "no-such-model"})
    assert_error(response, 404, "no-such-model", "english", "multilingual")


def test_unknown_field_is_rejected_by_name(client, headers):
    response = post(client, headers, {"text": "hi", "temprature": 1})
    assert_error(response, 422, "temprature", "Unknown field")


@pytest.mark.parametrize("raw", ["{bad json", '{"text": "a",}', "\xff\xfe"])
def test_invalid_json_is_400(client, headers, raw):
    response = client.post(
        "/text-vectorisation", data=raw.encode("latin-1"), headers={**headers, "content-type": "application/json"}
    )
    assert_error(response, 400, "not valid JSON")


def test_json_that_is_not_an_object_is_422(client, headers):
    assert_error(post(client, headers, ["text"]), 422)


def test_json_without_a_json_content_type_is_still_read(client, headers):
    response = client.post("/text-vectorisation", data='{"text": 1}', headers=headers)
    assert_error(response, 422, "text")  # parsed: the error is about the value, not a missing body


def test_unknown_path_and_wrong_method_are_json(client, headers):
    assert_error(client.get("/nope", headers=headers), 404)
    assert_error(client.get("/text-vectorisation", headers=headers), 405)


def test_an_unexpected_error_is_a_json_500_without_details(app, client, headers, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["models"], "load", broken)  # the catalogue model's load, under the resolver
    response = post(client, headers, {"text": "hi"})
    assert_error(response, 500, "service log", f"request id {response.headers['X-Request-Id']}")
    assert "secret" not in response.get_data(as_text=True)


def json_post_paths(app) -> list[str]:
    """The service's own POST routes that read a body (/v1 answers in OpenAI's shape:
    tests/openai_api checks it there); an action such as /jobs/{id}/cancel reads none,
    and a public route addressed by its secret (a prediction URL) answers 404 to
    any body until the secret is right (tests/predictions checks its bad bodies)."""
    def reads_a_body(rule) -> bool:
        view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
        documented = getattr(getattr(view_class, "post", None), "_apidoc", {})
        return view_class is None or "arguments" in documented or "manual_doc" in documented

    # A number in the path (/models/{name}/versions/{n}/evaluate) is sent as one: the route must be reached.
    return sorted(re.sub(r"<int:\w+>", "1", rule.rule) for rule in app.url_map.iter_rules()
                  if "POST" in rule.methods and not rule.rule.startswith("/v1/") and reads_a_body(rule)
                  and rule.endpoint not in app.config["PUBLIC_ENDPOINTS"] and not rule.endpoint.startswith("ui."))


@pytest.mark.parametrize("raw", ["[" * 100_000, '{"a": ' * 100_000])
def test_a_body_nested_too_deeply_is_400_on_every_json_endpoint(app, client, headers, raw):
    paths = json_post_paths(app)
    assert {"/text-vectorisation", "/custom", "/keys", "/upload-url"} <= set(paths)
    for path in paths:
        response = client.post(path, data=raw, headers={**headers, "content-type": "application/json"})
        assert_error(response, 400, "not valid JSON", "nested too deeply")


def nested(depth: int):
    value = "leaf"
    for _ in range(depth):
        value = {"inner": [value]}
    return value


def test_a_nested_body_within_reason_is_still_read(client, headers):
    # /custom accepts any fields: the body is parsed and the model looked up (none here).
    response = client.post("/custom", json={"model": "mine", "data": nested(100)}, headers=headers)
    assert_error(response, 404, "mine")


def test_request_get_json_answers_a_body_nested_too_deeply_with_a_400_not_a_recursion_error(app):
    from flask import request
    from werkzeug.exceptions import BadRequest

    with app.test_request_context("/", method="POST", data="[" * 100_000, content_type="application/json"):
        with pytest.raises(BadRequest) as refused:
            request.get_json()
    assert refused.value.code == 400  # Flask hides the parser's message unless debugging
