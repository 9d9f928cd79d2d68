"""Per-account rate limits over HTTP: an account over its requests or tokens per
minute gets 429 with Retry-After and OpenAI's x-ratelimit-* headers, at once and
before any work, while another account keeps being served; limits that are off
cost nothing. Where the counters live (across processes) is
tests/app/test_rate_limit_storage.py."""

import os
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from core.settings import Settings
from web.rate_limits import Window, duration
from web.settings import settings_of
from web.token_estimates import chat_completion, completion, text_generation

from ..conftest import LiveServer, new_key, until
from ..openai_api.conftest import assert_openai_error

TEXT = {"text": "I am so happy today"}
CHAT = {"model": "gpt2-large", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 30, "temperature": 0}
RESET = re.compile(r"^(\d+m)?\d+(\.\d+)?s$|^\d+ms$")


@pytest.fixture
def serve(make_app, tiny_model_dir):
    """serve(**settings): (app, base URL) of a live server on the tiny models."""
    servers = []

    def _serve(**settings):
        app = make_app(MODEL_DIR=tiny_model_dir, **settings)
        server = LiveServer(app).__enter__()
        servers.append(server)
        return app, server.url

    yield _serve
    for server in servers:
        server.__exit__(None, None, None)


def post(url, path, key, body, **headers):
    return requests.post(url + path, json=body, headers={"x-api-key": key, **headers}, timeout=60)


def counters(app) -> int:
    with sqlite3.connect(app.extensions["rate_limits"].storage.path) as connection:
        return connection.execute("SELECT count(*) FROM counters").fetchone()[0]


def test_limits_that_are_off_create_no_storage_and_add_no_headers(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir)
    for _ in range(3):
        answer = api.client.post("/emotion", json=TEXT, headers=api.headers)
        assert answer.status_code == 200
        assert not [name for name in answer.headers.keys() if name.lower().startswith("x-ratelimit")]
    assert api.app.extensions["rate_limits"].storage is None
    assert not os.path.exists(os.path.join(settings_of(api.app).data_dir, "rate_limits.db"))


