"""/v1/completions scoring a prompt (echo, logprobs, max_tokens 0), as lm-eval-harness's
loglikelihood tasks and the service's own perplexity evaluations ask: each token's
log-probability equals the one transformers computes directly on the same tiny
random-weight model and tokens, batched prompts of different lengths included; the
offsets point into the echoed text; every other combination is a 400 saying what is
supported. Through OpenAI's own SDK where a client would use it."""

import shutil

import openai
import pytest
import requests
import torch

from tests.conftest import LiveServer, new_key

from .conftest import assert_openai_error
from .test_abandoned_generation import gated

MODEL = "gpt2-large"  # the tiny causal LM stands in for it
PROMPTS = ["Hello world, this is a test.", "Short one", "Le café coûte 2 €, ü and ñ too: a longer prompt than the others."]


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    from app import create_app

    model_dir = tmp_path_factory.mktemp("logprob-models")
    shutil.copytree(tiny_dir["causal_lm"], model_dir / MODEL)
    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("logprob-data")), "MODEL_DIR": str(model_dir),
                      "BOOTSTRAP_KEY": False, "BUILDER": False})
    with LiveServer(app) as live:
        live.key = new_key(app, "alice")
        yield live


@pytest.fixture(scope="module")
def reference(tiny_dir):
    """The same tiny model and tokenizer, straight from transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_dir["causal_lm"]).eval(),
            AutoTokenizer.from_pretrained(tiny_dir["causal_lm"]))


def direct_logprobs(reference, text: str) -> tuple[list[int], list[float], torch.Tensor]:
    """The tokens of `text`, the log-probability of each after the first, and every position's log-softmax."""
    model, tokenizer = reference
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)[:-1]
    return ids, logprobs.gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1).tolist(), logprobs


def post(server, body: dict, key: str | None = None) -> requests.Response:
    return requests.post(server.url + "/v1/completions", json=body, timeout=60,
                         headers={"Authorization": f"Bearer {key or server.key}"})


def scoring(prompt, logprobs=0, **extra) -> dict:
    return {"model": MODEL, "prompt": prompt, "echo": True, "max_tokens": 0, "logprobs": logprobs, **extra}


def test_each_tokens_logprob_is_the_models_own_batched_prompts_included(server, reference):
    answer = post(server, scoring(PROMPTS, logprobs=2))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [choice["text"] for choice in body["choices"]] == PROMPTS
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2]
    _model, tokenizer = reference
    prompt_tokens = 0
    for prompt, choice in zip(PROMPTS, body["choices"]):
        ids, expected, logprobs = direct_logprobs(reference, prompt)
        prompt_tokens += len(ids)
        got = choice["logprobs"]
        assert len(got["tokens"]) == len(got["token_logprobs"]) == len(got["text_offset"]) == len(ids) > 1
        assert got["tokens"] == [tokenizer.decode([token]) for token in ids]
        assert got["token_logprobs"][0] is None and got["top_logprobs"][0] is None
        assert got["token_logprobs"][1:] == pytest.approx(expected, abs=1e-4)
        for position, alternatives in enumerate(got["top_logprobs"][1:]):
            best = torch.topk(logprobs[position], 2)
            assert list(alternatives.values()) == pytest.approx(best.values.tolist(), abs=1e-4)
            assert list(alternatives) == [tokenizer.decode([token]) for token in best.indices.tolist()]
            assert got["token_logprobs"][position + 1] <= max(alternatives.values()) + 1e-6
        assert choice["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}


def test_text_offsets_point_into_the_echoed_text(server):
    text = PROMPTS[2]
    got = post(server, scoring(text)).json()["choices"][0]["logprobs"]
    offsets, tokens = got["text_offset"], got["tokens"]
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] < len(text)
    # Each token is the text from its offset to the next one's (a character split over
    # two byte tokens is the first one's, the second reads empty there).
    pieces = [text[start:end] for start, end in zip(offsets, offsets[1:] + [len(text)])]
    assert "".join(pieces) == text
    for token, piece in zip(tokens, pieces):
        assert token == piece or "\ufffd" in token
    assert got["top_logprobs"] is None  # logprobs 0: no alternatives


def test_the_openai_sdk_reads_the_scores(server, reference):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    reply = client.completions.create(model=MODEL, prompt=PROMPTS[0], echo=True, logprobs=0, max_tokens=0)
    _ids, expected, _logprobs = direct_logprobs(reference, PROMPTS[0])
    assert reply.choices[0].text == PROMPTS[0]
    assert reply.choices[0].logprobs.token_logprobs[1:] == pytest.approx(expected, abs=1e-4)
    assert reply.usage.completion_tokens == 0


def test_n_choices_repeat_the_prompts_scores(server):
    choices = post(server, scoring(["One", "Two words"], n=2)).json()["choices"]
    assert [choice["text"] for choice in choices] == ["One", "One", "Two words", "Two words"]
    assert choices[0]["logprobs"] == choices[1]["logprobs"] and choices[2]["logprobs"] == choices[3]["logprobs"]
    assert choices[0]["logprobs"]["token_logprobs"] == [None]  # one token: nothing before it to predict it


