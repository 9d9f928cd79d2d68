"""POST /text-classification equals transformers' zero-shot pipeline (multi-label) on a tiny NLI model."""

import pytest


@pytest.fixture(scope="module")
def reference(tiny_dir):
    from transformers import pipeline

    return pipeline("zero-shot-classification", model=tiny_dir["nli"], device="cpu")


def expected(reference, text, labels):
    result = reference(text, candidate_labels=labels, multi_label=True)
    return dict(zip(result["labels"], result["scores"]))


def assert_close(got: dict, want: dict):
    assert set(got) == set(want)
    for label in want:
        assert got[label] == pytest.approx(want[label], abs=1e-5)


def test_single_text_matches_the_pipeline(task_client, reference):
    labels = ["product issue", "furniture", "space"]
    response = task_client("/text-classification", {"text": "I am really mad because my product broke.", "labels": labels})

    assert response.status_code == 200
    assert_close(response.json["probabilities"], expected(reference, "I am really mad because my product broke.", labels))


def test_batch_with_different_labels_per_item(task_client, reference):
    texts = ["I am really mad because my product broke.", "I would like to collaborate with you on social media"]
    labels = [["product issue", "furniture", "space"], ["product issue", "sales"]]
    response = task_client("/text-classification", {"text": texts, "labels": labels, "model": "multilingual"})

    assert response.status_code == 200
    for got, text, item_labels in zip(response.json["probabilities"], texts, labels):
        assert_close(got, expected(reference, text, item_labels))


def test_batch_with_one_label_list_for_all(task_client, reference):
    response = task_client("/text-classification", {"text": ["one", "two"], "labels": ["a", "b"]})
    assert response.status_code == 200
    assert [set(p) for p in response.json["probabilities"]] == [{"a", "b"}, {"a", "b"}]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"text": "x", "labels": []}, "labels"),
        ({"text": "x", "labels": ["a", "a"]}, "labels"),
        ({"text": "x", "labels": "a"}, "labels"),
        ({"text": "x", "labels": [["a"]]}, "labels"),
        ({"text": ["x", "y"], "labels": [["a"]]}, "labels"),
        ({"text": "x"}, "labels"),
        ({"text": "x", "labels": None, "model": ""}, "labels"),
        ({"text": ["x", "y"], "labels": None, "model": "multilingual"}, "labels"),
        ({"text": "x", "labels": ["a"], "top_k": -1}, "top_k"),
        ({"text": "x", "labels": ["a"], "top_k": 1.5}, "top_k"),
    ],
)
def test_bad_labels_are_422_naming_the_field(task_client, body, field):
    response = task_client("/text-classification", body)
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_too_many_labels_names_the_setting(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, MAX_LABELS=2)
    response = api.client.post(
        "/text-classification", json={"text": "x", "labels": ["a", "b", "c"]}, headers=api.headers
    )
    assert response.status_code == 422
    assert "INFER_MAX_LABELS" in response.json["message"]


def test_over_long_text_is_truncated_not_a_crash(task_client):
    response = task_client("/text-classification", {"text": "word " * 3000, "labels": ["a", "b"]})
    assert response.status_code == 200


def test_many_pairs_are_split_over_several_passes_with_the_same_result(task_client, reference):
    from model_registry.loaders import nli

    labels = [f"label {i}" for i in range(30)]
    texts = ["first text", "second text", "third text"]  # 90 pairs > PAIRS_PER_PASS
    assert len(texts) * len(labels) > nli.PAIRS_PER_PASS
    response = task_client("/text-classification", {"text": texts, "labels": labels})

    assert response.status_code == 200
    for got, text in zip(response.json["probabilities"], texts):
        assert_close(got, expected(reference, text, labels))


def test_top_k_answers_the_k_likeliest_of_every_label_likeliest_first(task_client):
    labels = ["product issue", "furniture", "space", "sales"]
    texts = ["I am really mad because my product broke.", "Let us work together"]
    every = task_client("/text-classification", {"text": texts, "labels": labels}).json["probabilities"]
    top = task_client("/text-classification", {"text": texts, "labels": labels, "top_k": 2}).json["probabilities"]
    beyond = task_client("/text-classification", {"text": texts[0], "labels": labels, "top_k": 9}).json["probabilities"]

    for got, full in zip(top, every):
        ranked = sorted(full.items(), key=lambda pair: pair[1], reverse=True)
        assert list(got) == [label for label, _ in ranked[:2]]
        assert got == pytest.approx(dict(ranked[:2]), abs=1e-6)
    assert list(beyond) == [label for label, _ in sorted(every[0].items(), key=lambda pair: pair[1], reverse=True)]


def test_no_labels_for_a_zero_shot_model_says_labels_are_required_for_it(task_client):
    response = task_client("/text-classification", {"text": "x", "labels": None, "model": "multilingual"})
    assert response.status_code == 422
    assert "Labels are required for model 'multilingual'" in response.json["message"]
