"""GET /v1/models and /v1/models/{id} say whether each global model's files are here
(extra fields, which OpenAI's SDK keeps), and /v1's 404 says which of the models it
lists have them."""

from model_registry.catalogue import MODELS

from ..model_presence import hf_cache, put_in_cache  # noqa: F401 (hf_cache is a fixture)

MULTILINGUAL = MODELS["paraphrase-multilingual-MiniLM-L12-v2"]


def test_the_model_list_marks_which_models_are_here(serve, hf_cache):
    service = serve()
    put_in_cache(hf_cache, MULTILINGUAL.hf_id, MULTILINGUAL.revision, MULTILINGUAL.revision, {"modules.json": "[]"})

    models = {model.id: model for model in service.sdk(service.key()).models.list()}

    assert {key for key, model in models.items() if model.available} == {
        "all-MiniLM-L6-v2", "paraphrase-multilingual-MiniLM-L12-v2", "smollm2-135m-instruct"}
    assert models["gpt2-large"].download == (
        f"hf download openai-community/gpt2-large --revision main --cache-dir {hf_cache}")
    assert "download" not in models["all-MiniLM-L6-v2"].model_extra


def test_one_model_says_whether_it_is_here(serve, hf_cache):
    service = serve()
    sdk = service.sdk(service.key())

    present, absent = sdk.models.retrieve("smollm2-135m-instruct"), sdk.models.retrieve("clip-vit-base-patch32")

    assert present.model_extra == {"tasks": ["text-generation"],
                                   "endpoints": ["/v1/completions", "/v1/chat/completions"], "available": True}
    assert (absent.available, absent.download) == (
        False, f"hf download openai/clip-vit-base-patch32 --revision 3d74acf --cache-dir {hf_cache}")


def test_an_unknown_model_404_says_which_listed_models_have_their_files(serve, hf_cache):
    service = serve()

    response = service.post("/v1/embeddings", {"model": "nobody", "input": "hi"}, key=service.key())

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["message"].endswith(
        "Of these, all-MiniLM-L6-v2 has its files here; paraphrase-multilingual-MiniLM-L12-v2 and "
        "clip-vit-base-patch32 need theirs first (GET /v1/models gives the command that downloads them).")
