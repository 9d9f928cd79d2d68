"""POST /text-generation, Backprop's route, stops a generation nobody waits for
(issue 22, part 5), on the causal and the encoder-decoder loaders: its client left
(499 in the log, the rest never generated) or REQUEST_TIMEOUT_S passed (504). One
account (alice) against another (bob) over real HTTP on tiny random-weight
models, with the Gate and counters of tests/openai_api/test_abandoned_generation.py
(evidence by token counts and order, not by time). The runner-level tests show
that the other requests' rows in the same forward pass go on untouched.
"""

import pytest
import requests

from model_registry.loaders.generation import CANCELLED, DEADLINE, GenerationControl
from tests.conftest import until
from tests.openai_api.conftest import serve  # noqa: F401 (a fixture: an app behind a live server)
from tests.openai_api.test_abandoned_generation import (
    HOLD_AT,
    Counts,
    assert_service_free,
    gated,
    request_threads,
    send_and_hold,
)

MAX_LENGTH = 100
CAUSAL, SEQ2SEQ = "gpt2-large", "t5-base-qa-summary-emotion"  # tiny stand-ins (tests/conftest.py STAND_INS)
GREEDY = {"temperature": 0, "min_length": 1}


def body(model: str, **params) -> dict:
    return {"text": "Once upon a time", "model": model, "max_length": MAX_LENGTH, **GREEDY, **params}


def post(service, key: str, payload: dict) -> requests.Response:
    return requests.post(service.url + "/text-generation", json=payload, headers={"x-api-key": key}, timeout=120)


@pytest.fixture
def service(serve, tiny_model_dir):
    return serve(MODEL_DIR=tiny_model_dir, GEN_MAX_NEW_TOKENS=MAX_LENGTH, GEN_MAX_BEAMS=4,
                 CLIENT_GONE_CHECK_S=0.02)


@pytest.mark.parametrize("model, params", [
    (CAUSAL, {}),
    (CAUSAL, {"num_beams": 2, "num_generations": 2}),  # beam search: the criterion sees candidate rows
    (CAUSAL, {"temperature": 0.8, "num_generations": 3}),  # sampled rows, three per input
    (SEQ2SEQ, {}),
], ids=["causal-greedy", "causal-beams", "causal-sampled", "seq2seq-greedy"])
def test_a_generation_whose_client_left_stops_and_the_next_account_is_served(service, model, params):
    gate = gated(service, "text-generation", model)
    alice, bob = service.key("alice"), service.key("bob")
    counts, threads_before = Counts(service.url, model), len(request_threads())

    left = send_and_hold(service.url, "/text-generation", body(model, **params), alice)
    until(lambda: gate.passes >= HOLD_AT, timeout_s=60)  # alice's generation is under way ...
    left.close()  # ... and her client gives up
    reply = post(service, bob, body(model, max_length=2, min_length=2))

    assert reply.status_code == 200 and isinstance(reply.json()["output"], str)
    assert gate.first_flag == CANCELLED
    # Alice's rows ended at the held pass, not at MAX_LENGTH, before bob's pass:
    rows = params.get("num_generations", 1)
    assert 0 < counts[CANCELLED] <= rows * HOLD_AT
    # Bob's two tokens (the encoder-decoder forces an end-of-text token last: "stop");
    # alice's rows never ran to her length.
    assert counts["length"] + counts["stop"] == 2
    assert_service_free(service, threads_before)


@pytest.mark.parametrize("model", [CAUSAL, SEQ2SEQ])
def test_a_generation_past_its_deadline_is_stopped_before_its_504(serve, tiny_model_dir, model):
    service = serve(MODEL_DIR=tiny_model_dir, GEN_MAX_NEW_TOKENS=MAX_LENGTH, REQUEST_TIMEOUT_S=2.0)
    gate = gated(service, "text-generation", model)  # held until the deadline stops it
    alice, bob = service.key("alice"), service.key("bob")
    counts, threads_before = Counts(service.url, model), len(request_threads())

    late = post(service, alice, body(model))

    assert late.status_code == 504
    assert "INFER_REQUEST_TIMEOUT_S" in late.text and "stopped" in late.text
    assert gate.first_flag == DEADLINE  # flagged before the 504 was sent
    assert post(service, bob, body(model, max_length=1)).status_code == 200
    assert 0 < counts[DEADLINE] <= HOLD_AT
    assert counts["length"] + counts["stop"] == 1  # bob's token only
    assert_service_free(service, threads_before)


# ---- in one forward pass, only the abandoned request's rows stop ----------------------------


@pytest.fixture(scope="module")
def runners(tiny_model_dir):
    from model_registry.catalogue import MODELS
    from model_registry.loaders.causal_lm import load_causal_lm
    from model_registry.loaders.seq2seq import load_seq2seq

    return {CAUSAL: load_causal_lm(MODELS[CAUSAL], f"{tiny_model_dir}/{CAUSAL}", "cpu", False),
            SEQ2SEQ: load_seq2seq(MODELS[SEQ2SEQ], f"{tiny_model_dir}/{SEQ2SEQ}", "cpu", False)}


def item(text: str, control: GenerationControl | None, **params) -> dict:
    from model_registry.loaders.generation import DEFAULTS

    return {"text": text, "params": {**DEFAULTS, **GREEDY, "max_length": 24, **params}, "control": control}


@pytest.mark.parametrize("model", [CAUSAL, SEQ2SEQ])
@pytest.mark.parametrize("params", [{}, {"num_beams": 2, "num_generations": 2}], ids=["greedy", "beams"])
def test_in_a_shared_pass_the_other_requests_rows_go_on(runners, model, params):
    run = runners[model].runners["text-generation"]
    prompts = ["Once upon a time", "The weather today is"]
    untouched = run([item(text, GenerationControl(), **params) for text in prompts])
    gone, kept = GenerationControl(), GenerationControl()
    gone.stop(CANCELLED)  # its client left before the pass started its first token

    outputs = run([item(prompts[0], gone, **params), item(prompts[1], kept, **params)])

    assert outputs[1] == untouched[1]  # the other request's rows ran as if alone in the pass
    assert [reason for reason, _tokens in gone.rows()] == [CANCELLED] * params.get("num_generations", 1)
    assert all(tokens <= 1 for _reason, tokens in gone.rows())
    assert CANCELLED not in [reason for reason, _tokens in kept.rows()]
    assert sum(tokens for _reason, tokens in kept.rows()) > sum(tokens for _reason, tokens in gone.rows())


def test_items_without_a_control_run_as_before(runners):
    """The build's sample run and any caller that sends no control: nothing stops them."""
    run = runners[CAUSAL].runners["text-generation"]
    [output] = run([{"text": "Once upon a time", "params": item("", None)["params"]}])
    assert output.startswith("Once upon a time")
