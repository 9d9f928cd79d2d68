"""API keys: required everywhere but health, hashed at rest, revocable, per account."""

import os
import stat
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from app import create_app
from core.keys import hash_key
from core.tables import ApiKey

from ..conftest import new_key

BODY = {"text": "hello"}


def test_missing_key_is_401_with_a_json_message(client):
    response = client.post("/text-vectorisation", json=BODY)
    assert response.status_code == 401
    assert "x-api-key" in response.json["message"]


def test_unknown_key_is_401(client):
    response = client.get("/keys", headers={"x-api-key": "ik_not-a-real-key"})
    assert response.status_code == 401
    assert response.json["message"] == "Invalid or revoked API key."


def test_valid_key_is_accepted(client, headers):
    assert client.get("/keys", headers=headers).status_code == 200


def test_revoked_key_is_401(client, headers):
    own_key_id = client.get("/keys", headers=headers).json[0]["id"]
    assert client.delete(f"/keys/{own_key_id}", headers=headers).status_code == 200

    response = client.get("/keys", headers=headers)
    assert response.status_code == 401


def test_keys_are_stored_hashed_never_in_clear(app, api_key):
    with app.extensions["db"].sessions() as session:
        rows = session.scalars(select(ApiKey)).all()
    assert [row.key_hash for row in rows] == [hash_key(api_key)]
    for row in rows:
        assert api_key not in (row.key_hash, row.prefix, row.label)
        assert len(row.prefix) < len(api_key) // 3


