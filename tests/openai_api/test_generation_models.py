"""Which models the /v1 generation routes take: catalogue decoder-only models (chat
only with a chat template), not encoder-decoder ones, and a user's own uploaded
language model (prompts only: its chat template is uploaded code), never
another account's. Tiny random models; the answers' content is not the point."""

import os
import shutil

import openai
import pytest

from tests.conftest import LiveServer, new_key
from tests.uploads.helpers import hf_folder_zip, put_local, upload_url, wait_built

from .test_chat_completions import assert_openai_error, raw

CHAT = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    from app import create_app

    model_dir = tmp_path_factory.mktemp("v1-models")
    # gpt2-large as GPT-2 is: a language model without a chat template.
    shutil.copytree(tiny_dir["causal_lm"], model_dir / "gpt2-large")
    os.remove(model_dir / "gpt2-large" / "chat_template.jinja")
    shutil.copytree(tiny_dir["seq2seq"], model_dir / "t5-base-qa-summary-emotion")
    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("v1-data")), "MODEL_DIR": str(model_dir),
                      "BOOTSTRAP_KEY": False, "BUILDER": True, "BUILD_POLL_S": 0.2, "GEN_MAX_NEW_TOKENS": 16})
    with LiveServer(app) as live:
        live.key = new_key(app, "alice")
        live.other_key = new_key(app, "mallory")
        test_client, headers = app.test_client(), {"x-api-key": live.key}
        response = put_local(test_client, upload_url(test_client, headers, "my-lm"),
                             hf_folder_zip(tiny_dir["causal_lm"], ["text-generation"]))
        assert response.status_code == 200
        assert wait_built(test_client, headers, "my-lm")["build_status"] == "success"
        yield live
    app.extensions["builder"].stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)


def test_a_model_without_a_chat_template_takes_prompts_but_not_chats(client, server):
    reply = client.completions.create(model="gpt2-large", prompt="Hello", max_tokens=4, temperature=0)
    assert reply.usage.completion_tokens == 4

    error = assert_openai_error(raw(server, "/v1/chat/completions", {"model": "gpt2-large", "messages": CHAT}),
                                400, "model")
    assert "no chat template" in error["message"] and "/v1/completions" in error["message"]


def test_an_encoder_decoder_model_is_refused_with_the_route_that_serves_it(server):
    error = assert_openai_error(
        raw(server, "/v1/completions", {"model": "t5-base-qa-summary-emotion", "prompt": "Hi"}), 400, "model")
    assert "/text-generation" in error["message"]


def test_an_uploaded_language_model_completes_prompts_but_never_runs_its_chat_template(client, server):
    reply = client.completions.create(model="my-lm", prompt="Hello", max_tokens=3, temperature=0)
    assert reply.model == "my-lm" and reply.usage.completion_tokens == 3

    error = assert_openai_error(raw(server, "/v1/chat/completions", {"model": "my-lm", "messages": CHAT}),
                                400, "model")
    assert "sandbox" in error["message"]


def test_an_uploaded_language_model_scores_prompts_for_its_owner_only(client, server):
    reply = client.completions.create(model="my-lm", prompt="Hello world, again", echo=True, logprobs=0, max_tokens=0)
    scores = reply.choices[0].logprobs.token_logprobs
    assert reply.choices[0].text == "Hello world, again" and scores[0] is None and len(scores) > 1
    assert all(score < 0 for score in scores[1:])
    mallory = openai.OpenAI(base_url=server.url + "/v1", api_key=server.other_key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        mallory.completions.create(model="my-lm", prompt="Hello", echo=True, logprobs=0, max_tokens=0)


def test_another_accounts_model_does_not_exist_for_you(server):
    mallory = openai.OpenAI(base_url=server.url + "/v1", api_key=server.other_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as refused:
        mallory.completions.create(model="my-lm", prompt="Hello", max_tokens=3)
    assert refused.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_generation_limit_bounds_both_names_of_max_tokens(server, field):
    error = assert_openai_error(
        raw(server, "/v1/chat/completions", {"model": "smollm2-135m-instruct", "messages": CHAT, field: 17}),
        400, field)
    assert "INFER_GEN_MAX_NEW_TOKENS" in error["message"]
