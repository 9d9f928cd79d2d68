"""INFER_PRELOAD_MODELS entries: 'task:name' pairs or model keys, and what a wrong one says."""

import pytest

from core.errors import NotFound
from core.settings import Settings
from model_registry import ModelRegistry


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(Settings.from_environ({}, overrides={"DATA_DIR": str(tmp_path / "data"), "DEVICE": "cpu"}))


def test_an_entry_names_a_model_by_task_and_public_name_or_by_key(registry):
    assert registry.preload_key("text-vectorisation:english") == "all-MiniLM-L6-v2"
    assert registry.preload_key("text-generation:smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert registry.preload_key("all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"


@pytest.mark.parametrize("entry, says", [
    ("text-vectorisations:english", "unknown task 'text-vectorisations' in 'text-vectorisations:english'; known: "),
    ("text-vectorisation:englsh", "Model 'englsh' not found for text-vectorisation. Available: english"),
    ("MiniLM", "unknown model 'MiniLM'; known: all-MiniLM-L6-v2"),
])
def test_a_wrong_entry_says_what_would_be_right(registry, entry, says):
    with pytest.raises(NotFound) as error:
        registry.preload_key(entry)
    assert says in str(error.value)
