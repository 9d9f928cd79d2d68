"""Settings: defaults, INFER_* overrides typed like their fields, derived paths, and
overrides that must name a setting."""

import dataclasses

import pytest

from app import create_app
from core.settings import FIELDS, Settings
from web.settings import settings_of


def test_environment_overrides_are_typed():
    settings = Settings.from_environ({"INFER_MAX_BATCH_SIZE": "7", "INFER_BOOTSTRAP_KEY": "false",
                                      "INFER_DEVICE": "cuda", "INFER_REQUEST_TIMEOUT_S": "2.5"})
    assert settings.max_batch_size == 7
    assert settings.bootstrap_key is False
    assert settings.device == "cuda"
    assert settings.request_timeout_s == 2.5
    assert settings.max_text_length == Settings().max_text_length


def test_every_field_is_typed_documented_and_its_default_has_its_type():
    for item in FIELDS.values():
        assert item.type in (bool, int, float, str), item.name
        assert type(item.default) is item.type, item.name
        assert item.metadata["doc"].strip(), item.name


def test_database_url_is_read_with_or_without_the_prefix():
    assert Settings.from_environ({"DATABASE_URL": "postgresql://x/y"}).database_url == "postgresql://x/y"
    both = {"INFER_DATABASE_URL": "sqlite:///a.db", "DATABASE_URL": "b"}
    assert Settings.from_environ(both).database_url == "sqlite:///a.db"


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match="INFER_MAX_BATCH_SIZE: invalid literal"):
        Settings.from_environ({"INFER_MAX_BATCH_SIZE": "many"})
    with pytest.raises(ValueError, match="INFER_BUILDER: expected a boolean, got 'maybe'"):
        Settings.from_environ({"INFER_BUILDER": "maybe"})


def test_derived_paths_default_under_the_data_dir(tmp_path):
    settings = Settings.from_environ({"INFER_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/infer.db"
    assert settings.model_dir == f"{tmp_path}/models"


def test_overrides_apply_before_the_derived_values(tmp_path):
    settings = Settings.from_environ({"INFER_DATA_DIR": "/elsewhere"}, overrides={"DATA_DIR": str(tmp_path)})
    assert settings.model_dir == f"{tmp_path}/models"


def test_an_override_must_name_a_setting_and_have_its_type():
    with pytest.raises(ValueError, match="MAX_BATCH is not a setting"):
        Settings.from_environ({}, overrides={"MAX_BATCH": 3})
    with pytest.raises(ValueError, match="MAX_BATCH_SIZE must be int, not float"):
        Settings.from_environ({}, overrides={"MAX_BATCH_SIZE": 3.5})
    # A string is read as the environment's would be; an int where a float is expected is a float.
    settings = Settings().with_overrides({"MAX_BATCH_SIZE": "3", "REQUEST_TIMEOUT_S": 2})
    assert settings.max_batch_size == 3 and settings.request_timeout_s == 2.0


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().max_batch_size = 3  # type: ignore[misc]


def test_create_app_reads_them_once_and_refuses_an_unknown_key(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path / "data"), "BOOTSTRAP_KEY": False, "TESTING": True,
                      "BUILDER": False, "TRAINER": False, "PREDICTIONS": False, "MAX_BATCH_SIZE": 5})
    assert settings_of(app).max_batch_size == 5
    assert app.config["TESTING"] is True  # Flask's own key stays Flask's
    assert app.config["MAX_CONTENT_LENGTH"] == settings_of(app).max_content_length
    with pytest.raises(ValueError, match="MAX_BATCH_SIZES is not a setting"):
        create_app({"DATA_DIR": str(tmp_path / "data"), "MAX_BATCH_SIZES": 5})


def test_a_secret_setting_is_read_from_the_file_its_FILE_variable_names(tmp_path):
    """Kubernetes and Docker mount secrets as files: INFER_<NAME>_FILE names one, and the
    value is the file's text without its trailing line break."""
    database = tmp_path / "database-url"
    database.write_text("postgresql+psycopg://infer:p%40ss@db/infer\n")
    queue = tmp_path / "queue-url"
    queue.write_text("redis://:secret@redis:6379/0\r\n")
    settings = Settings.from_environ({"INFER_DATABASE_URL_FILE": str(database), "INFER_QUEUE_URL_FILE": str(queue)})
    assert settings.database_url == "postgresql+psycopg://infer:p%40ss@db/infer"
    assert settings.queue_url == "redis://:secret@redis:6379/0"
    # DATABASE_URL is read unprefixed too, and so is its file.
    assert Settings.from_environ({"DATABASE_URL_FILE": str(database)}).database_url.startswith("postgresql")
    assert {name for name, item in FIELDS.items() if item.metadata["secret"]} == {
        "database_url", "secret_key", "queue_url", "rate_limit_storage"}


def test_a_secret_given_twice_or_a_file_that_cannot_be_read_is_an_error_naming_the_variable(tmp_path):
    secret = tmp_path / "secret-key"
    secret.write_text("from-the-file")
    with pytest.raises(ValueError, match="INFER_SECRET_KEY and INFER_SECRET_KEY_FILE are both set"):
        Settings.from_environ({"INFER_SECRET_KEY": "inline", "INFER_SECRET_KEY_FILE": str(secret)})
    with pytest.raises(ValueError, match="INFER_SECRET_KEY_FILE: cannot read .*missing"):
        Settings.from_environ({"INFER_SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_a_setting_that_is_not_secret_has_no_FILE_variable(tmp_path):
    size = tmp_path / "size"
    size.write_text("7")
    assert Settings.from_environ({"INFER_MAX_BATCH_SIZE_FILE": str(size)}).max_batch_size == Settings().max_batch_size
