"""Continuous batching (model_registry/loaders/continuous) on a tiny random Llama with
SmolLM2's real tokenizer: every request's greedy tokens are exactly raw generate()'s
on its own prompt, whenever it joined; requests join a running batch and leave it
as they end; a long prompt is prefilled in chunks while others decode; each
sequence samples with its own parameters; the limits hold; accounts share the
running slots; a failing pass fails only its own requests."""

import threading
import time
from concurrent.futures import wait

import pytest
import torch

from core.errors import BadRequest
from core.request_context import current_account
from model_registry.batcher import PredictionFailed
from model_registry.catalogue import ModelSpec
from model_registry.loaders.causal_lm import load_causal_lm
from model_registry.loaders.common import GenerationLimits, LoadSettings
from model_registry.loaders.completion import END, RUNNER, CompletionRequest, TokenStream
from model_registry.loaders.generation import GenerationControl
from tests import tiny_models

SPEC = ModelSpec("tiny", "tiny", "uploaded", "causal-lm", "test")
PROMPTS = [
    "Once upon a time",
    "Hi",
    "The quick brown fox jumps over the lazy dog, and then it runs into the forest where",
    "A list of colours: red, green,",
    "def add(a, b):",
    "Question: what is the capital of France? Answer:",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "Dear team,",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny-llama") / "model")
    tiny_models.build_tiny_causal_lm(path)
    return path


def load(model_dir, **limits):
    return load_causal_lm(SPEC, model_dir, "cpu", False, LoadSettings(generation=GenerationLimits(**limits)))


@pytest.fixture(scope="module")
def served(model_dir):
    # Chunks of 8 prompt tokens: most prompts here are prefilled over several passes.
    return load(model_dir, prefill_chunk_tokens=8)


def raw_greedy(served, ids: list[int], max_new_tokens: int) -> list[int]:
    engine = served.completion
    with torch.inference_mode():
        out = engine.model.generate(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=engine.pad_id,
            eos_token_id=sorted(engine.eos_ids))
    return out[0, len(ids):].tolist()


def greedy(served, text: str, max_tokens: int, **kwargs) -> CompletionRequest:
    return CompletionRequest(served.completion.encode(text), max_tokens=max_tokens, temperature=0, **kwargs)


def test_the_generation_runners_go_through_the_running_batch(served):
    assert served._batcher(RUNNER).scheduler is served._batcher("text-generation").scheduler


def test_every_request_gets_raw_generates_greedy_tokens_whenever_it_joined(served):
    """Eight clients, each sending two requests one after the other, with their own
    prompt lengths and max tokens: rows join and leave at different steps."""
    answers = {}

    def client(number: int):
        for round_ in range(2):
            max_tokens = 6 + (number * 5 + round_ * 3) % 17
            request = greedy(served, PROMPTS[(number + round_) % len(PROMPTS)], max_tokens)
            [completion] = served.run(RUNNER, [request])
            answers[number, round_] = (request, completion)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == 16
    for request, completion in answers.values():
        [choice] = completion.choices
        assert choice.token_ids == raw_greedy(served, request.prompt_ids, request.max_tokens)
        text_tokens = [token for token in choice.token_ids if token not in served.completion.eos_ids]
        assert choice.text == served.completion.decode(text_tokens)


def build_tiny_gpt2(path: str) -> None:
    """GPT-2 learns absolute positions: a row's position ids must not count its padding."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models.smollm2_dir(), gguf_file=tiny_models.SMOLLM2_GGUF)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
                    ).save_pretrained(path)
    tokenizer.save_pretrained(path)


def test_a_gpt2_gets_raw_generates_greedy_tokens_too(tmp_path):
    build_tiny_gpt2(str(tmp_path))
    served = load(str(tmp_path), prefill_chunk_tokens=8)
    requests = [greedy(served, text, 10 + i) for i, text in enumerate(PROMPTS[:5])]
    futures = [served.run_nowait(RUNNER, [request]) for request in requests]

    for request, future in zip(requests, futures):
        assert future.result(timeout=60)[0].choices[0].token_ids == raw_greedy(
            served, request.prompt_ids, request.max_tokens)
    served.close()


def test_backprop_greedy_parameters_match_generate_too(served):
    """/text-generation's min_length (no end-of-text before it) and repetition penalty."""
    params = {"min_length": 6, "max_length": 12, "temperature": 0, "top_k": 0, "top_p": 1.0,
              "repetition_penalty": 1.4, "length_penalty": 1.0, "num_beams": 1, "num_generations": 1}
    items = [{"text": text, "params": params} for text in PROMPTS[:4]]

    queued = served.run("text-generation", items)
    static = served.runners["text-generation"](items)  # called directly: one generate() call

    assert queued == static


def test_a_request_joins_a_running_batch_and_leaves_before_it_ends(served):
    stream = TokenStream()
    long = served.run_nowait(RUNNER, [greedy(served, PROMPTS[0], 120, stream=stream)])
    stream.events.get(timeout=60)  # the long one is decoding

    [short] = served.run(RUNNER, [greedy(served, PROMPTS[1], 3)])

    assert short.choices[0].completion_tokens == 3
    assert not long.done()  # answered while the long one still runs
    assert long.result(timeout=60)[0].choices[0].completion_tokens == 120


def test_a_long_prompt_is_prefilled_in_chunks_while_others_decode(served):
    """One stream for both requests keeps their events in order: the running
    sequence gets a token per pass while the long prompt's chunks go in."""
    events = TokenStream()
    running = served.run_nowait(RUNNER, [greedy(served, PROMPTS[0], 60, stream=events)])
    events.events.get(timeout=60)
    long_prompt = " ".join(PROMPTS) * 2  # well over 100 tokens: 8 per chunk
    long = greedy(served, long_prompt, 1, stream=events, first_choice=1)
    assert len(long.prompt_ids) > 100
    joined = served.run_nowait(RUNNER, [long])

    order = []
    while len([event for event in order if event[1] == END]) < 2:
        order.append(events.events.get(timeout=60))
    wait([running, joined], timeout=60)

    first_of_long = next(position for position, event in enumerate(order) if event[0] == 1)
    assert len([event for event in order[:first_of_long] if event[0] == 0]) >= 5
    assert joined.result()[0].choices[0].token_ids == raw_greedy(served, long.prompt_ids, 1)


def test_each_sequence_samples_with_its_own_parameters_in_one_batch(served):
    seeded = dict(max_tokens=12, temperature=0.9, top_p=0.8, seed=11)
    [alone] = served.run(RUNNER, [CompletionRequest(served.completion.encode(PROMPTS[0]), **seeded)])
    together = served.run(RUNNER, [
        CompletionRequest(served.completion.encode(PROMPTS[0]), **seeded),
        CompletionRequest(served.completion.encode(PROMPTS[0]), max_tokens=12, temperature=1.5, seed=12),
        greedy(served, PROMPTS[2], 12),
        CompletionRequest(served.completion.encode(PROMPTS[0]), max_tokens=12, temperature=1.0, top_k=1),
    ])

    assert together[0].choices[0].token_ids == alone.choices[0].token_ids  # its own seed's draws
    assert together[1].choices[0].token_ids != alone.choices[0].token_ids
    assert together[2].choices[0].token_ids == raw_greedy(served, served.completion.encode(PROMPTS[2]), 12)
    # top_k 1 leaves one token to draw: greedy, whatever the temperature.
    assert together[3].choices[0].token_ids == raw_greedy(served, served.completion.encode(PROMPTS[0]), 12)


def test_n_choices_share_one_prefill_and_each_samples_its_own(served):
    [result] = served.run(RUNNER, [CompletionRequest(served.completion.encode(PROMPTS[3]), max_tokens=10,
                                                     temperature=1.0, n=3, seed=5)])

    assert [choice.completion_tokens for choice in result.choices] == [10, 10, 10]
    assert len({tuple(choice.token_ids) for choice in result.choices}) == 3


def test_a_cancelled_stream_leaves_at_once_and_the_others_go_on(served):
    cancelled_stream = TokenStream()
    cancelled = served.run_nowait(RUNNER, [greedy(served, PROMPTS[0], 200, stream=cancelled_stream)])
    other = served.run_nowait(RUNNER, [greedy(served, PROMPTS[4], 40)])
    cancelled_stream.events.get(timeout=60)
    cancelled_stream.cancel()

    [stopped] = cancelled.result(timeout=60)[0].choices
    assert stopped.finish_reason == "cancelled"
    assert stopped.completion_tokens < 200
    assert other.result(timeout=60)[0].choices[0].token_ids == raw_greedy(
        served, served.completion.encode(PROMPTS[4]), 40)


def test_a_sequence_past_its_deadline_stops_at_its_next_token(served):
    control = GenerationControl(deadline=time.monotonic() + 3600)
    request = greedy(served, PROMPTS[0], 200, stream=TokenStream(), control=control)
    future = served.run_nowait(RUNNER, [request])
    request.stream.events.get(timeout=60)
    control.deadline = time.monotonic()  # as if an hour had passed

    [stopped] = future.result(timeout=60)[0].choices
    assert stopped.finish_reason == "deadline" and stopped.completion_tokens < 200
    assert control.stopped == "deadline"


def test_a_request_cancelled_while_queued_never_runs(model_dir):
    served = load(model_dir, max_running=1)
    scheduler = served._batcher(RUNNER).scheduler
    stream = TokenStream()
    running = served.run_nowait(RUNNER, [greedy(served, PROMPTS[0], 30, stream=stream)])
    stream.events.get(timeout=60)
    queued_stream = TokenStream()
    queued = served.run_nowait(RUNNER, [greedy(served, PROMPTS[1], 30, stream=queued_stream)])
    assert scheduler.queued() == 1

    assert queued.cancel()
    running.result(timeout=60)
    [after] = served.run(RUNNER, [greedy(served, PROMPTS[2], 2)])

    assert after.choices[0].completion_tokens == 2
    assert queued_stream.events.empty()  # not one token was generated for it
    served.close()


def test_at_most_max_running_sequences_decode_and_the_rest_wait(model_dir):
    served = load(model_dir, max_running=2)
    scheduler = served._batcher(RUNNER).scheduler
    streams = [TokenStream() for _ in range(3)]
    futures = [served.run_nowait(RUNNER, [greedy(served, PROMPTS[i], 40, stream=stream)])
               for i, stream in enumerate(streams)]
    streams[0].events.get(timeout=60)
    streams[1].events.get(timeout=60)

    assert scheduler.running() == 2
    assert scheduler.queued() == 1 and streams[2].events.empty()
    for future, i in zip(futures, range(3)):
        assert future.result(timeout=60)[0].choices[0].token_ids == raw_greedy(
            served, served.completion.encode(PROMPTS[i]), 40)
    served.close()


def test_a_request_too_large_to_run_even_alone_is_refused(model_dir):
    served = load(model_dir, kv_cache_bytes=2**20)
    token_bytes = served.completion.token_bytes

    with pytest.raises(BadRequest) as refused:
        served.run(RUNNER, [greedy(served, PROMPTS[0], 2**20 // token_bytes)])

    assert "INFER_GEN_KV_CACHE_MB" in refused.value.message
    assert served.run(RUNNER, [greedy(served, PROMPTS[0], 4)])[0].choices[0].completion_tokens == 4
    served.close()


def test_an_account_waiting_gets_the_next_free_slot_ahead_of_a_flood(model_dir):
    served = load(model_dir, max_running=4)
    finished = []
    lock = threading.Lock()

    def send(account: int, label: str, max_tokens: int):
        current_account.set(account)
        served.run(RUNNER, [greedy(served, PROMPTS[0], max_tokens)])
        with lock:
            finished.append(label)

    first = TokenStream()
    flood_head = served.run_nowait(RUNNER, [greedy(served, PROMPTS[0], 30, stream=first)])
    first.events.get(timeout=60)
    flood = [threading.Thread(target=send, args=(1, f"flood-{i}", 30)) for i in range(11)]
    for thread in flood:
        thread.start()
    quiet = threading.Thread(target=send, args=(2, "quiet", 30))
    quiet.start()
    for thread in [*flood, quiet]:
        thread.join()
    flood_head.result(timeout=60)

    # 12 flood requests in slots of 4: the quiet one takes a slot as soon as one frees,
    # not after the flood's queue has drained.
    assert finished.index("quiet") < 8
    served.close()


def test_a_failing_pass_fails_its_own_requests_and_the_model_serves_on(served):
    calls = {"n": 0}

    def fail_once(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")

    hook = served.completion.model.register_forward_pre_hook(fail_once, with_kwargs=True)
    try:
        with pytest.raises(PredictionFailed):
            served.run(RUNNER, [greedy(served, PROMPTS[0], 10)])
    finally:
        hook.remove()
    [after] = served.run(RUNNER, [greedy(served, PROMPTS[1], 5)])
    assert after.choices[0].token_ids == raw_greedy(served, served.completion.encode(PROMPTS[1]), 5)


class _BrokenEvents:
    def put(self, event):
        raise RuntimeError("a consumer's bug")


def test_an_error_outside_a_pass_fails_the_requests_in_and_frees_their_slots(model_dir):
    """Something in the loop itself failing (here a stream that cannot take its
    text) must not leave the model's requests waiting or its slots taken."""
    served = load(model_dir)
    scheduler = served._batcher(RUNNER).scheduler
    broken = TokenStream()
    broken.events = _BrokenEvents()

    with pytest.raises(PredictionFailed):
        served.run(RUNNER, [greedy(served, PROMPTS[0], 10, stream=broken)])

    [after] = served.run(RUNNER, [greedy(served, PROMPTS[1], 5)])
    assert after.choices[0].token_ids == raw_greedy(served, served.completion.encode(PROMPTS[1]), 5)
    assert scheduler.running() == 0 and scheduler.queued() == 0
    served.close()
