"""Alembic migrations: a database the previous release made (create_all era,
tests/core/previous_release_tables.py) with data in it is upgraded by
`flask --app wsgi db upgrade` and loses nothing; a new database upgraded equals
core/tables.py (so a change to the tables without a migration fails here); a
database a newer release upgraded makes every start refuse; and two upgrades at
once on PostgreSQL take turns."""

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from app import create_app, prepare_database
from app.db_cli import loaded_for_db_command
from core import schema
from core.database import SCHEMA_LOCK_KEY, Database
from core.keys import hash_key
from core.tables import Base

from ..gunicorn import start_production_server
from . import previous_release_tables as previous

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALICE_KEY = "sk-alice-" + "a" * 40
BOB_KEY = "sk-bob-" + "b" * 40
LATER = datetime(2030, 1, 1, tzinfo=timezone.utc)


def _config(tmp_path, database_url, **more) -> dict:
    return {"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url, "BOOTSTRAP_KEY": False,
            "TESTING": True, "BUILDER": False, "TRAINER": False, "PREDICTIONS": False, **more}


def _previous_release_database(url: str) -> None:
    """The database the previous release made, with a row of each kind in it."""
    engine = create_engine(url)
    previous.Base.metadata.create_all(engine)
    with Session(engine) as session:
        alice, bob = previous.Account(name="alice"), previous.Account(name="bob", webhook_secret="whsec")
        session.add_all([alice, bob])
        session.flush()
        session.add_all([previous.ApiKey(account_id=alice.id, prefix=ALICE_KEY[:12], key_hash=hash_key(ALICE_KEY),
                                         label="laptop"),
                         previous.ApiKey(account_id=bob.id, prefix=BOB_KEY[:12], key_hash=hash_key(BOB_KEY))])
        model = previous.UserModel(account_id=alice.id, name="sentiment", description="old", tasks=["classify"])
        session.add(model)
        session.flush()
        first = previous.ModelVersion(model_id=model.id, number=1, status="success", format="onnx",
                                      tasks=["classify"], upload_expires_at=LATER, stored_bytes=1234)
        second = previous.ModelVersion(model_id=model.id, number=2, status="success", source="training",
                                       job_id="job_old", dataset_id="ds_old", metrics={"accuracy": 0.9},
                                       upload_expires_at=LATER)
        session.add_all([first, second])
        session.flush()
        model.current_version_id = second.id
        session.add(previous.ServingChange(model_id=model.id, from_number=1, to_number=2, reason="training"))
        session.add(previous.Dataset(id="ds_old", account_id=alice.id, name="reviews", format="csv",
                                     status="ready", stats={"rows": 10}, size_bytes=99))
        session.add(previous.TrainingJob(id="job_old", seq=1, account_id=alice.id, model_id=model.id,
                                         model_name="sentiment", task="classify", dataset_id="ds_old",
                                         status="succeeded", epochs=[{"epoch": 1, "train_loss": 0.5}],
                                         version_number=2, hyperparameters={"epochs": 1}))
        session.add(previous.Prediction(id="pred_old", seq=1, account_id=alice.id, task="classify",
                                        model="sentiment", path="/classify", input={"text": "hi"},
                                        status="succeeded", output={"label": "pos"}))
        session.add(previous.UsageBucket(account_id=alice.id, bucket_start=3600, task="classify",
                                         model="sentiment", requests=7))
        session.add(previous.AccountLimitOverride(account_id=bob.id, requests_per_min=5))
        session.commit()
    engine.dispose()


