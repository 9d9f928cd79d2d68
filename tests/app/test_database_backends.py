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
