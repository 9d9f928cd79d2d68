"""The one resolver (uploads/resolver.py): every kind of model name a request may
send, for the account that sends it, with real tiny models."""

import pytest
from sqlalchemy import select

from app import create_app
from core.errors import NotFound
from core.tables import Account
from uploads.resolver import CATALOGUE, USER, UnknownModel

from ..conftest import new_key
from ..openai_api.test_user_models import sentence_transformer_zip
from .helpers import deploy

TASK = "text-vectorisation"


@pytest.fixture(scope="module")
def service(tmp_path_factory, tiny_sentence_model_dir, tiny_model_dir):
    """alice has built the tiny sentence-transformer twice as my-vectors (versions 1 and 2); bob has nothing."""
    app = create_app({"DATA_DIR": str(tmp_path_factory.mktemp("resolver") / "data"), "BOOTSTRAP_KEY": False,
                      "TESTING": True, "BUILDER": True, "BUILD_POLL_S": 0.2, "MODEL_DIR": tiny_model_dir})
    try:
        alice = new_key(app, "alice")
        new_key(app, "bob")
        archive = sentence_transformer_zip(tiny_sentence_model_dir)
        for _ in range(2):
            details = deploy(app.test_client(), {"x-api-key": alice}, "my-vectors", archive)
            assert details["build_status"] == "success", details
        with app.extensions["db"].sessions() as session:
            ids = dict(session.execute(select(Account.name, Account.id)).all())
        yield app, ids
    finally:
        app.extensions["builder"].stop()


def find(app, account_id: int, name: str | None, task: str = TASK):
    with app.test_request_context():  # the request's database session
        return app.extensions["resolver"].find_model(account_id, task, name)


def test_no_name_is_the_tasks_default_by_its_public_name(service):
    app, ids = service
    resolved = find(app, ids["alice"], None)
    assert (resolved.kind, resolved.key, resolved.name, resolved.version) == (
        CATALOGUE, "all-MiniLM-L6-v2", "english", None)


@pytest.mark.parametrize("name, key", [("multilingual", "paraphrase-multilingual-MiniLM-L12-v2"),
                                       ("clip", "clip-vit-base-patch32"),
                                       ("clip-vit-base-patch32", "clip-vit-base-patch32")])
def test_a_public_name_or_a_catalogue_key_is_a_catalogue_model_named_as_sent(service, name, key):
    app, ids = service
    resolved = find(app, ids["alice"], name)
    assert (resolved.kind, resolved.key, resolved.name, resolved.version) == (CATALOGUE, key, name, None)


def test_resolving_loads_nothing_until_asked_and_loads_the_named_model(service):
    app, ids = service
    registry = app.extensions["models"]
    resolved = find(app, ids["alice"], "clip")
    assert "clip-vit-base-patch32" not in registry.loaded_keys()

    served = resolved.load()
    assert served.key == "clip-vit-base-patch32" and TASK in served.tasks
    assert "clip-vit-base-patch32" in registry.loaded_keys()


def test_an_own_model_is_its_serving_version(service):
    app, ids = service
    resolved = find(app, ids["alice"], "my-vectors")
    assert (resolved.kind, resolved.name, resolved.version) == (USER, "my-vectors", 2)

    served = resolved.load()
    assert served.key == resolved.key
    assert len(served.run(TASK, ["hello"])[0]) == 32  # the tiny model's vectors, not a global model's


def test_name_at_n_is_that_version(service):
    app, ids = service
    first, serving = find(app, ids["alice"], "my-vectors@1"), find(app, ids["alice"], "my-vectors")
    assert (first.kind, first.name, first.version) == (USER, "my-vectors@1", 1)
    assert first.key != serving.key  # another version: another model in the cache

    assert first.load().key == first.key


def test_an_own_model_that_cannot_answer_says_why_and_is_not_unknown(service):
    app, ids = service
    with pytest.raises(NotFound) as missing_version:
        find(app, ids["alice"], "my-vectors@9")
    assert missing_version.value.message == ("Model 'my-vectors' has no successful version 9; "
                                             "GET /models/my-vectors/versions lists them.")
    with pytest.raises(NotFound) as other_task:
        find(app, ids["alice"], "my-vectors", task="qa")
    assert other_task.value.message == "Model 'my-vectors' does not do qa; it serves text-vectorisation."
    assert not isinstance(missing_version.value, UnknownModel) and not isinstance(other_task.value, UnknownModel)


def test_an_unknown_name_lists_the_choices(service):
    app, ids = service
    with pytest.raises(UnknownModel) as unknown:
        find(app, ids["alice"], "nope")
    message = unknown.value.message
    assert message.startswith("Model 'nope' not found for text-vectorisation. Global models for "
                              "text-vectorisation: english, multilingual, clip, or the name of one of your models.")
    assert unknown.value.status == 404


def test_another_accounts_model_is_answered_as_a_missing_one(service):
    app, ids = service
    with pytest.raises(UnknownModel) as theirs:
        find(app, ids["bob"], "my-vectors")
    with pytest.raises(UnknownModel) as missing:
        find(app, ids["bob"], "not-a-model")
    assert theirs.value.message == missing.value.message.replace("not-a-model", "my-vectors")
    with pytest.raises(UnknownModel):
        find(app, ids["bob"], "my-vectors@1")


def test_a_task_only_user_models_serve_asks_for_one_of_yours(service):
    app, ids = service
    with pytest.raises(UnknownModel) as unknown:
        find(app, ids["alice"], "nope", task="custom")
    assert unknown.value.message == "Model 'nope' not found for custom. Name one of your models."
