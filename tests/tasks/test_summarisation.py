"""POST /summarisation equals the seq2seq model's own generate() with its own settings."""

import pytest

TEXTS = ["Some long text to summarise about a river and a city.", "Some more long text that needs summarising"]


@pytest.fixture(scope="module")
def reference(tiny_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir["seq2seq"])
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_dir["seq2seq"]).eval()

    def summarise(texts, **kwargs):
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        output = model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], **kwargs)
        return tokenizer.batch_decode(output, skip_special_tokens=True)

    return summarise


def test_single_and_batch_match_generate(task_client, reference):
    single = task_client("/summarisation", {"text": TEXTS[0]})
    batch = task_client("/summarisation", {"text": TEXTS})

    assert single.status_code == 200
    assert single.json["output"] == reference([TEXTS[0]])[0]
    assert batch.json["output"] == reference(TEXTS)
    assert all(isinstance(summary, str) for summary in batch.json["output"])


def test_backprop_t5_is_prompted_with_summarise(task_client, reference):
    response = task_client("/summarisation", {"text": TEXTS[0], "model": "t5-base-qa-summary-emotion"})
    assert response.json["output"] == reference([f"summarise: {TEXTS[0]}"], do_sample=False, max_length=96)[0]


def test_long_input_is_truncated_to_the_model_limit(task_client, reference):
    long_text = "The river runs through the city. " * 400  # far beyond 128 tokens
    response = task_client("/summarisation", {"text": long_text})
    assert response.status_code == 200
    assert response.json["output"] == reference([long_text])[0]


def test_unknown_model_is_404(task_client):
    response = task_client("/summarisation", {"text": "x", "model": "nope"})
    assert response.status_code == 404
    assert "english" in response.json["message"]
