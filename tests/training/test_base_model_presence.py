"""A base model whose files are not here: GET /trainers says so with the command that
gets them, and (hub offline, as in every test) a job from it is refused at once
instead of failing minutes later in the training child."""

import json
import re

import pytest

from ..ui.conftest import UiClient
from .flow import add_dataset

PROMPTS = "\n".join(json.dumps({"prompt": f"colour {i}?", "completion": f"red {i}"}) for i in range(12))


@pytest.fixture
def api(client_for, tmp_path):
    # An empty local model dir: gpt2-large (a LoRA base) is not here; smollm2 ships in a package.
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, MODEL_DIR=str(tmp_path / "no-models"))


def test_trainers_mark_which_base_models_have_their_files(api):
    trainers = {trainer["task"]: trainer for trainer in api.client.get("/trainers", headers=api.headers).json}
    lora = trainers["text-generation"]["base_model_files"]
    assert lora["smollm2-135m-instruct"] == {"available": True}
    assert lora["gpt2-large"]["available"] is False
    assert lora["gpt2-large"]["download"].startswith("hf download openai-community/gpt2-large --revision ")
    assert set(lora) == set(trainers["text-generation"]["base_models"])
    assert trainers["tabular"]["base_model_files"] == {}


def test_a_job_from_an_absent_base_model_is_refused_with_the_command_and_nothing_is_queued(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, PROMPTS)
    assert dataset["status"] == "ready", dataset["parse_logs"]
    refused = client.post("/models/colours/train", headers=headers, json={
        "task": "text-generation", "dataset_id": dataset["id"], "base_model": "gpt2-large"})
    assert refused.status_code == 503
    assert "hf download openai-community/gpt2-large" in refused.json["message"]
    assert "Then start the job again." in refused.json["message"]
    assert client.get("/jobs", headers=headers).json["data"] == []
    assert client.get("/models/colours", headers=headers).status_code == 404


def test_the_training_form_marks_absent_base_models_with_their_command(api):
    dataset = add_dataset(api.client, api.headers, PROMPTS)
    alice = UiClient(api.app, api.key)
    page = alice.get(f"/ui/datasets/{dataset['id']}").get_data(as_text=True)
    select = re.search(r'<select id="base-model-text-generation".*?</select>', page, re.S)[0]
    assert '<option value="gpt2-large">gpt2-large (files not here)</option>' in select
    assert '<option value="smollm2-135m-instruct" selected>smollm2-135m-instruct</option>' in select
    assert re.search(r"<li>gpt2-large: <code>hf download openai-community/gpt2-large --revision main[^<]*</code></li>",
                     page)
