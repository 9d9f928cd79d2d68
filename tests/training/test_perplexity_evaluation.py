"""A generation version evaluated by perplexity, as a user runs it: a LoRA version of
the tiny causal LM (standing in for gpt2-large) trained by a real job on a
prompt-completion dataset, evaluated on held-out rows; the stored perplexity is
exp(mean NLL) of the completions' tokens as transformers + peft compute it on the
base model with the version's adapter, and its /v1/completions scores are the same
model's; another account asking for the version gets a 404. A chat dataset is
refused saying why."""

import json
import math

import pytest
import torch
from sqlalchemy import select

from core.tables import ModelVersion, UserModel
from uploads.serving import version_dirs
from web.settings import settings_of

from ..conftest import new_key
from .flow import add_dataset, start_job, wait_job
from .test_evaluation import evaluate, wait_evaluation

# Completions start with a space after a prompt's last word, so the prompt's own tokens
# are the first tokens of prompt + completion (a word never merges across the boundary).
TRAIN = [{"prompt": f"Item {i} is", "completion": f" number {i}."} for i in range(24)]
HELD_OUT = [{"prompt": f"Item {i} is", "completion": f" number {i}."} for i in range(30, 36)] + [
    {"prompt": "The sky is", "completion": " blue today, and the grass is green."},
    {"prompt": "Counting:", "completion": " one two three four"},
]
EPOCHS = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "max_length": 32}


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def api(client_for, tiny_model_dir):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, PREDICTIONS=True, PREDICTION_POLL_S=0.1,
                      MODEL_DIR=tiny_model_dir)


def adapted_model(app, tiny_dir, model: str, number: int):
    """The tiny base with the version's LoRA adapter, as peft loads it (not merged), and its tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with app.extensions["db"].sessions() as session:
        version_id = session.scalar(select(ModelVersion.id).join(UserModel, ModelVersion.model_id == UserModel.id)
                                    .where(UserModel.name == model, ModelVersion.number == number))
    files_dir = version_dirs(settings_of(app).data_dir, version_id)[0]
    base = AutoModelForCausalLM.from_pretrained(tiny_dir["causal_lm"])
    return PeftModel.from_pretrained(base, files_dir).eval(), AutoTokenizer.from_pretrained(tiny_dir["causal_lm"])


def token_logprobs(model, ids: list[int]) -> list[float]:
    """log P(token i | tokens before it) for i >= 1."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1) \
        .tolist()


def completion_nll(model, tokenizer, rows: list[dict]) -> tuple[float, int]:
    """The summed negative log-likelihood of the completions' tokens, and how many there are."""
    total, count = 0.0, 0
    for row in rows:
        prompt_ids = tokenizer(row["prompt"])["input_ids"]
        ids = tokenizer(row["prompt"] + row["completion"])["input_ids"]
        assert ids[:len(prompt_ids)] == prompt_ids  # the rows were chosen so
        scored = token_logprobs(model, ids)[len(prompt_ids) - 1:]
        total -= sum(scored)
        count += len(scored)
    return total, count


def test_a_lora_versions_perplexity_on_held_out_rows_is_the_adapted_models(api, tiny_dir):
    client, headers = api.client, api.headers
    train = add_dataset(client, headers, jsonl(TRAIN), name="items")
    held_out = add_dataset(client, headers, jsonl(HELD_OUT), name="held out")
    assert (train["format"], held_out["format"]) == ("prompt-completion", "prompt-completion")
    job = wait_job(client, headers, start_job(client, headers, "writer", task="text-generation",
                                              dataset_id=train["id"], base_model="gpt2-large",
                                              hyperparameters=EPOCHS)["id"])
    assert job["status"] == "succeeded", job["message"]

    done = wait_evaluation(client, headers, evaluate(client, headers, "writer", 1, held_out["id"])["id"])
    assert done["status"] == "succeeded", done["message"]
    metrics = done["metrics"]
    model, tokenizer = adapted_model(api.app, tiny_dir, "writer", 1)
    total, count = completion_nll(model, tokenizer, HELD_OUT)
    assert (metrics["rows"], metrics["rows_answered"], metrics["rows_failed"]) == (len(HELD_OUT), len(HELD_OUT), 0)
    assert metrics["tokens"] == count
    assert metrics["loss"] == pytest.approx(total / count, rel=1e-3)
    assert metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-3)

    # The compare route lists them as it does any task's metrics.
    table = client.get(f"/models/writer/compare?versions=1&dataset_id={held_out['id']}", headers=headers).json["table"]
    assert {row["metric"]: row["values"] for row in table if row["metric"] in ("perplexity", "loss", "tokens")} == {
        "perplexity": [metrics["perplexity"]], "loss": [metrics["loss"]], "tokens": [count]}

    # /v1/completions scores the version's prompts as the adapted model does, for its owner only.
    text = HELD_OUT[-2]["prompt"] + HELD_OUT[-2]["completion"]
    body = {"model": "writer@1", "prompt": text, "echo": True, "max_tokens": 0, "logprobs": 0}
    answer = client.post("/v1/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.json
    expected = token_logprobs(model, tokenizer(text)["input_ids"])
    assert answer.json["choices"][0]["logprobs"]["token_logprobs"][1:] == pytest.approx(expected, abs=1e-4)
    mallory = {"x-api-key": new_key(api.app, "mallory")}
    stolen = client.post("/v1/completions", json=body, headers=mallory)
    assert stolen.status_code == 404 and stolen.json["error"]["code"] == "model_not_found"

    # A chat dataset is not scored: its prompts would need the model's chat template rendered.
    chats = add_dataset(client, headers, jsonl([{"messages": [{"role": "user", "content": f"hi {i}"},
                                                              {"role": "assistant", "content": f"hello {i}"}]}
                                                for i in range(10)]))
    assert chats["format"] == "chat"
    refused = client.post("/models/writer/versions/1/evaluate", json={"dataset_id": chats["id"]}, headers=headers)
    assert refused.status_code == 422 and "chat template" in refused.json["message"]
    assert "prompt-completion" in refused.json["message"]
