"""GET /models?include_global=true and the task routes' 404 say which global models
have their files on this server, and how to get the others'."""

from model_registry.catalogue import MODELS

from ..model_presence import hf_cache, put_in_cache  # noqa: F401 (hf_cache is a fixture)

DISTILBERT = MODELS["distilbert-base-cased-distilled-squad"]


def global_entries(api) -> dict[str, dict]:
    response = api.client.get("/models?include_global=true", headers=api.headers)
    assert response.status_code == 200
    return {entry["name"]: entry for entry in response.json if entry["id"].startswith("global_")}


def test_global_models_say_whether_their_files_are_here(client_for, hf_cache):
    api = client_for()
    put_in_cache(hf_cache, DISTILBERT.hf_id, DISTILBERT.revision, "5" * 40, {"config.json": "{}"})

    entries = global_entries(api)

    assert set(entries) == set(MODELS)
    # In a package (MiniLM, SmolLM2's GGUF), or in the Hugging Face cache at the pinned revision.
    assert {name for name, entry in entries.items() if entry["available"]} == {
        "all-MiniLM-L6-v2", "smollm2-135m-instruct", "distilbert-base-cased-distilled-squad"}
    assert "download" not in entries["all-MiniLM-L6-v2"]
    assert entries["bart-large-mnli"]["download"] == (
        f"hf download facebook/bart-large-mnli --revision d7645e1 --cache-dir {hf_cache}")
    assert entries["gpt2-large"]["download"] == (
        f"hf download openai-community/gpt2-large --revision main --cache-dir {hf_cache}")
    # Backprop's fields are all still there.
    assert {"id", "name", "description", "tasks", "build_status", "last_deployment"} <= set(entries["gpt2-large"])


def test_own_models_carry_no_presence_fields(client_for, hf_cache):
    api = client_for()
    assert api.client.post("/upload-url", json={"model_name": "mine"}, headers=api.headers).status_code == 200

    own = [entry for entry in api.client.get("/models", headers=api.headers).json]

    assert [entry["name"] for entry in own] == ["mine"]
    assert "available" not in own[0] and "download" not in own[0]


def test_an_unknown_model_404_says_which_listed_names_have_their_files(client_for, hf_cache):
    api = client_for()

    vectors = api.client.post("/text-vectorisation", json={"text": "hi", "model": "nobody"}, headers=api.headers)
    qa = api.client.post("/qa", json={"question": "q", "context": "c", "model": "nobody"}, headers=api.headers)

    assert vectors.status_code == 404
    assert vectors.json["message"] == (
        "Model 'nobody' not found for text-vectorisation. Global models for text-vectorisation: english, "
        "multilingual, clip, or the name of one of your models. Of these, english has its files here; "
        "multilingual and clip need theirs first (GET /models?include_global=true gives the command that "
        "downloads them).")
    assert qa.status_code == 404
    assert qa.json["message"].endswith(
        "None of these has its files here yet; GET /models?include_global=true gives the command that "
        "downloads them.")

    put_in_cache(hf_cache, DISTILBERT.hf_id, DISTILBERT.revision, "5" * 40, {"config.json": "{}"})
    qa = api.client.post("/qa", json={"question": "q", "context": "c", "model": "nobody"}, headers=api.headers)
    assert "Of these, english has its files here; t5-base-qa-summary-emotion needs its first" in qa.json["message"]