def test_echo_with_max_tokens_0_and_no_logprobs_answers_the_prompt_alone(server):
    body = post(server, {"model": MODEL, "prompt": "Just this", "echo": True, "max_tokens": 0}).json()
    assert body["choices"][0]["text"] == "Just this" and body["choices"][0]["logprobs"] is None
    assert body["usage"]["completion_tokens"] == 0


@pytest.mark.parametrize("change, param", [
    ({"max_tokens": 5}, "max_tokens"),
    ({"max_tokens": None}, "max_tokens"),
    ({"echo": False}, "echo"),
    ({"stream": True}, "stream"),
])
def test_logprobs_other_than_a_prompt_scored_are_refused_saying_what_is_supported(server, change, param):
    message = assert_openai_error(post(server, scoring("Hello", **change)), 400, "invalid_request_error", param)
    assert "set echo true and max_tokens 0" in message


def test_max_tokens_0_without_echo_is_refused(server):
    message = assert_openai_error(post(server, {"model": MODEL, "prompt": "Hello", "max_tokens": 0}), 400,
                                  "invalid_request_error", "echo")
    assert "set echo true and max_tokens 0" in message


def test_more_than_5_alternatives_is_refused(server):
    assert_openai_error(post(server, scoring("Hello", logprobs=6)), 400, "invalid_request_error", "logprobs")


@pytest.mark.parametrize("prompt", ["word " * 400, [42] * 257, [[7, 8], [42] * 100_000]])
def test_a_prompt_longer_than_the_context_is_refused_naming_the_limit(server, prompt):
    message = assert_openai_error(post(server, scoring(prompt)), 400, "invalid_request_error", "prompt",
                                  "context_length_exceeded")
    assert "context is 256 tokens" in message


def test_a_prompt_that_fills_the_context_is_scored_but_leaves_no_room_for_a_greedy_token(server):
    assert post(server, scoring([42] * 256)).status_code == 200
    message = assert_openai_error(post(server, scoring([42] * 256, logprobs=1, max_tokens=1, temperature=0)), 400,
                                  "invalid_request_error", "prompt", "context_length_exceeded")
    assert "1 more was asked for" in message


def test_the_chat_route_still_answers_no_logprobs(server):
    response = requests.post(server.url + "/v1/chat/completions", timeout=60,
                             headers={"Authorization": f"Bearer {server.key}"},
                             json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "logprobs": True})
    assert_openai_error(response, 400, "invalid_request_error", "logprobs")


def lm_eval_loglikelihood(choice: dict, context_length: int) -> tuple[float, bool]:
    """What lm-eval-harness's local-completions model reads of a choice (LocalCompletionsAPI.parse_logprobs):
    the continuation's log-probabilities, the last entry (the generated token) left out, and whether each
    was the likeliest."""
    scores = choice["logprobs"]["token_logprobs"][context_length:-1]
    alternatives = choice["logprobs"]["top_logprobs"][context_length:-1]
    return sum(scores), all(score == max(top.values()) for score, top in zip(scores, alternatives))


def test_lm_eval_harness_requests_token_ids_with_one_greedy_token_and_reads_the_continuations_loglikelihood(
        server, reference):
    model, tokenizer = reference
    pairs = [("The capital of France is", " Paris"), ("One, two,", " three, four")]
    contexts = [tokenizer(context)["input_ids"] for context, _ in pairs]
    inputs = [tokenizer(context + continuation)["input_ids"] for context, continuation in pairs]
    # As lm-eval-harness sends a loglikelihood batch.
    body = {"model": MODEL, "prompt": inputs, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234,
            "echo": True}
    answer = post(server, body)
    assert answer.status_code == 200, answer.text
    choices = answer.json()["choices"]
    for ids, context, choice in zip(inputs, contexts, choices):
        _ids, expected, _logprobs = direct_logprobs(reference, tokenizer.decode(ids))
        assert _ids == ids
        with torch.no_grad():
            last = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), dim=-1)
        greedy = int(torch.argmax(last))
        got = choice["logprobs"]
        assert len(got["token_logprobs"]) == len(ids) + 1
        assert got["token_logprobs"][1:len(ids)] == pytest.approx(expected, abs=1e-4)
        assert got["token_logprobs"][-1] == pytest.approx(float(last[greedy]), abs=1e-4)
        assert got["tokens"][-1] == tokenizer.decode([greedy])
        assert got["text_offset"][-1] == len(tokenizer.decode(ids))
        assert choice["text"] == tokenizer.decode(ids) + tokenizer.decode([greedy], skip_special_tokens=True)
        loglikelihood, is_greedy = lm_eval_loglikelihood(choice, len(context))
        assert loglikelihood == pytest.approx(sum(expected[len(context) - 1:]), abs=1e-4)
        assert is_greedy == all(int(torch.argmax(position)) == token
                                for position, token in zip(_logprobs[len(context) - 1:], ids[len(context):]))
    assert answer.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("greedy", [False, True])
