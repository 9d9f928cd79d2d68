"""An account acting through the services on another account's model, dataset,
job or key is told it does not exist (NotFound, the API's 404), and nothing of
the other account changes."""

import pytest
from sqlalchemy import select

from core.errors import NotFound
from core.tables import ApiKey, Dataset, TrainingJob, UserModel
from services import datasets, jobs, keys, models, versions


def test_another_accounts_model_is_not_found_by_any_service(accounts):
    accounts.model("alice", "reviews", versions=2)
    bob = accounts.as_("bob")

    for attempt in (lambda: models.get(bob, "reviews"), lambda: models.latest_build(bob, "reviews"),
                    lambda: models.downloadable_file(bob, "reviews", "config.json"),
                    lambda: models.delete(bob, "reviews"), lambda: versions.listed(bob, "reviews"),
                    lambda: versions.promote(bob, "reviews", 1), lambda: versions.serving_history(bob, "reviews")):
        with pytest.raises(NotFound) as refused:
            attempt()
        assert refused.value.status == 404 and "reviews" in refused.value.message

    assert models.own_models(bob) == []
    alice = accounts.as_("alice")
    assert [model.name for model in models.own_models(alice)] == ["reviews"]
    model, listed = versions.listed(alice, "reviews")
    assert model.current_version_id == listed[-1].id  # bob's promote moved nothing


def test_the_owner_promotes_a_version_and_the_move_is_recorded(accounts):
    accounts.model("alice", "reviews", versions=2)
    alice = accounts.as_("alice")

    model, version = versions.promote(alice, "reviews", 1)

    assert model.current_version_id == version.id and version.number == 1
    assert [(move.from_number, move.to_number, move.reason) for move in versions.serving_history(alice, "reviews")] \
        == [(2, 1, "promote")]


def test_another_accounts_dataset_is_not_found_nor_trained_on(accounts):
    dataset = accounts.dataset("alice")
    bob = accounts.as_("bob")

    with pytest.raises(NotFound):
        datasets.get(bob, dataset.id)
    with pytest.raises(NotFound):
        datasets.delete(bob, dataset.id)
    with pytest.raises(NotFound):
        jobs.start(bob, "stolen", {"task": "text-classification", "dataset_id": dataset.id})

    assert datasets.listed(bob) == []
    assert accounts.db.get(Dataset, dataset.id) is not None
    assert accounts.db.scalars(select(TrainingJob)).all() == []
    assert accounts.db.scalar(select(UserModel).where(UserModel.name == "stolen")) is None


def test_another_accounts_job_is_not_found_listed_or_cancelled(accounts):
    job = accounts.job("alice", accounts.model("alice", "reviews"), accounts.dataset("alice"))
    bob = accounts.as_("bob")

    with pytest.raises(NotFound):
        jobs.get(bob, job.id)
    with pytest.raises(NotFound):
        jobs.cancel(bob, job.id)
    with pytest.raises(NotFound):  # nor used as a page's cursor
        jobs.listing(bob, after=job.id)
    statement, _after = jobs.listing(bob)
    assert accounts.db.scalars(statement).all() == []
    assert accounts.db.get(TrainingJob, job.id).status == "queued"

    assert jobs.cancel(accounts.as_("alice"), job.id).status == "cancelled"


def test_another_accounts_key_is_not_found_nor_revoked(accounts):
    alice = accounts.as_("alice")
    alice_key = keys.listed(alice)[0]
    bob = accounts.as_("bob")

    with pytest.raises(NotFound):
        keys.revoke(bob, alice_key.id)

    assert [key.id for key in keys.listed(bob)] != [alice_key.id]
    assert accounts.db.get(ApiKey, alice_key.id).revoked_at is None
    assert keys.revoke(alice, alice_key.id).revoked_at is not None