def test_health_probes_need_no_key(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_metrics_can_require_a_key(client_for):
    assert client_for(METRICS_REQUIRE_KEY=True).client.get("/metrics").status_code == 401


def test_an_account_sees_and_revokes_only_its_own_keys(client_for):
    api = client_for()
    client, alice, bob = api.client, api.headers, api.headers_for("bob")
    alice_ids = [k["id"] for k in client.get("/keys", headers=alice).json]
    bob_ids = [k["id"] for k in client.get("/keys", headers=bob).json]
    assert len(alice_ids) == 1 and len(bob_ids) == 1 and alice_ids != bob_ids

    response = client.delete(f"/keys/{alice_ids[0]}", headers=bob)

    assert response.status_code == 404
    assert client.get("/keys", headers=alice).status_code == 200  # alice's key still works


def test_a_new_key_made_through_the_api_is_shown_once_and_works(client, headers):
    created = client.post("/keys", json={"label": "ci"}, headers=headers)
    assert created.status_code == 201
    key = created.json["key"]
    assert key.startswith("ik_") and created.json["label"] == "ci"

    listed = client.get("/keys", headers={"x-api-key": key}).json
    assert len(listed) == 2
    assert all("key" not in item for item in listed)


def test_cli_creates_lists_and_revokes_keys(app, client):
    runner = app.test_cli_runner()

    created = runner.invoke(args=["keys", "create", "--account", "carol", "--label", "laptop"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    assert client.get("/keys", headers={"x-api-key": key}).status_code == 200

    listed = runner.invoke(args=["keys", "list", "--account", "carol"])
    assert "carol" in listed.output and "laptop" in listed.output and key not in listed.output
    key_id = listed.output.split()[0]

    revoked = runner.invoke(args=["keys", "revoke", key_id])
    assert revoked.exit_code == 0
    assert client.get("/keys", headers={"x-api-key": key}).status_code == 401
    assert runner.invoke(args=["keys", "revoke", "99999"]).exit_code != 0


def test_first_start_writes_one_key_to_an_owner_only_file_never_to_a_log_then_never_again(tmp_path, capsys):
    config = {"DATA_DIR": str(tmp_path), "BOOTSTRAP_KEY": True, "BUILDER": False}
    app = create_app(config)
    printed = capsys.readouterr().out  # not a terminal: a log stream
    key_file = tmp_path / "first-api-key"
    key = key_file.read_text().strip()
    assert key.startswith("ik_") and "ik_" not in printed
    assert str(key_file) in printed and "cat " in printed  # where it is, and how to read it
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert app.test_client().get("/keys", headers={"x-api-key": key}).status_code == 200

    key_file.unlink()  # as the message asks
    create_app(config)
    assert "ik_" not in capsys.readouterr().out and not key_file.exists()


def test_the_first_key_is_printed_to_a_terminal_and_goes_where_the_setting_says(tmp_path):
    import pty

    from core.database import Database
    from core.keys import ensure_bootstrap_key

    database = Database("sqlite:///" + str(tmp_path / "infer.db"))
    leader, follower = pty.openpty()
    with open(follower, "w", closefd=True) as terminal, database.sessions() as session:
        key = ensure_bootstrap_key(session, "default", str(tmp_path / "keys" / "first"), out=terminal)
    shown = os.read(leader, 4096).decode()
    os.close(leader)
    assert key in shown
    assert (tmp_path / "keys" / "first").read_text() == key + "\n"


def test_a_key_file_that_is_a_link_is_replaced_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / "first-api-key").symlink_to(target)
    create_app({"DATA_DIR": str(tmp_path), "BOOTSTRAP_KEY": True, "BUILDER": False})
    assert target.read_text() == "keep me"
    assert not (tmp_path / "first-api-key").is_symlink()
    assert (tmp_path / "first-api-key").read_text().startswith("ik_")


@pytest.mark.parametrize("method,path", [("get", "/keys"), ("post", "/text-vectorisation"), ("delete", "/keys/1")])
def test_every_api_endpoint_needs_a_key(client, method, path):
    assert getattr(client, method)(path, json={}).status_code == 401


def test_a_verified_key_skips_the_database_until_its_cache_entry_expires(app, client, headers):
    from sqlalchemy import event

    lookups = []
    event.listen(
        app.extensions["db"].engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: lookups.append(statement) if "key_hash =" in statement else None,
    )
    for _ in range(3):
        assert client.get("/keys", headers=headers).status_code == 200
    assert len(lookups) == 1  # the first request looked the key up; the next two trusted the cache


def test_a_key_revoked_by_another_process_stops_working_when_the_cache_entry_expires(client_for):
    from core.keys import KeyCache

    api = client_for()
    app, client, key = api.app, api.client, api.key
    now = [1000.0]
    app.extensions["key_cache"] = KeyCache(ttl_s=2, clock=lambda: now[0])
    assert client.get("/keys", headers={"x-api-key": key}).status_code == 200

    # Revoked in the database directly, as the CLI or another worker would.
    with app.extensions["db"].sessions() as session:
        session.scalars(select(ApiKey)).one().revoked_at = datetime.now(timezone.utc)
        session.commit()

    now[0] += 1.5
    assert client.get("/keys", headers={"x-api-key": key}).status_code == 200  # still within the TTL
    now[0] += 1
    assert client.get("/keys", headers={"x-api-key": key}).status_code == 401


def test_with_no_cache_a_revocation_anywhere_takes_effect_at_once(client_for):
    api = client_for(AUTH_CACHE_TTL_S=0)
    app, client, key = api.app, api.client, api.key
    assert client.get("/keys", headers={"x-api-key": key}).status_code == 200
    with app.extensions["db"].sessions() as session:
        session.scalars(select(ApiKey)).one().revoked_at = datetime.now(timezone.utc)
        session.commit()
    assert client.get("/keys", headers={"x-api-key": key}).status_code == 401


def test_the_key_cache_holds_only_valid_keys_and_is_bounded(client):
    from core.keys import KeyCache

    for n in range(5):
        assert client.get("/keys", headers={"x-api-key": f"ik_wrong-{n}"}).status_code == 401
    assert client.application.extensions["key_cache"]._entries == {}

    cache = KeyCache(ttl_s=60, max_entries=3)
    for n in range(4):
        cache.put(f"hash-{n}", n, 1)
    assert len(cache._entries) <= 3 and cache.get("hash-3") == (3, 1)


# Authorization: Bearer, as OpenAI's SDKs send the key.

def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_a_bearer_key_works_on_a_task_endpoint(client_for, tiny_sentence_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_sentence_model_dir, tmp_path / "models" / "multilingual")
    api = client_for(MODEL_DIR=str(tmp_path / "models"))
    response = api.client.post(
        "/text-vectorisation", json={"text": "hello", "model": "multilingual"}, headers=bearer(api.key)
    )
    assert response.status_code == 200, response.json
    assert len(response.json["vector"]) == 32


def test_a_bearer_key_works_on_keys_and_acts_for_its_own_account(app, client):
    alice, bob = new_key(app, "alice"), new_key(app, "bob")
    listed = client.get("/keys", headers=bearer(alice))
    assert listed.status_code == 200
    assert [item["prefix"] for item in listed.json] == [alice[:10]]  # alice's key, not bob's
    # The scheme is case-insensitive (RFC 9110).
    assert client.get("/keys", headers={"Authorization": f"bearer {bob}"}).json[0]["prefix"] == bob[:10]


def test_x_api_key_wins_over_bearer_when_both_are_sent(app, client):
    key = new_key(app, "alice")
    assert client.get("/keys", headers={"x-api-key": key, **bearer("ik_wrong")}).status_code == 200
    assert client.get("/keys", headers={"x-api-key": "ik_wrong", **bearer(key)}).status_code == 401


@pytest.mark.parametrize(
    "authorization,words",
    [
        ("Basic YWxpY2U6c2VjcmV0", ["Basic", "Bearer", "x-api-key"]),
        ("Bearer", ["Bearer", "x-api-key"]),
        ("Bearer    ", ["Bearer", "x-api-key"]),
        ("Bearer ik_not-a-real-key", ["Invalid or revoked"]),
    ],
)
def test_a_wrong_scheme_an_empty_or_unknown_bearer_is_401_saying_how_to_send_the_key(
    client, authorization, words
):
    response = client.get("/keys", headers={"Authorization": authorization})
    assert response.status_code == 401
    for word in words:
        assert word in response.json["message"]


def test_the_missing_key_message_names_both_ways(client):
    message = client.get("/keys").json["message"]
    assert "x-api-key" in message and "Authorization: Bearer" in message


def test_a_revoked_key_is_401_as_a_bearer_too(app, client):
    key = new_key(app, "alice")
    own_key_id = client.get("/keys", headers=bearer(key)).json[0]["id"]
    assert client.delete(f"/keys/{own_key_id}", headers=bearer(key)).status_code == 200
    assert client.get("/keys", headers=bearer(key)).status_code == 401
