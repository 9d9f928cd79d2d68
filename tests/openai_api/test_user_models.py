"""An account's own uploaded models on /v1: reachable by name, listed, and invisible to other accounts."""

import io
import json
import os
import zipfile
from datetime import timezone

import openai
import pytest
from sqlalchemy import select

from app import create_app
from core.tables import ModelVersion, UserModel

from ..conftest import LiveServer, new_key
from ..uploads.helpers import deploy, upload_url
from .conftest import Service, assert_openai_error

SENTENCES = ["iPhone 12 128GB", "RTX 3090"]


def sentence_transformer_zip(folder: str) -> bytes:
    """A Hugging Face sentence-transformer folder declaring text-vectorisation: served with no user code."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                content = open(path, "rb").read()
                if os.path.relpath(path, folder) == "config.json":
                    content = json.dumps({**json.loads(content), "description": "mine",
                                          "tasks": ["text-vectorisation"]}).encode()
                archive.writestr(os.path.relpath(path, folder), content)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def alice_models(tmp_path_factory, tiny_sentence_model_dir):
    """A service where alice has built the tiny sentence-transformer as my-vectors."""
    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("v1-own") / "data"), "BOOTSTRAP_KEY": False,
                      "TESTING": True, "BUILDER": True, "BUILD_POLL_S": 0.2})
    try:
        alice = new_key(app, "alice")
        archive = sentence_transformer_zip(tiny_sentence_model_dir)
        details = deploy(app.test_client(), {"x-api-key": alice}, "my-vectors", archive)
        assert details["build_status"] == "success", details
        with LiveServer(app) as server:
            yield Service(app, server.url), alice
    finally:
        app.extensions["builder"].stop()


def serving_version_time(app, name: str) -> int:
    with app.extensions["db"].sessions() as session:
        created = session.scalar(select(ModelVersion.created_at)
                                 .join(UserModel, UserModel.current_version_id == ModelVersion.id)
                                 .where(UserModel.name == name))
    return int(created.replace(tzinfo=timezone.utc).timestamp())


def test_an_own_model_is_reachable_by_its_name_with_its_text_vectorisation_vectors(alice_models,
                                                                                   tiny_sentence_model_dir):
    from transformers import AutoTokenizer

    service, alice = alice_models
    result = service.sdk(alice).embeddings.create(input=SENTENCES, model="my-vectors", encoding_format="float")

    reference = service.post("/text-vectorisation", {"text": SENTENCES, "model": "my-vectors"}, key=alice)
    assert result.model == "my-vectors"
    assert [item.embedding for item in result.data] == reference.json()["vector"]
    assert len(result.data[0].embedding) == 32  # the tiny model's, not a global model's
    tokenizer = AutoTokenizer.from_pretrained(tiny_sentence_model_dir)
    assert result.usage.prompt_tokens == sum(len(tokenizer(text)["input_ids"]) for text in SENTENCES)


def test_another_account_can_neither_use_list_nor_retrieve_it(alice_models):
    service, _alice = alice_models
    bob = service.key("bob")
    with pytest.raises(openai.NotFoundError) as refused:
        service.sdk(bob).embeddings.create(input="hello", model="my-vectors")
    assert (refused.value.code, refused.value.param) == ("model_not_found", "model")
    assert "does not exist or you do not have access" in refused.value.message

    listed = service.get("/v1/models", key=bob).json()["data"]
    assert {entry["owned_by"] for entry in listed} == {"system"}
    assert_openai_error(service.get("/v1/models/my-vectors", key=bob), 404, "invalid_request_error",
                        param="model", code="model_not_found")


def test_the_list_shows_own_models_after_the_global_ones_and_retrieve_gives_the_same_entry(alice_models):
    service, alice = alice_models
    listed = service.get("/v1/models", key=alice).json()["data"]
    own = [entry for entry in listed if entry["owned_by"] != "system"]

    assert listed[-len(own):] == own
    assert own == [
        {"id": "my-vectors", "object": "model", "created": serving_version_time(service.app, "my-vectors"),
         "owned_by": "alice", "tasks": ["text-vectorisation"], "endpoints": ["/v1/embeddings"]},
    ]
    assert service.get("/v1/models/my-vectors", key=alice).json() == own[0]
    model = service.sdk(alice).models.retrieve("my-vectors")
    assert (model.id, model.owned_by) == ("my-vectors", "alice")


def test_an_own_model_without_a_successful_build_is_404_saying_so_and_not_listed(serve):
    service = serve()
    key = service.key()
    upload_url(service.app.test_client(), {"x-api-key": key}, "pending")  # never uploaded

    response = service.post("/v1/embeddings", {"input": "hello", "model": "pending"}, key=key)
    message = assert_openai_error(response, 404, "invalid_request_error", param="model", code="model_not_found")
    assert "no successful build" in message
    assert "pending" not in [entry["id"] for entry in service.get("/v1/models", key=key).json()["data"]]
    assert service.get("/v1/models/pending", key=key).status_code == 404
