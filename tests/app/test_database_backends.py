"""The same key life cycle through HTTP on SQLite and on a real PostgreSQL server."""

from sqlalchemy import inspect


def test_key_life_cycle_over_http(client_for, database_url):
    api = client_for(DATABASE_URL=database_url)
    client, alice, bob = api.client, api.headers, api.headers_for("bob")

    created = client.post("/keys", json={"label": "second"}, headers=alice)
    assert created.status_code == 201
    second = {"x-api-key": created.json["key"]}
    assert [k["label"] for k in client.get("/keys", headers=second).json] == ["", "second"]
    assert client.delete(f"/keys/{created.json['id']}", headers=bob).status_code == 404
    assert client.delete(f"/keys/{created.json['id']}", headers=alice).status_code == 200
    assert client.get("/keys", headers=second).status_code == 401
    assert client.get("/keys", headers=alice).status_code == 200
    assert client.get("/readyz").json["checks"]["database"] == "ok"


def test_schema_survives_a_restart_and_keys_stay_valid(make_app, client_for, database_url):
    first = client_for(DATABASE_URL=database_url)
    first.app.extensions["db"].engine.dispose()

    second = make_app(DATABASE_URL=database_url)

    assert second.test_client().get("/keys", headers=first.headers).status_code == 200
    tables = set(inspect(second.extensions["db"].engine).get_table_names())
    assert {"accounts", "api_keys"} <= tables
    assert second.extensions["db"].engine.dialect.name == database_url.split(":")[0].split("+")[0]


def test_replicas_starting_at_once_on_an_empty_postgresql_create_the_schema_and_one_first_key(postgres, tmp_path):
    import threading

    from sqlalchemy import func, select

    from app import prepare_database
    from core.database import Database
    from core.tables import ApiKey

    url = postgres.new_database()
    start = threading.Barrier(4)
    failures = []

    def replica(number):
        start.wait()
        try:
            prepare_database({"DATA_DIR": str(tmp_path / f"replica{number}"), "DATABASE_URL": url})
        except Exception as exc:  # a lost race would raise here (duplicate table or type)
            failures.append(exc)

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    database = Database(url)
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1
    database.engine.dispose()


def test_a_deleted_model_versions_id_is_never_given_to_a_new_one(database_url):
    # The id names the version's files, bundle and loaded copy in every process.
    from core.database import Database
    from core.tables import Account, ModelVersion, UserModel, utcnow

    database = Database(database_url)
    with database.sessions() as session:
        account = Account(name="alice")
        session.add(account)
        session.flush()
        model = UserModel(account_id=account.id, name="m")
        session.add(model)
        session.flush()
        newest = ModelVersion(model_id=model.id, number=1, upload_expires_at=utcnow())
        session.add(newest)
        session.commit()
        deleted_id = newest.id
        session.delete(newest)
        session.commit()
        again = ModelVersion(model_id=model.id, number=1, upload_expires_at=utcnow())
        session.add(again)
        session.commit()
        assert again.id > deleted_id
    database.engine.dispose()
