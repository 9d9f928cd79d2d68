"""GET /v1/models and /v1/models/{model} with the catalogue's models (own models: test_user_models.py)."""

import openai
import pytest

from model_registry.catalogue import MODELS

from .conftest import assert_openai_error


def test_the_sdk_lists_every_catalogue_model_as_owned_by_system(serve):
    service = serve()
    models = list(service.sdk(service.key()).models.list())

    assert [model.id for model in models] == list(MODELS)
    assert {(model.object, model.owned_by, model.created) for model in models} == {("model", "system", 0)}


def test_each_entry_says_which_tasks_and_v1_routes_take_it(serve):
    service = serve()
    response = service.get("/v1/models", key=service.key())
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    entries = {entry["id"]: entry for entry in body["data"]}

    assert entries["all-MiniLM-L6-v2"]["tasks"] == ["text-vectorisation", "text-similarity"]
    assert entries["all-MiniLM-L6-v2"]["endpoints"] == ["/v1/embeddings"]
    assert {"text-vectorisation", "image-classification", "image-vectorisation"} <= set(
        entries["clip-vit-base-patch32"]["tasks"])
    assert entries["clip-vit-base-patch32"]["endpoints"] == ["/v1/embeddings"]
    assert entries["gpt2-large"]["endpoints"] == ["/v1/completions", "/v1/chat/completions"]
    assert entries["bart-large-mnli"]["tasks"] == ["text-classification"]
    assert entries["bart-large-mnli"]["endpoints"] == []


def test_one_model_is_retrieved_by_id(serve):
    service = serve()
    model = service.sdk(service.key()).models.retrieve("all-MiniLM-L6-v2")
    assert (model.id, model.object, model.owned_by, model.created) == ("all-MiniLM-L6-v2", "model", "system", 0)


def test_a_public_name_v1_accepts_as_model_is_retrieved_under_that_name(serve):
    """LangChain and LlamaIndex check the model they are given: "english" works as
    /v1/embeddings' model, so it answers here too, as the model it means there."""
    service = serve()
    key = service.key()
    model = service.sdk(key).models.retrieve("english")
    assert (model.id, model.object, model.owned_by) == ("english", "model", "system")
    body = service.get("/v1/models/english", key=key).json()
    assert "text-vectorisation" in body["tasks"] and body["endpoints"] == ["/v1/embeddings"]
    assert body["available"] is True  # all-MiniLM-L6-v2, shipped in a package: what /v1/embeddings runs


@pytest.mark.parametrize("name", ["no-such-model", "English", "sentiment"])
def test_an_unknown_id_is_404_model_not_found(serve, name):
    service = serve()
    key = service.key()
    with pytest.raises(openai.NotFoundError) as refused:
        service.sdk(key).models.retrieve(name)
    assert (refused.value.code, refused.value.param) == ("model_not_found", "model")

    message = assert_openai_error(service.get(f"/v1/models/{name}", key=key), 404, "invalid_request_error",
                                  param="model", code="model_not_found")
    assert name in message and "GET /v1/models" in message
