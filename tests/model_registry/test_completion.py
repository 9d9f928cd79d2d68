"""Token-level generation (model_registry/loaders/completion.py) on a tiny random
Llama with SmolLM2's real tokenizer: stop strings, per-row lengths, n choices,
streaming that adds up to the same text, cancellation that stops the model,
seeds, and the tokenizer shared safely between threads."""

import queue
import threading

import pytest

from model_registry.catalogue import ModelSpec
from model_registry.loaders.causal_lm import load_causal_lm
from model_registry.loaders.completion import END, CompletionRequest, TokenStream
from tests import tiny_models


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tiny-llama") / "model")
    tiny_models.build_tiny_causal_lm(path)
    return load_causal_lm(ModelSpec("tiny", "tiny", "uploaded", "causal-lm", "test"), path, "cpu", False)


@pytest.fixture(scope="module")
def engine(served):
    return served.completion


def prompt(engine, text="Once upon a time"):
    return engine.encode(text)


def drain(stream: TokenStream) -> list:
    events = []
    while not stream.events.empty():
        events.append(stream.events.get())
    return events


def test_greedy_choices_run_to_max_tokens_and_count_their_tokens(engine):
    [result] = engine.run([CompletionRequest(prompt(engine), max_tokens=12, temperature=0, n=2)])

    assert result.prompt_tokens == len(prompt(engine))
    assert len(result.choices) == 2
    for choice in result.choices:
        assert choice.finish_reason == "length"
        assert choice.completion_tokens == 12
        assert choice.text
    assert result.choices[0].text == result.choices[1].text  # greedy: the same


def test_rows_of_one_call_stop_at_their_own_max_tokens(engine):
    short, long = engine.run([
        CompletionRequest(prompt(engine), max_tokens=3, temperature=0),
        CompletionRequest(prompt(engine), max_tokens=9, temperature=0),
    ])

    assert short.choices[0].completion_tokens == 3
    assert long.choices[0].completion_tokens == 9
    assert long.choices[0].text.startswith(short.choices[0].text)


def test_a_stop_string_ends_the_text_before_it(engine):
    [full] = engine.run([CompletionRequest(prompt(engine), max_tokens=20, temperature=0)])
    text = full.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]  # a piece of what the model will say
    assert stop.strip(), text

    [cut] = engine.run([CompletionRequest(prompt(engine), max_tokens=20, temperature=0, stop=("\x00never", stop))])

    choice = cut.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.text == text[: text.index(stop)]
    assert choice.completion_tokens < 20


def test_streamed_pieces_add_up_to_the_answer_and_each_choice_ends_once(engine):
    stream = TokenStream()
    [result] = engine.run([CompletionRequest(prompt(engine), max_tokens=10, temperature=0, n=2, stream=stream,
                                             first_choice=4)])

    events = drain(stream)
    for index, choice in zip((4, 5), result.choices):
        pieces = [event[1] for event in events if event[0] == index and len(event) == 2]
        ends = [event for event in events if event[0] == index and len(event) == 3]
        assert "".join(pieces) == choice.text
        assert len(pieces) > 1  # it came in pieces, not at the end
        assert ends == [(index, END, "length")]


def test_a_stop_string_is_never_streamed_even_in_part(engine):
    [full] = engine.run([CompletionRequest(prompt(engine), max_tokens=20, temperature=0)])
    text = full.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 4]
    stream = TokenStream()

    [result] = engine.run([CompletionRequest(prompt(engine), max_tokens=20, temperature=0, stop=(stop,),
                                             stream=stream)])

    streamed = "".join(event[1] for event in drain(stream) if len(event) == 2)
    assert streamed == result.choices[0].text == text[: text.index(stop)]


class CancelAfter(TokenStream):
    """A client that goes away after `pieces` pieces of text."""

    def __init__(self, pieces: int):
        super().__init__()
        client = self

        class Events(queue.Queue):
            def put(self, item, *args, **kwargs):
                super().put(item, *args, **kwargs)
                if len(item) == 2:
                    client.pieces -= 1
                    if client.pieces == 0:
                        client.cancel()

        self.pieces = pieces
        self.events = Events()


def test_a_cancelled_stream_stops_generating_at_the_next_token(engine):
    stream = CancelAfter(pieces=2)
    [result] = engine.run([CompletionRequest(prompt(engine), max_tokens=200, temperature=0, stream=stream)])

    choice = result.choices[0]
    assert choice.finish_reason == "cancelled"
    assert choice.completion_tokens <= 3  # the two streamed pieces, and not the 200 asked for
    assert (0, END, "cancelled") in drain(stream)


def test_a_cancelled_row_does_not_stop_the_others_in_its_call(engine):
    stream = CancelAfter(pieces=1)
    cancelled, other = engine.run([
        CompletionRequest(prompt(engine), max_tokens=15, temperature=0, stream=stream),
        CompletionRequest(prompt(engine, "Hello"), max_tokens=15, temperature=0),
    ])

    assert cancelled.choices[0].finish_reason == "cancelled"
    assert other.choices[0].finish_reason == "length"
    assert other.choices[0].completion_tokens == 15


def test_the_same_seed_samples_the_same_text_and_another_seed_does_not(engine):
    def sample(seed):
        [result] = engine.run([CompletionRequest(prompt(engine), max_tokens=15, temperature=1.0, seed=seed)])
        return result.choices[0].text

    assert sample(11) == sample(11)
    assert sample(11) != sample(12)


def test_seeded_requests_in_one_batch_each_get_their_own_seeds_output(engine):
    alone = engine.run([CompletionRequest(prompt(engine), max_tokens=15, temperature=1.0, seed=3)])[0]
    together = engine.run([
        CompletionRequest(prompt(engine), max_tokens=15, temperature=1.0, seed=3),
        CompletionRequest(prompt(engine), max_tokens=15, temperature=1.0, seed=3),
    ])

    assert [r.choices[0].text for r in together] == [alone.choices[0].text] * 2


def test_the_chat_template_is_the_models_own(engine):
    messages = [{"role": "user", "content": "Hi"}]

    ids = engine.encode_chat(messages)

    rendered = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\n")
    assert ids == list(engine.tokenizer(rendered, add_special_tokens=False)["input_ids"])


def test_the_tokenizer_is_safe_to_share_between_generation_and_request_threads(served, engine):
    errors = []
    stop = threading.Event()
    texts = ["a few words here " * 200, "and more"] * 8
    expected = [len(engine.encode(text)) for text in texts]

    def count_tokens():
        while not stop.is_set():
            try:
                assert served.count_tokens(texts) == expected
            except Exception as exc:  # noqa: BLE001 - the failure under test is any exception
                errors.append(exc)
                return

    threads = [threading.Thread(target=count_tokens) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(100):
            served.runners["text-generation"]([{"text": "Once", "params": {
                "min_length": 1, "max_length": 1, "temperature": 0, "top_k": 0, "top_p": 1.0,
                "repetition_penalty": 1.0, "length_penalty": 1.0, "num_beams": 1, "num_generations": 1}}])
            engine.run([CompletionRequest(prompt(engine), max_tokens=1, temperature=0)])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
