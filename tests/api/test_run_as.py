"""api/prediction_dispatch.py run_as: an inference route's work run as an account,
without an HTTP request, answers what the route answers the same body sent with
the account's key (status and JSON body), for a task route and for /v1, good
bodies and bad; it counts once in the account's usage."""

import pytest

from api.prediction_dispatch import run_as
from core.keys import find_active_key, hash_key
from trainers.tabular import TabularTrainer

from ..tasks.test_predict import IRIS_ROW, add_trained_version, iris_rows

EMOTION = {"text": "I am so happy today"}
COMPLETION = {"model": "gpt2-large", "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}


@pytest.fixture
def api(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir)
    # bob's own model, which alice's key cannot reach
    api.bob = api.headers_for("bob")
    add_trained_version(api.app, "bob", "bobs-iris", TabularTrainer(), iris_rows(), [], "tabular",
                        {"n_estimators": 5})
    return api


def account_of(api, key: str) -> int:
    with api.app.extensions["db"].sessions() as session:
        return find_active_key(session, hash_key(key)).account_id


def over_http(api, path: str, body: dict) -> tuple[int, object]:
    response = api.client.post(path, json=body, headers=api.headers)
    return response.status_code, response.json


def without_reply_identity(answer):
    """A completion's answer less what differs at each call (its id and time)."""
    return {key: value for key, value in answer.items() if key not in ("id", "created")}


@pytest.mark.parametrize("path, body, expected", [
    ("/emotion", EMOTION, 200),
    ("/emotion", {"text": 5}, 422),  # the schema's refusal
    ("/emotion", {**EMOTION, "unknown": 1}, 422),  # a field the schema does not know
    ("/emotion", {**EMOTION, "model": "no-such-model"}, 404),
    ("/predict", {"features": IRIS_ROW, "model": "bobs-iris"}, 404),  # another account's model
    ("/v1/embeddings", {"input": "", "model": "english"}, 400),  # OpenAI's status and shape
    ("/v1/embeddings", {"input": "hello", "model": "no-such-model"}, 404),  # model_not_found
    ("/v1/embeddings", {"input": "hello", "model": "bobs-iris"}, 404),
    ("/v1/completions", {**COMPLETION, "max_tokens": 0}, 400),
    ("/v1/chat/completions", {"model": "gpt2-large", "messages": []}, 400),
])
def test_a_run_answers_what_the_route_answers(api, path, body, expected):
    status, answer = over_http(api, path, body)
    assert status == expected, answer
    assert run_as(api.app, account_of(api, api.key), path, body) == (status, answer)


def test_a_completion_run_answers_the_routes_completion(api):
    status, answer = over_http(api, "/v1/completions", COMPLETION)
    ran_status, ran = run_as(api.app, account_of(api, api.key), "/v1/completions", COMPLETION)
    assert (ran_status, without_reply_identity(ran)) == (status, without_reply_identity(answer)) == (200, {
        **without_reply_identity(answer), "object": "text_completion", "model": "gpt2-large"})
    assert ran["id"].startswith("cmpl-") and ran["id"] != answer["id"]


def test_the_other_accounts_model_answers_its_owner(api):
    status, answer = run_as(api.app, account_of(api, api.bob["x-api-key"]), "/predict",
                            {"features": IRIS_ROW, "model": "bobs-iris"})
    assert status == 200 and answer["prediction"] == "setosa"


def test_a_run_counts_once_in_the_accounts_usage(api):
    carol = api.headers_for("carol")
    account = account_of(api, carol["x-api-key"])
    assert run_as(api.app, account, "/emotion", EMOTION)[0] == 200
    assert run_as(api.app, account, "/emotion", {"text": 5})[0] == 422
    assert run_as(api.app, account, "/emotion", EMOTION, background=True)[0] == 200
    usage = api.client.get("/usage", headers=carol).json
    assert {(row["task"], row["model"]): (row["requests"], row["errors"]) for row in usage["totals"]} == {
        ("emotion", "english"): (3, 1)}
    assert api.client.get("/usage", headers=api.headers).json["totals"] == []  # alice's own: nothing


def test_a_stream_is_refused_by_name(api):
    status, answer = run_as(api.app, account_of(api, api.key), "/v1/completions", {**COMPLETION, "stream": True})
    assert status == 400 and answer["error"]["param"] == "stream"