def test_a_flood_over_the_requests_limit_gets_429_at_once_and_another_account_is_served(serve):
    app, url = serve(ACCOUNT_REQUESTS_PER_MIN=5)
    mallory, alice = new_key(app, "mallory"), new_key(app, "alice")
    assert post(url, "/emotion", new_key(app, "carol"), TEXT).status_code == 200  # the model and its threads
    threads_before = threading.active_count()

    with ThreadPoolExecutor(20) as pool:
        flood = list(pool.map(lambda _: post(url, "/emotion", mallory, TEXT), range(60)))
    assert sorted(answer.status_code for answer in flood) == [200] * 5 + [429] * 55
    for answer in flood:
        assert answer.headers["x-ratelimit-limit-requests"] == "5"
        assert RESET.match(answer.headers["x-ratelimit-reset-requests"])
        if answer.status_code == 429:
            assert answer.headers["x-ratelimit-remaining-requests"] == "0"
            assert 1 <= int(answer.headers["Retry-After"]) <= 60
            body = answer.json()
            assert body["code"] == 429 and body["status"] == "Too Many Requests"
            assert "5 requests per minute" in body["message"] and "it has used 5" in body["message"]
            assert f"Retry in {answer.headers['Retry-After']} s" in body["message"]
            assert "INFER_ACCOUNT_REQUESTS_PER_MIN" in body["message"]

    # Alice has a budget of her own, and is served in full.
    remaining = []
    for _ in range(5):
        answer = post(url, "/emotion", alice, TEXT)
        assert answer.status_code == 200 and answer.json()["output"]
        remaining.append(answer.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["4", "3", "2", "1", "0"]
    assert post(url, "/emotion", alice, TEXT).status_code == 429

    # Within bounds: the health probe answers, the flood's threads are gone, two
    # counters per account (this window and the last), whatever the flood's size.
    assert requests.get(url + "/healthz", timeout=10).status_code == 200
    until(lambda: threading.active_count() <= threads_before, timeout_s=30)
    assert counters(app) <= 6


def test_routes_that_run_no_model_are_not_limited(serve):
    app, url = serve(ACCOUNT_REQUESTS_PER_MIN=1)
    key = new_key(app, "mallory")
    assert post(url, "/emotion", key, TEXT).status_code == 200
    assert post(url, "/emotion", key, TEXT).status_code == 429
    headers = {"x-api-key": key}
    for path in ("/keys", "/usage", "/predictions", "/v1/models", "/healthz"):
        answer = requests.get(url + path, headers=headers, timeout=30)
        assert answer.status_code == 200, (path, answer.text)
        assert "x-ratelimit-limit-requests" not in answer.headers
    limits = requests.get(url + "/limits", headers=headers, timeout=30).json()
    assert limits["requests_per_min"] == 1 and limits["remaining_requests"] == 0
    assert 0 < limits["reset_requests_s"] <= 120


def test_an_asynchronous_submit_is_charged_once_when_it_is_queued(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05, ACCOUNT_REQUESTS_PER_MIN=2)
    queued = api.client.post("/emotion", json=TEXT, headers={**api.headers, "Prefer": "respond-async"})
    assert queued.status_code == 202 and queued.headers["x-ratelimit-remaining-requests"] == "1"

    def finished():
        answer = api.client.get(f"/predictions/{queued.json['id']}", headers=api.headers).json
        return answer["status"] == "succeeded"

    until(finished, timeout_s=60)
    # Running it (a replay through the app) cost nothing: one request is left.
    assert api.client.post("/emotion", json=TEXT, headers=api.headers).status_code == 200
    refused = api.client.post("/emotion", json=TEXT, headers={**api.headers, "Prefer": "respond-async"})
    assert refused.status_code == 429  # refused before it is queued
    assert len(api.client.get("/predictions", headers=api.headers).json["data"]) == 1


def test_generation_tokens_per_minute_on_chat_completions_in_openais_shape(serve):
    app, url = serve(ACCOUNT_TOKENS_PER_MIN=100)
    mallory, alice = new_key(app, "mallory"), new_key(app, "alice")

    # "Hi" is 1 token by the estimate (characters / 4), plus max_tokens 30 x 1 choice.
    remaining = []
    for _ in range(3):
        answer = post(url, "/v1/chat/completions", mallory, CHAT)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-ratelimit-limit-tokens"] == "100"
        assert "x-ratelimit-limit-requests" not in answer.headers  # no requests limit is set
        remaining.append(answer.headers["x-ratelimit-remaining-tokens"])
    assert remaining == ["69", "38", "7"]

    refused = post(url, "/v1/chat/completions", mallory, CHAT)
    message = assert_openai_error(refused, 429, "requests", code="rate_limit_exceeded")
    assert "100 generation tokens per minute" in message and "this one 31" in message
    assert "it has used 93" in message and int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["x-ratelimit-remaining-tokens"] == "7"
    # The budget is in tokens: a smaller request still fits (1 + 5 of the 7 left).
    assert post(url, "/v1/chat/completions", mallory, {**CHAT, "max_tokens": 5}).status_code == 200

    # OpenAI's SDK sees its own RateLimitError.
    sdk = openai.OpenAI(base_url=url + "/v1", api_key=mallory, max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(**CHAT)
    assert raised.value.code == "rate_limit_exceeded"

    # Another account's chats are served from its own budget.
    answer = post(url, "/v1/chat/completions", alice, CHAT)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["role"] == "assistant"
    assert answer.headers["x-ratelimit-remaining-tokens"] == "69"


def test_a_request_larger_than_the_whole_tokens_budget_is_told_it_can_never_pass(serve):
    app, url = serve(ACCOUNT_TOKENS_PER_MIN=100)
    refused = post(url, "/v1/chat/completions", new_key(app, "mallory"), {**CHAT, "max_tokens": 120})
    message = assert_openai_error(refused, 429, "requests", code="rate_limit_exceeded")
    assert "can never pass" in message and "Lower max_tokens" in message
    assert "Retry-After" not in refused.headers  # retrying would not help


def test_an_operators_change_to_an_accounts_limit_counts_what_it_already_used(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, ACCOUNT_REQUESTS_PER_MIN=10)
    for _ in range(3):
        assert api.client.post("/emotion", json=TEXT, headers=api.headers).status_code == 200
    runner = api.app.test_cli_runner()
    assert runner.invoke(args=["accounts", "limits", "alice", "--requests-per-min", "4"]).exit_code == 0
    assert api.client.post("/emotion", json=TEXT, headers=api.headers).status_code == 200
    assert api.client.post("/emotion", json=TEXT, headers=api.headers).status_code == 429
    runner.invoke(args=["accounts", "limits", "alice", "--requests-per-min", "0"])
    assert api.client.post("/emotion", json=TEXT, headers=api.headers).status_code == 200


# --- the arithmetic -----------------------------------------------------------------------

def test_retry_after_is_when_the_cost_fits_and_reset_when_the_whole_budget_is_back():
    fresh = Window(limit=10, previous=0, previous_ttl=0, current=10, current_ttl=90)
    assert fresh.remaining == 0 and fresh.reset_s == 90
    # This window ends in 30 s; then its 10 weigh less and less over 60 s: a cost
    # of 1 fits as soon as they count for under 10, one of 5 once under 6 (24 s on).
    assert fresh.seconds_until(1) == pytest.approx(30)
    assert fresh.seconds_until(5) == pytest.approx(30 + 24)
    assert fresh.seconds_until(11) is None
    # The last window's 10, half its time left, count 5: 7 used, 3 fit now; 5 once they count under 4.
    carried = Window(limit=10, previous=10, previous_ttl=30, current=2, current_ttl=90)
    assert carried.used == 7 and carried.remaining == 3 and carried.reset_s == 90
    assert carried.seconds_until(3) == 0 and carried.seconds_until(5) == pytest.approx(6)
    assert Window(5, 0, 0, 0, 0).seconds_until(5) == 0 and Window(5, 0, 0, 0, 0).reset_s == 0


@pytest.mark.parametrize("seconds,text", [(0.0204, "20ms"), (6, "6s"), (8.64, "8.64s"), (90.5, "1m30.5s"),
                                          (120, "2m0s"), (59.9996, "1m0s")])
def test_reset_headers_read_as_openais(seconds, text):
    assert duration(seconds) == text


CONFIG = Settings(max_batch_size=64, gen_max_new_tokens=256, gen_max_generations=8)


def test_generation_estimates_are_prompt_characters_over_4_plus_new_tokens_times_outputs():
    chat = {"messages": [{"role": "system", "content": "x" * 10}, {"role": "user", "content": [
        {"type": "text", "text": "y" * 6}]}], "max_tokens": 20, "n": 2}
    assert chat_completion(chat, CONFIG) == 4 + 40
    assert chat_completion({**chat, "max_completion_tokens": 5}, CONFIG) == 4 + 10
    assert chat_completion({"messages": []}, CONFIG) == 256  # no max_tokens: as many as may be generated
    assert completion({"prompt": ["abcde", "ab"], "n": 3}, CONFIG) == (2 + 16 * 3) + (1 + 16 * 3)
    # A prompt scored (echo, max_tokens 0) generates nothing; token ids count as themselves.
    assert completion({"prompt": ["abcde", "ab"], "echo": True, "max_tokens": 0, "logprobs": 0}, CONFIG) == 2 + 1
    assert completion({"prompt": [5, 6, 7], "echo": True, "max_tokens": 1, "logprobs": 1}, CONFIG) == 3 + 1
    assert completion({"prompt": [[5, 6], [7]], "echo": True, "max_tokens": 0}, CONFIG) == 2 + 1
    assert text_generation({"text": "abcd", "max_length": 8, "num_generations": 2}, CONFIG) == 1 + 16
    assert text_generation({"text": ["a", "b"]}, CONFIG) == 2 * (1 + 20)  # Backprop's defaults


@pytest.mark.parametrize("body", [{"max_tokens": "lots", "n": True}, {"max_tokens": -3, "n": 0},
                                  {"max_tokens": 10**9, "n": 10**9}])
def test_a_body_the_view_will_refuse_costs_no_more_than_the_largest_valid_one(body):
    cost = chat_completion({"messages": [{"role": "user", "content": "Hi"}], **body}, CONFIG)
    assert cost <= 1 + 256 * 64
