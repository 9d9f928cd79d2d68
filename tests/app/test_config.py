"""Settings: defaults, INFER_* overrides typed like their defaults, derived paths."""

import pytest

from app.config import DEFAULTS, finalise, load_config


def test_environment_overrides_are_typed():
    config = load_config({"INFER_MAX_BATCH_SIZE": "7", "INFER_BOOTSTRAP_KEY": "false", "INFER_DEVICE": "cuda"})
    assert config["MAX_BATCH_SIZE"] == 7
    assert config["BOOTSTRAP_KEY"] is False
    assert config["DEVICE"] == "cuda"
    assert config["MAX_TEXT_LENGTH"] == DEFAULTS["MAX_TEXT_LENGTH"]


def test_database_url_is_read_with_or_without_the_prefix():
    assert load_config({"DATABASE_URL": "postgresql://x/y"})["DATABASE_URL"] == "postgresql://x/y"
    assert load_config({"INFER_DATABASE_URL": "sqlite:///a.db", "DATABASE_URL": "b"})["DATABASE_URL"] == "sqlite:///a.db"


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="INFER_MAX_BATCH_SIZE"):
        load_config({"INFER_MAX_BATCH_SIZE": "many"})


def test_derived_paths_default_under_the_data_dir(tmp_path):
    config = finalise(load_config({"INFER_DATA_DIR": str(tmp_path)}))
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path}/infer.db"
    assert config["MODEL_DIR"] == f"{tmp_path}/models"