def test_scores_are_the_same_whether_the_log_softmax_runs_whole_or_a_few_positions_at_a_time(
        server, monkeypatch, greedy):
    from model_registry.loaders import prompt_scoring

    body = {**scoring(PROMPTS, logprobs=2), **({"max_tokens": 1, "temperature": 0} if greedy else {})}
    whole = post(server, body).json()["choices"]
    monkeypatch.setattr(prompt_scoring, "LOG_SOFTMAX_ROWS", 3)  # the server runs in this process
    chunked = post(server, body).json()["choices"]
    assert len(whole) == len(chunked) == len(PROMPTS)
    for one, other in zip(whole, chunked):
        assert one["text"] == other["text"] and one["logprobs"]["tokens"] == other["logprobs"]["tokens"]
        assert one["logprobs"]["token_logprobs"][0] is other["logprobs"]["token_logprobs"][0] is None
        assert one["logprobs"]["token_logprobs"][1:] == pytest.approx(other["logprobs"]["token_logprobs"][1:],
                                                                      abs=1e-5)
        assert [list(top) for top in one["logprobs"]["top_logprobs"][1:]] == \
            [list(top) for top in other["logprobs"]["top_logprobs"][1:]]


def test_offsets_of_token_ids_point_into_their_decoded_text(server, reference):
    _model, tokenizer = reference
    ids = tokenizer(PROMPTS[2])["input_ids"]
    choice = post(server, scoring(ids)).json()["choices"][0]
    text, offsets = choice["text"], choice["logprobs"]["text_offset"]
    assert text == tokenizer.decode(ids)
    assert offsets[0] == 0 and offsets == sorted(offsets) and len(offsets) == len(ids)
    assert all(text[:offset] == tokenizer.decode(ids[:at]) for at, offset in enumerate(offsets)
               if "\ufffd" not in tokenizer.decode(ids[:at]))


def test_past_the_exact_bound_offsets_of_token_ids_are_the_sums_of_their_texts_within_the_text(
        server, reference, monkeypatch):
    from model_registry.loaders import completion

    _model, tokenizer = reference
    ids = tokenizer(PROMPTS[2])["input_ids"]
    assert "".join(tokenizer.batch_decode([[token] for token in ids])) != tokenizer.decode(ids)  # the costly case
    monkeypatch.setattr(completion, "EXACT_OFFSETS_TOKENS", 4)  # the server runs in this process
    choice = post(server, scoring(ids)).json()["choices"][0]
    text, offsets = choice["text"], choice["logprobs"]["text_offset"]
    pieces = tokenizer.batch_decode([[token] for token in ids])
    assert offsets == [min(sum(len(piece) for piece in pieces[:at]), len(text)) for at in range(len(ids))]
    assert offsets == sorted(offsets) and offsets[-1] <= len(text)


@pytest.mark.parametrize("body, param", [
    ({"prompt": [1, 2, 3], "max_tokens": 4}, "prompt"),  # token ids to generate from: text only
    ({"prompt": [[1, 2], [3]], "max_tokens": 4}, "prompt"),
    ({"prompt": [1, 10 ** 9], "echo": True, "max_tokens": 0, "logprobs": 0}, "prompt"),  # out of the vocabulary
    ({"prompt": [1, -2], "echo": True, "max_tokens": 0, "logprobs": 0}, "prompt"),
    ({"prompt": "Hi", "echo": True, "max_tokens": 1, "logprobs": 1, "temperature": 1}, "temperature"),
    ({"prompt": [[1, 2], "text"], "echo": True, "max_tokens": 0, "logprobs": 0}, "prompt"),
])
def test_token_ids_and_greedy_tokens_outside_a_prompt_scored_are_refused(server, body, param):
    assert_openai_error(post(server, {"model": MODEL, **body}), 400, "invalid_request_error", param)


def test_a_scored_prompt_takes_its_turn_in_the_models_queue_and_is_stopped_at_its_deadline(serve, tiny_model_dir):
    service = serve(MODEL_DIR=tiny_model_dir, REQUEST_TIMEOUT_S=2.0)
    gate = gated(service, "prompt-logprobs", hold_at=1)  # its first pass held until its request is told to stop
    late = service.post("/v1/completions", scoring(PROMPTS), service.key("alice"))
    assert late.status_code == 504 and "INFER_REQUEST_TIMEOUT_S" in late.json()["error"]["message"]
    assert gate.first_flag == "deadline"
    reply = service.post("/v1/completions", scoring(PROMPTS[0]), service.key("bob"))
    assert reply.status_code == 200 and reply.json()["choices"][0]["logprobs"]["token_logprobs"][1] < 0
