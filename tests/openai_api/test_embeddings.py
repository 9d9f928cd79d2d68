"""POST /v1/embeddings through OpenAI's SDK: the same vectors as /text-vectorisation, real
token counts, dimensions, and 400s that name the field at fault."""

import base64
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import openai
import pytest
import requests

from model_registry import catalogue
from model_registry.served_model import Capability

from ..tiny_models import packaged_minilm_dir
from .conftest import assert_openai_error

SENTENCES = ["iPhone 12 128GB", "RTX 3090", "The meaning of life is 42."]
LONG_TEXT = "tokens " * 600  # beyond every model's limit: truncated


def text_vectorisation(service, key: str, text, model: str):
    response = requests.post(service.url + "/text-vectorisation", json={"text": text, "model": model},
                             headers={"x-api-key": key}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["vector"]


@pytest.fixture(scope="module")
def packaged(packaged_service):
    """(service, key, SDK client) on the real packaged english model."""
    key = packaged_service.key()
    return packaged_service, key, packaged_service.sdk(key)


# --- the real packaged model ----------------------------------------------------------------------

@pytest.mark.packaged_model
@pytest.mark.parametrize("model", ["english", "all-MiniLM-L6-v2"])
@pytest.mark.parametrize("text", [SENTENCES[0], SENTENCES], ids=["single", "list"])
def test_vectors_equal_text_vectorisation_as_floats_and_as_the_sdks_default_base64(packaged, model, text):
    service, key, sdk = packaged
    expected = text_vectorisation(service, key, text, "english")
    expected = expected if isinstance(text, list) else [expected]

    floats = sdk.embeddings.create(input=text, model=model, encoding_format="float")
    assert floats.model == model and floats.object == "list"
    assert [item.index for item in floats.data] == list(range(len(expected)))
    assert [item.embedding for item in floats.data] == expected

    raw = sdk.embeddings.with_raw_response.create(input=text, model=model)  # no encoding_format: base64
    assert all(isinstance(item["embedding"], str) for item in raw.http_response.json()["data"])
    assert [item.embedding for item in raw.parse().data] == expected


@pytest.mark.packaged_model
def test_usage_counts_the_tokens_the_model_reads(packaged):
    from transformers import AutoTokenizer

    _service, _key, sdk = packaged
    folder = packaged_minilm_dir()
    with open(os.path.join(folder, "sentence_bert_config.json")) as config:
        max_seq_length = json.load(config)["max_seq_length"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [*SENTENCES, LONG_TEXT]
    expected = sum(len(tokenizer(text, truncation=True, max_length=max_seq_length)["input_ids"]) for text in texts)
    assert expected > max_seq_length  # the long text counts what was read, not all it holds

    usage = sdk.embeddings.create(input=texts, model="english").usage
    assert (usage.prompt_tokens, usage.total_tokens) == (expected, expected)


@pytest.mark.packaged_model
def test_dimensions_equal_to_the_native_size_changes_nothing(packaged):
    _service, _key, sdk = packaged
    full = sdk.embeddings.create(input=SENTENCES, model="english").data
    same = sdk.embeddings.create(input=SENTENCES, model="english", dimensions=384).data
    assert [item.embedding for item in same] == [item.embedding for item in full]


@pytest.mark.packaged_model
@pytest.mark.parametrize("dimensions,words", [(100, ["not trained", "Matryoshka", "384"]), (385, ["at most 384"])])
def test_dimensions_a_model_cannot_give_are_400(packaged, dimensions, words):
    _service, _key, sdk = packaged
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(input="hello", model="english", dimensions=dimensions)
    assert refused.value.param == "dimensions"
    for word in words:
        assert word in refused.value.message


@pytest.mark.packaged_model
def test_user_is_accepted_and_ignored(packaged):
    service, key, _sdk = packaged
    with_user = service.post("/v1/embeddings", {"input": "hello", "model": "english", "user": "user-42"}, key=key)
    without = service.post("/v1/embeddings", {"input": "hello", "model": "english"}, key=key)
    assert with_user.status_code == 200 and with_user.json()["data"] == without.json()["data"]


# --- refused input (no model runs) -----------------------------------------------------------------

@pytest.mark.parametrize(
    "body,param,words",
    [
        ({"input": 5, "model": "english"}, "input", ["string"]),
        ({"input": ["ok", 3.5], "model": "english"}, "input", ["string"]),
        ({"input": "", "model": "english"}, "input", ["empty"]),
        ({"input": [], "model": "english"}, "input", ["empty"]),
        ({"input": ["ok", ""], "model": "english"}, "input", ["empty"]),
        ({"model": "english"}, "input", ["Missing"]),
        ({"input": "ok"}, "model", ["Missing"]),
        ({"input": "ok", "model": 7}, "model", ["string"]),
        ({"input": "ok", "model": "english", "encoding_format": "hex"}, "encoding_format", ["float", "base64"]),
        ({"input": "ok", "model": "english", "dimensions": "8"}, "dimensions", ["integer"]),
        ({"input": "ok", "model": "english", "dimensions": 0}, "dimensions", ["greater than or equal to 1"]),
        ({"input": "ok", "model": "english", "temperature": 1}, "temperature", ["Unknown field"]),
        ({"input": [101, 2023, 102], "model": "english"}, "input", ["Token arrays", "check_embedding_ctx_length"]),
        ({"input": [[101, 102], [101]], "model": "english"}, "input", ["Token arrays"]),
        (["hello"], None, ["Invalid input type"]),  # not an object: no one field at fault
    ],
)
def test_bad_input_is_400_naming_the_field(packaged, body, param, words):
    service, key, _sdk = packaged
    message = assert_openai_error(service.post("/v1/embeddings", body, key=key), 400, "invalid_request_error",
                                  param=param)
    for word in words:
        assert word in message


def test_the_sdk_raises_bad_request_for_token_arrays_and_not_found_for_an_unknown_model(packaged):
    _service, _key, sdk = packaged
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(input=[[101, 2023, 102]], model="english")
    assert refused.value.param == "input" and "Token arrays" in refused.value.message

    with pytest.raises(openai.NotFoundError) as missing:
        sdk.embeddings.create(input="hello", model="text-embedding-3-small")
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")
    for choice in ("all-MiniLM-L6-v2", "english", "multilingual", "GET /v1/models"):
        assert choice in missing.value.message


def test_a_catalogue_model_of_another_task_is_not_an_embedding_model(packaged):
    service, key, _sdk = packaged
    response = service.post("/v1/embeddings", {"input": "hello", "model": "gpt2-large"}, key=key)
    assert_openai_error(response, 404, "invalid_request_error", param="model", code="model_not_found")


@pytest.mark.parametrize(
    "config,body,words",
    [
        ({"MAX_EMBEDDING_INPUTS": 3}, {"input": ["a", "b", "c", "d"]}, ["at most 3", "INFER_MAX_EMBEDDING_INPUTS"]),
        ({"MAX_TEXT_LENGTH": 10}, {"input": ["short", "x" * 11]}, ["limit is 10", "INFER_MAX_TEXT_LENGTH"]),
    ],
)
def test_the_service_limits_apply(serve, config, body, words):
    service = serve(**config)
    response = service.post("/v1/embeddings", {**body, "model": "english"}, key=service.key())
    message = assert_openai_error(response, 400, "invalid_request_error", param="input")
    for word in words:
        assert word in message


# --- tiny models ----------------------------------------------------------------------------------

@pytest.fixture
def matryoshka_service(serve, tiny_sentence_model_dir, tmp_path, monkeypatch):
    """english served by the tiny sentence-transformer (32 dimensions), declared Matryoshka-trained."""
    shutil.copytree(tiny_sentence_model_dir, tmp_path / "models" / "all-MiniLM-L6-v2")
    spec = catalogue.MODELS["all-MiniLM-L6-v2"]
    monkeypatch.setitem(catalogue.MODELS, "all-MiniLM-L6-v2", replace(spec, matryoshka=True))
    return serve(MODEL_DIR=str(tmp_path / "models"))


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_a_matryoshka_model_gives_unit_length_prefixes_of_its_vectors(matryoshka_service, encoding_format):
    sdk = matryoshka_service.sdk(matryoshka_service.key())
    full = np.array([item.embedding for item in sdk.embeddings.create(input=SENTENCES, model="english").data])
    assert full.shape == (3, 32)

    short = sdk.embeddings.create(input=SENTENCES, model="english", dimensions=8, encoding_format=encoding_format)
    vectors = np.array([item.embedding if encoding_format == "float"
                        else np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
                        for item in short.data])
    assert vectors.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    prefixes = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, prefixes, atol=1e-6)
    assert not np.allclose(np.linalg.norm(full[:, :8], axis=1), 1.0)  # re-normalising did something

    with pytest.raises(openai.BadRequestError):
        sdk.embeddings.create(input="hello", model="english", dimensions=33)


def test_usage_is_null_for_a_model_that_cannot_count_tokens(serve, tiny_model_dir):
    service = serve(MODEL_DIR=tiny_model_dir)
    key = service.key()
    served = service.app.extensions["models"].get("text-vectorisation", "clip")
    served.capabilities -= {Capability.TOKEN_COUNTS}  # as for uploaded code

    response = service.post("/v1/embeddings", {"input": ["hello", "world"], "model": "clip"}, key=key)
    assert response.status_code == 200, response.text
    assert response.json()["usage"] == {"prompt_tokens": None, "total_tokens": None}
    assert len(response.json()["data"]) == 2


def test_clip_counts_the_tokens_its_text_side_reads(serve, tiny_model_dir):
    from transformers import AutoConfig, AutoTokenizer

    service = serve(MODEL_DIR=tiny_model_dir)
    folder = os.path.join(tiny_model_dir, "clip-vit-base-patch32")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    limit = min(tokenizer.model_max_length, AutoConfig.from_pretrained(folder).text_config.max_position_embeddings)
    texts = ["a photo of a cat", LONG_TEXT]
    expected = sum(len(tokenizer(text, truncation=True, max_length=limit)["input_ids"]) for text in texts)
    assert expected == len(tokenizer(texts[0])["input_ids"]) + limit

    sdk = service.sdk(service.key())
    result = sdk.embeddings.create(input=texts, model="clip-vit-base-patch32", encoding_format="float")
    assert result.usage.prompt_tokens == expected
    assert [item.embedding for item in result.data] == text_vectorisation(service, service.key(), texts, "clip")
