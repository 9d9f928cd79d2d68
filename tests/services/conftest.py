"""Fixtures of the domain services' tests: an app's parts and two accounts, alice and
bob, each with a context to act as; things made directly in the database."""

import time

import pytest
from sqlalchemy import select

from core.tables import Account, Dataset, ModelVersion, TrainingJob, UserModel, utcnow
from services.account import Actor, ServiceContext
from training.paths import new_id
from web.settings import settings_of

from ..conftest import new_key


class Accounts:
    """One app's database session and a context per account."""

    def __init__(self, app):
        self.app = app
        self.db = app.extensions["db"].sessions()
        self.keys = {name: new_key(app, name) for name in ("alice", "bob")}

    def as_(self, name: str) -> ServiceContext:
        account_id = self.db.scalar(select(Account.id).where(Account.name == name))
        return ServiceContext(actor=Actor(account_id, name), db=self.db, config=settings_of(self.app),
                              parts=self.app.extensions, base_url="http://service.test/")

    def model(self, owner: str, name: str, versions: int = 1) -> UserModel:
        """A model of `owner` with `versions` successful versions, the newest serving."""
        model = UserModel(account_id=self.as_(owner).account_id, name=name, tasks=["sentiment"])
        self.db.add(model)
        self.db.flush()
        for number in range(1, versions + 1):
            version = ModelVersion(model_id=model.id, number=number, status="success", tasks=["sentiment"],
                                   upload_expires_at=utcnow(), stored_bytes=10)
            self.db.add(version)
            self.db.flush()
            model.current_version_id = version.id
        self.db.commit()
        return model

    def dataset(self, owner: str) -> Dataset:
        dataset = Dataset(id=new_id("ds"), account_id=self.as_(owner).account_id, name="reviews",
                          format="text-label", status="ready", stats={"rows": 20})
        self.db.add(dataset)
        self.db.commit()
        return dataset

    def job(self, owner: str, model: UserModel, dataset: Dataset) -> TrainingJob:
        job = TrainingJob(id=new_id("job"), seq=time.time_ns(), account_id=self.as_(owner).account_id,
                          model_id=model.id, model_name=model.name, task="sentiment", dataset_id=dataset.id)
        self.db.add(job)
        self.db.commit()
        return job


@pytest.fixture
def accounts(app):
    accounts = Accounts(app)
    yield accounts
    accounts.db.close()
