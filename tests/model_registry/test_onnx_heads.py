"""The emotion, NLI and extractive QA loaders on ONNX Runtime give torch's answers (tiny
BERT models of each head, exported once into this module's cache)."""

from dataclasses import replace

import pytest

from core.settings import Settings
from model_registry.catalogue import ModelSpec
from model_registry.loaders import load_emotion_classifier, load_extractive_qa, load_zero_shot_nli
from model_registry.loaders.common import LoadSettings

CONTEXT = ("The Eiffel Tower was finished in 1889 for the World's Fair in Paris. " * 8
           + "Alice met Bob near the river on a cold morning. " * 8)
CASES = {
    "emotion_classifier": (load_emotion_classifier, "emotion",
                           [{"text": "I am so happy today"}, {"text": "This is awful and I am angry."}]),
    "nli": (load_zero_shot_nli, "text-classification",
            [{"text": "I love football", "labels": ["sport", "politics", "cooking"]},
             {"text": "Parliament voted on the budget late last night.", "labels": ["politics", "sport"]}]),
    # A context longer than the tiny model's 128 tokens: read in several windows.
    "extractive_qa": (load_extractive_qa, "qa",
                      [{"question": "Who met Bob?", "context": CONTEXT},
                       {"question": "When was it finished?", "context": CONTEXT[:200]}]),
}


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("onnx-heads"))


def rounded(answer):
    # Probabilities agree to float rounding (about 1e-7), not bit for bit.
    return {label: round(p, 5) for label, p in answer.items()} if isinstance(answer, dict) else answer


@pytest.mark.parametrize("builder", list(CASES))
def test_a_head_on_onnx_answers_as_on_torch(builder, tiny_dir, onnx_cache):
    loader, task, items = CASES[builder]
    spec = ModelSpec(f"tiny-{builder}", "tiny", "tiny", builder, "a test model")

    on_onnx = loader(spec, tiny_dir[builder], "cpu", False, LoadSettings(backend="onnx", onnx_cache_dir=onnx_cache))
    on_torch = loader(spec, tiny_dir[builder], "cpu", False, LoadSettings())

    assert on_onnx.backend == "onnx" and on_torch.backend == "torch"
    got, want = on_onnx.runners[task](items), on_torch.runners[task](items)
    assert [rounded(answer) for answer in got] == [rounded(answer) for answer in want]


def test_a_per_model_override_picks_the_backend_of_that_model_only(tiny_dir, onnx_cache):
    settings = LoadSettings(backend="torch", backend_overrides=(("tiny-nli", "onnx"),), onnx_cache_dir=onnx_cache)
    chosen = load_zero_shot_nli(ModelSpec("tiny-nli", "t", "t", "nli", "t"), tiny_dir["nli"], "cpu", False, settings)
    other = load_zero_shot_nli(ModelSpec("other-nli", "t", "t", "nli", "t"), tiny_dir["nli"], "cpu", False, settings)
    assert chosen.backend == "onnx" and other.backend == "torch"


def test_backend_settings_are_read_and_a_wrong_one_names_its_variable():
    base = Settings(emotion_threshold=0.5, backend="torch", backend_overrides="a:onnx, b:torch")
    assert LoadSettings.from_config(base).backend_overrides == (("a", "onnx"), ("b", "torch"))
    with pytest.raises(ValueError, match="INFER_BACKEND: 'tensorflow'"):
        LoadSettings.from_config(replace(base, backend="tensorflow"))
    with pytest.raises(ValueError, match="INFER_BACKEND_OVERRIDES: 'a:tpu'"):
        LoadSettings.from_config(replace(base, backend_overrides="a:tpu"))
    with pytest.raises(ValueError, match="INFER_ONNX_INT8: 'int4'"):
        LoadSettings.from_config(replace(base, onnx_int8="int4"))