def _rows(url: str, tables) -> dict:
    """Every row of `tables` (the previous release's), by its previous columns, in order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {table.name: [dict(row._mapping) for row in conn.execute(
                select(*table.columns).order_by(*table.primary_key.columns))] for table in tables}
    finally:
        engine.dispose()


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return schema.current_revision(conn)
    finally:
        engine.dispose()


def test_db_upgrade_keeps_every_row_of_the_previous_release_and_adds_what_is_new(tmp_path, database_url):
    _previous_release_database(database_url)
    tables = previous.Base.metadata.sorted_tables
    before = _rows(database_url, tables)
    assert all(before[table] for table in ("accounts", "api_keys", "model_versions", "datasets", "training_jobs",
                                           "predictions", "usage_buckets", "account_limits"))
    assert _revision(database_url) is None

    # The command a deployment runs (the migration Job), through Flask's CLI.
    cli_app = create_app(_config(tmp_path, database_url, MIGRATE_ON_START=False), manage_schema=False)
    result = cli_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"from revision none to {schema.head_revision()}" in result.output
    again = cli_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert again.exit_code == 0 and "up to date" in again.output
    cli_app.extensions["db"].engine.dispose()

    assert _rows(database_url, tables) == before  # nothing lost, nothing changed
    assert _revision(database_url) == schema.head_revision()
    engine = create_engine(database_url)
    found = inspect(engine)
    assert {"batches", "evaluations", "dataset_revisions", "webhook_deliveries", "uploaded_files"} <= set(
        found.get_table_names())
    assert {"parent", "webhook"} <= {column["name"] for column in found.get_columns("model_versions")}
    with engine.connect() as conn:  # the added columns' server defaults filled the old rows
        assert conn.execute(text("SELECT revision FROM datasets")).scalar() == 1
    engine.dispose()
    assert _differences(database_url) == []  # the adopted database is the schema of a new one

    # The service runs on it: the old key, the old rows, each account still sees only its own.
    app = create_app(_config(tmp_path, database_url, MIGRATE_ON_START=False))
    client = app.test_client()
    alice, bob = {"x-api-key": ALICE_KEY}, {"x-api-key": BOB_KEY}
    model = client.get("/models/sentiment", headers=alice)
    assert model.status_code == 200, model.get_json()
    assert client.get("/models/sentiment", headers=bob).status_code == 404
    assert client.get("/datasets/ds_old", headers=alice).get_json()["name"] == "reviews"
    assert client.get("/datasets/ds_old", headers=bob).status_code == 404
    assert client.get("/jobs/job_old", headers=alice).get_json()["status"] == "succeeded"
    assert client.get("/predictions/pred_old", headers=alice).get_json()["output"] == {"label": "pos"}
    assert client.get("/predictions/pred_old", headers=bob).status_code == 404
    app.extensions["db"].engine.dispose()


def test_a_new_database_upgraded_is_the_schema_of_core_tables(database_url):
    """compare_metadata finds no difference: a change to core/tables.py without a
    migration (`alembic revision --autogenerate`, docs/architecture.md) fails here."""
    database = Database(database_url)
    if database_url.startswith("sqlite"):  # off while it upgraded (batch mode), enforced again after
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.engine.dispose()
    assert _revision(database_url) == schema.head_revision()
    assert _differences(database_url) == []


@pytest.mark.parametrize("argv, expected", [
    (["/venv/bin/flask", "--app", "wsgi", "db", "upgrade"], True),
    (["/venv/bin/flask", "-A", "wsgi", "--debug", "db", "current"], True),
    (["/venv/bin/flask", "--app", "db", "keys", "create", "--account", "db"], False),
    (["/venv/lib/python3.11/site-packages/flask/__main__.py", "--app", "wsgi", "db", "upgrade"], True),
    (["/venv/bin/gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], False),
    (["/venv/lib/python3.11/site-packages/other/__main__.py", "db"], False),
])
def test_only_the_db_commands_load_the_app_without_its_schema_step(argv, expected):
    assert loaded_for_db_command(argv) is expected


def test_the_app_a_db_command_loads_preloads_no_model(tmp_path):
    # The migration Job runs with the web pods' settings, INFER_PRELOAD_MODELS included.
    config = _config(tmp_path, f"sqlite:///{tmp_path}/preload.db", PRELOAD_MODELS="all-MiniLM-L6-v2")
    registry = create_app(config, manage_schema=False, preload=False).extensions["models"]
    assert registry.preload_done.is_set() and registry.loaded_keys() == []
    serving = create_app(config).extensions["models"]
    assert serving.preload_done.wait(120) and serving.loaded_keys() != []  # a serving app does


def test_the_history_lists_the_baseline(tmp_path):
    app = create_app(_config(tmp_path, f"sqlite:///{tmp_path}/history.db"))
    runner = app.test_cli_runner()
    assert "0001\tBaseline" in runner.invoke(args=["db", "history"]).output
    current = runner.invoke(args=["db", "current"]).output
    assert f"database: {schema.head_revision()}" in current and "up to date" in current


def _stamp(url: str, revision: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision})
    engine.dispose()


@pytest.mark.parametrize("migrate_on_start", [True, False])
def test_a_database_a_newer_release_upgraded_makes_every_start_refuse(tmp_path, migrate_on_start):
    url = f"sqlite:///{tmp_path}/newer.db"
    Database(url).engine.dispose()
    _stamp(url, "0042_from_the_future")
    config = _config(tmp_path, url, MIGRATE_ON_START=migrate_on_start)
    for start in (lambda: create_app(config), lambda: prepare_database({"DATA_DIR": config["DATA_DIR"],
                                                                        "DATABASE_URL": url,
                                                                        "MIGRATE_ON_START": migrate_on_start})):
        with pytest.raises(schema.SchemaError, match="'0042_from_the_future', which this release does not know"):
            start()
    assert _revision(url) == "0042_from_the_future"  # nothing was changed

    cli_app = create_app(config, manage_schema=False)
    runner = cli_app.test_cli_runner()
    upgrade = runner.invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 1 and "0042_from_the_future" in upgrade.output
    assert "NEWER than this release knows" in runner.invoke(args=["db", "current"]).output


def test_with_migrate_on_start_off_a_start_refuses_until_db_upgrade_ran(tmp_path):
    url = f"sqlite:///{tmp_path}/behind.db"
    config = _config(tmp_path, url, MIGRATE_ON_START=False)
    with pytest.raises(schema.SchemaError, match="run `flask --app wsgi db upgrade` first"):
        create_app(config)
    assert "alembic_version" not in inspect(create_engine(url)).get_table_names()  # it made nothing
    cli_app = create_app(config, manage_schema=False)
    assert cli_app.test_cli_runner().invoke(args=["db", "upgrade"]).exit_code == 0
    create_app(config).extensions["db"].engine.dispose()  # now it starts


def _flask_db_upgrade(tmp_path, url: str, name: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "INFER_DATA_DIR": str(tmp_path / name), "INFER_BOOTSTRAP_KEY": "false",
           "INFER_MIGRATE_ON_START": "false", "HF_HUB_OFFLINE": "1"}
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    return subprocess.Popen([flask, "--app", "wsgi", "db", "upgrade"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_db_upgrades_at_once_take_turns_and_both_succeed(tmp_path, postgres):
    url = postgres.new_database()
    _previous_release_database(url)
    before = _rows(url, previous.Base.metadata.sorted_tables)
    holder = create_engine(url)
    with holder.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})  # as a third upgrade would
        processes = [_flask_db_upgrade(tmp_path, url, name) for name in ("one", "two")]
        waiting = 0
        for _ in range(600):  # both processes reach the lock and wait on it (or one fails: then stop looking)
            waiting = conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                        "AND objid = :key"), {"key": SCHEMA_LOCK_KEY}).scalar()
            if waiting == 2 or any(process.poll() is not None for process in processes):
                break
            time.sleep(0.2)
        assert waiting == 2
        assert _revision(url) is None  # neither began while the lock was held
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
        conn.commit()
    holder.dispose()
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert sorted("Upgraded" in output for output in outputs) == [False, True], outputs  # one did it, once
    assert any("up to date" in output for output in outputs), outputs
    assert _rows(url, previous.Base.metadata.sorted_tables) == before
    assert _differences(url) == []


def test_gunicorn_refuses_to_start_on_a_database_a_newer_release_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path}/data/infer.db"
    Database(url).engine.dispose()
    _stamp(url, "0042_from_the_future")
    server = start_production_server(tmp_path)
    try:
        assert server.process.wait(timeout=300) != 0
    finally:
        server.stop()
    assert "'0042_from_the_future', which this release does not know" in server.log()
    assert "Booting worker" not in server.log()  # no worker ever started
    assert _revision(url) == "0042_from_the_future"
