"""POST /emotion: GoEmotions labels above the threshold, as the text-classification pipeline scores them."""

import pytest

TEXTS = ["I hope this works", "I'll be most upset if things go wrong"]


@pytest.fixture(scope="module")
def reference(tiny_dir):
    from transformers import pipeline

    return pipeline("text-classification", model=tiny_dir["emotion_classifier"], device="cpu")


def expected(reference, text, threshold):
    scores = reference(text, top_k=None, function_to_apply="sigmoid")
    ranked = sorted(scores, key=lambda s: s["score"], reverse=True)
    chosen = [s["label"] for s in ranked if s["score"] >= threshold] or [ranked[0]["label"]]
    return ", ".join(chosen)


def test_single_and_batch_match_the_pipeline(client_for, tiny_model_dir, reference):
    # The tiny model's scores sit near 0.5: a threshold there splits the labels.
    api = client_for(MODEL_DIR=tiny_model_dir, EMOTION_THRESHOLD=0.5)
    client, headers = api.client, api.headers

    single = client.post("/emotion", json={"text": TEXTS[0]}, headers=headers)
    batch = client.post("/emotion", json={"text": TEXTS}, headers=headers)

    assert single.status_code == 200 and batch.status_code == 200
    assert single.json["output"] == expected(reference, TEXTS[0], 0.5)
    assert batch.json["output"] == [expected(reference, text, 0.5) for text in TEXTS]


def test_a_high_threshold_gives_the_likeliest_label_alone(client_for, tiny_model_dir, reference):
    api = client_for(MODEL_DIR=tiny_model_dir, EMOTION_THRESHOLD=0.99)
    response = api.client.post("/emotion", json={"text": TEXTS[0]}, headers=api.headers)

    assert response.json["output"] == expected(reference, TEXTS[0], 0.99)
    assert "," not in response.json["output"]


def test_output_labels_are_goemotions_labels(task_client):
    from ..tiny_models import GO_EMOTIONS

    output = task_client("/emotion", {"text": "What a day"}).json["output"]
    assert output and set(output.split(", ")) <= set(GO_EMOTIONS)


def test_backprop_t5_answers_emotion_by_generation(task_client, tiny_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir["seq2seq"])
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_dir["seq2seq"])
    encoded = tokenizer([f"emotion: {TEXTS[0]}"], return_tensors="pt")
    want = tokenizer.batch_decode(
        model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], do_sample=False, max_length=96),
        skip_special_tokens=True,
    )[0]

    response = task_client("/emotion", {"text": TEXTS[0], "model": "t5-base-qa-summary-emotion"})
    assert response.status_code == 200
    assert response.json["output"] == want


def test_empty_batch_is_422(task_client):
    assert task_client("/emotion", {"text": []}).status_code == 422
