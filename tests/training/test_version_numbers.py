"""Version numbers are unique per model: one allocator for uploads and training
jobs, a unique index in the database (made on an older database too, after
renumbering the duplicates an older release may have made), and retries when
two allocations meet. On SQLite and on a real PostgreSQL."""

import threading

import pytest
import requests
from sqlalchemy import inspect, select, text

from core.database import Database
from core.tables import VERSION_NUMBER_INDEX, Account, ModelVersion, TrainingJob, UserModel, utcnow
from uploads.versions import add_numbered_version

from ..conftest import LiveServer

THREADS = 16


def _model(database) -> int:
    with database.sessions() as session:
        account = Account(name="alice")
        session.add(account)
        session.flush()
        model = UserModel(account_id=account.id, name="m", tasks=[])
        session.add(model)
        session.commit()
        return model.id


def _numbers(database, model_id: int) -> list[int]:
    with database.sessions() as session:
        return sorted(session.scalars(select(ModelVersion.number).where(ModelVersion.model_id == model_id)).all())


def test_many_threads_numbering_one_model_at_once_get_distinct_numbers(database_url):
    database = Database(database_url, pool_size=THREADS)
    model_id = _model(database)
    start = threading.Barrier(THREADS)
    got, errors = [], []

    def allocate(index: int):
        try:
            with database.sessions() as session:
                start.wait(timeout=30)
                version = add_numbered_version(session, model_id, upload_expires_at=utcnow(),
                                               source="training" if index % 2 else "upload")
                session.commit()
                got.append(version.number)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(got) == list(range(1, THREADS + 1))
    assert _numbers(database, model_id) == list(range(1, THREADS + 1))
    database.engine.dispose()


def test_the_database_refuses_a_second_version_with_the_same_number(database_url):
    from sqlalchemy.exc import IntegrityError

    database = Database(database_url)
    model_id = _model(database)
    with database.sessions() as session:
        session.add(ModelVersion(model_id=model_id, number=1, upload_expires_at=utcnow()))
        session.commit()
        session.add(ModelVersion(model_id=model_id, number=1, upload_expires_at=utcnow()))
        with pytest.raises(IntegrityError):
            session.commit()
    database.engine.dispose()


def test_upload_urls_asked_for_at_once_number_their_versions_apart(make_app, database_url):
    app = make_app(DATABASE_URL=database_url, ACCOUNT_MAX_PENDING_UPLOADS=100, DB_POOL_SIZE=THREADS)
    from ..conftest import new_key

    headers = {"x-api-key": new_key(app, "alice")}
    with LiveServer(app) as live:
        assert requests.post(f"{live.url}/upload-url", json={"model_name": "shared"}, headers=headers,
                             timeout=30).status_code == 200  # the model exists; its versions race
        start = threading.Barrier(THREADS)
        statuses = []

        def ask():
            start.wait(timeout=30)
            statuses.append(requests.post(f"{live.url}/upload-url", json={"model_name": "shared"}, headers=headers,
                                          timeout=60).status_code)

        threads = [threading.Thread(target=ask) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert statuses == [200] * THREADS
    database = app.extensions["db"]
    with database.sessions() as session:
        model_id = session.scalar(select(UserModel.id).where(UserModel.name == "shared"))
    assert _numbers(database, model_id) == list(range(1, THREADS + 2))


def test_an_older_database_with_duplicate_numbers_is_renumbered_and_gets_the_unique_index(database_url):
    database = Database(database_url)
    model_id = _model(database)
    with database.engine.begin() as conn:  # as an older release left it: no index, two pairs of duplicates
        conn.execute(text(f"DROP INDEX {VERSION_NUMBER_INDEX}"))
        conn.execute(text("DROP TABLE alembic_version"))  # nor migrations: the baseline adopts it
    with database.sessions() as session:
        numbers = [1, 2, 2, 3, 3, 3]
        versions = []
        for number in numbers:
            version = ModelVersion(model_id=model_id, number=number, upload_expires_at=utcnow(), source="training",
                                   job_id=f"job_{len(versions)}")
            session.add(version)
            session.flush()
            versions.append(version.id)
            session.add(TrainingJob(id=f"job_{len(versions) - 1}", seq=len(versions), account_id=1,
                                    model_id=model_id, model_name="m", task="tabular", dataset_id="ds_x",
                                    version_number=number))
        session.commit()
    database.engine.dispose()

    migrated = Database(database_url)  # a newer release starts on it
    assert VERSION_NUMBER_INDEX in {index["name"] for index in inspect(migrated.engine).get_indexes("model_versions")}
    with migrated.sessions() as session:
        by_id = dict(session.execute(select(ModelVersion.id, ModelVersion.number)
                                     .where(ModelVersion.model_id == model_id)).all())
        jobs = dict(session.execute(select(TrainingJob.id, TrainingJob.version_number)).all())
    # The first of each number keeps it; the later ones take the next free numbers, in id order.
    assert [by_id[version_id] for version_id in versions] == [1, 2, 4, 3, 5, 6]
    assert [jobs[f"job_{i}"] for i in range(len(versions))] == [1, 2, 4, 3, 5, 6]
    migrated.engine.dispose()
    assert Database(database_url).engine is not None  # a second start finds the index and changes nothing
    with Database(database_url).sessions() as session:
        assert sorted(session.scalars(select(ModelVersion.number)).all()) == [1, 2, 3, 4, 5, 6]
