"""Each account's limits: the operator's defaults, an account's own values set
through the CLI or the operator API (hidden from every other key), GET /limits,
and the per-process cache that the request path reads them from."""

import pytest
from sqlalchemy import event, select

from core.tables import Account
from web.account_limits import AccountLimits, AccountLimitsCache, account_limits

from ..conftest import new_key

LIMITS = {"ACCOUNT_REQUESTS_PER_MIN": 100, "ACCOUNT_TOKENS_PER_MIN": 5000, "ACCOUNT_MAX_IN_FLIGHT": 8}


def account_id(app, name: str) -> int:
    with app.extensions["db"].sessions() as session:
        return session.scalar(select(Account.id).where(Account.name == name))


def test_the_defaults_are_the_settings_and_all_rate_limits_are_off_unless_set(make_app):
    app = make_app()
    new_key(app, "alice")
    with app.app_context():
        limits = account_limits(account_id(app, "alice"))
    assert limits == AccountLimits(requests_per_min=0, tokens_per_min=0, max_in_flight=48)
    assert not limits.rate_limited


def test_the_cli_sets_shows_and_resets_an_accounts_own_limits(make_app):
    app = make_app(**LIMITS)
    new_key(app, "bob")
    new_key(app, "carol")
    runner = app.test_cli_runner()

    shown = runner.invoke(args=["accounts", "limits", "bob"])
    assert shown.exit_code == 0, shown.output
    assert "requests_per_min 100 (default)" in shown.output and "tokens_per_min 5000 (default)" in shown.output

    changed = runner.invoke(args=["accounts", "limits", "bob", "--requests-per-min", "7", "--tokens-per-min", "0"])
    assert changed.exit_code == 0, changed.output
    assert "requests_per_min 7 (own)" in changed.output
    assert "tokens_per_min 0 (no limit) (own)" in changed.output
    assert "max_in_flight 8 (default)" in changed.output
    with app.app_context():
        assert account_limits(account_id(app, "bob")) == AccountLimits(7, 0, 8)
        assert account_limits(account_id(app, "carol")) == AccountLimits(100, 5000, 8)  # untouched

    one_back = runner.invoke(args=["accounts", "limits", "bob", "--tokens-per-min", "default"])
    assert "tokens_per_min 5000 (default)" in one_back.output and "requests_per_min 7 (own)" in one_back.output

    listed = runner.invoke(args=["accounts", "list"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].startswith("bob: requests_per_min 7 (own)") and "active keys: 1" in lines[0]
    assert lines[1].startswith("carol: requests_per_min 100 (default)")

    reset = runner.invoke(args=["accounts", "limits", "bob", "--reset"])
    assert "requests_per_min 100 (default)" in reset.output
    with app.app_context():
        assert account_limits(account_id(app, "bob")) == AccountLimits(100, 5000, 8)


@pytest.mark.parametrize("args,problem", [
    (["accounts", "limits", "nobody"], "No account is named 'nobody'"),
    (["accounts", "limits", "bob", "--requests-per-min", "-1"], "not between 0"),
    (["accounts", "limits", "bob", "--max-in-flight", "lots"], "neither a whole number nor 'default'"),
])
def test_the_cli_refuses_unknown_accounts_and_bad_values_saying_why(make_app, args, problem):
    app = make_app()
    new_key(app, "bob")
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0
    assert problem in result.output


def test_a_change_through_another_process_applies_within_the_cache_ttl_and_a_hit_reads_no_database(make_app):
    app = make_app(**LIMITS)
    new_key(app, "bob")
    bob = account_id(app, "bob")
    now = [1000.0]
    cache = AccountLimitsCache(app.extensions["db"].sessions, app.extensions["account_limits"].defaults, ttl_s=5,
                               clock=lambda: now[0])
    queries = []
    event.listen(app.extensions["db"].engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: queries.append(statement))

    assert cache.get(bob).requests_per_min == 100
    assert len(queries) == 1
    for _ in range(100):
        cache.get(bob)
    assert len(queries) == 1  # cache hits: no database round trip

    # Another process (the CLI) changes bob's limit: this one sees it once its entry expires.
    assert app.test_cli_runner().invoke(args=["accounts", "limits", "bob", "--requests-per-min", "3"]).exit_code == 0
    assert cache.get(bob).requests_per_min == 100
    now[0] += 5.01
    assert cache.get(bob).requests_per_min == 3


def test_the_last_limits_read_stay_in_force_while_the_database_cannot_be_read(make_app):
    app = make_app(**LIMITS)
    new_key(app, "bob")
    bob = account_id(app, "bob")
    app.test_cli_runner().invoke(args=["accounts", "limits", "bob", "--requests-per-min", "3"])
    now = [1000.0]
    working = app.extensions["db"].sessions

    def broken():
        raise ConnectionError("database down")

    cache = AccountLimitsCache(working, app.extensions["account_limits"].defaults, ttl_s=5, clock=lambda: now[0])
    assert cache.get(bob).requests_per_min == 3
    cache.sessions = broken
    now[0] += 10
    assert cache.get(bob).requests_per_min == 3  # stale, not the default of 100
    assert cache.get(account_id(app, "bob") + 1000).requests_per_min == 100  # never read: the defaults
    cache.sessions = working
    now[0] += 1.01
    assert cache.get(bob).requests_per_min == 3


# --- the operator API -------------------------------------------------------------------

@pytest.fixture
def operator_api(client_for):
    api = client_for(ADMIN_ACCOUNTS="root, ops", **LIMITS)
    api.root = api.headers_for("root")
    api.bob = api.headers_for("bob")
    return api


def test_an_operator_sets_and_reads_another_accounts_limits(operator_api):
    client, root = operator_api.client, operator_api.root

    read = client.get("/admin/accounts/bob/limits", headers=root)
    assert read.status_code == 200, read.json
    assert read.json == {"account": "bob", "requests_per_min": 100, "tokens_per_min": 5000, "max_in_flight": 8,
                         "own": {"requests_per_min": None, "tokens_per_min": None, "max_in_flight": None}}

    changed = client.put("/admin/accounts/bob/limits", json={"requests_per_min": 2, "max_in_flight": 0},
                         headers=root)
    assert changed.status_code == 200, changed.json
    assert changed.json["requests_per_min"] == 2 and changed.json["max_in_flight"] == 0
    assert changed.json["own"] == {"requests_per_min": 2, "tokens_per_min": None, "max_in_flight": 0}

    # bob sees it at once through this process, in GET /limits.
    own = client.get("/limits", headers=operator_api.bob)
    assert own.status_code == 200
    assert own.json["account"] == "bob"
    assert (own.json["requests_per_min"], own.json["tokens_per_min"], own.json["max_in_flight"]) == (2, 5000, 0)

    back = client.put("/admin/accounts/bob/limits", json={"requests_per_min": None}, headers=root)
    assert back.json["requests_per_min"] == 100 and back.json["own"]["max_in_flight"] == 0


@pytest.mark.parametrize("body,field", [
    ({"requests_per_min": -1}, "requests_per_min"),
    ({"tokens_per_min": "many"}, "tokens_per_min"),
    ({"max_in_flight": 2**31}, "max_in_flight"),
    ({"requests_per_minute": 5}, "requests_per_minute"),
    ({}, "_schema"),
])
def test_bad_limit_values_are_422_naming_the_field(operator_api, body, field):
    response = operator_api.client.put("/admin/accounts/bob/limits", json=body, headers=operator_api.root)
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_an_unknown_account_is_404_for_an_operator(operator_api):
    response = operator_api.client.get("/admin/accounts/nobody/limits", headers=operator_api.root)
    assert response.status_code == 404
    assert "No account is named 'nobody'" in response.json["message"]


def test_to_every_other_key_the_operator_api_does_not_exist(operator_api):
    client = operator_api.client
    missing = client.get("/admin/no-such-route", headers=operator_api.bob)
    assert missing.status_code == 404
    for method, body in (("get", None), ("put", {"requests_per_min": 100000}), ("put", {"nonsense": True})):
        for name in ("bob", "root", "nobody"):
            response = getattr(client, method)(f"/admin/accounts/{name}/limits", json=body,
                                               headers=operator_api.bob)
            assert response.status_code == 404
            # Word for word what a route that does not exist answers (it names the URL asked for).
            path = f"{method.upper()} /admin/accounts/{name}/limits"
            assert response.json == {**missing.json,
                                     "message": missing.json["message"].replace("GET /admin/no-such-route", path)}
    assert client.get("/admin/accounts/bob/limits", headers=operator_api.root).json["requests_per_min"] == 100


def test_without_admin_accounts_there_is_no_operator_api(client_for):
    api = client_for()
    root = api.headers_for("root")
    assert api.client.get("/admin/accounts/alice/limits", headers=root).status_code == 404
    assert api.client.put("/admin/accounts/alice/limits", json={"requests_per_min": 1},
                          headers=root).status_code == 404


def test_get_limits_needs_a_key_and_shows_no_remaining_without_a_limit(client_for):
    api = client_for()
    assert api.client.get("/limits").status_code == 401
    answer = api.client.get("/limits", headers=api.headers).json
    assert answer == {"account": "alice", "requests_per_min": 0, "tokens_per_min": 0, "max_in_flight": 48,
                      "remaining_requests": None, "reset_requests_s": None,
                      "remaining_tokens": None, "reset_tokens_s": None}
    assert api.app.extensions["rate_limits"].storage is None  # reading limits that are off made no storage


def test_own_limits_are_kept_in_sqlite_and_postgresql_alike(make_app, database_url):
    from core.tables import AccountLimitOverride

    app = make_app(DATABASE_URL=database_url, **LIMITS)
    new_key(app, "bob")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["accounts", "limits", "bob", "--tokens-per-min", "9"]).exit_code == 0
    with app.app_context():
        assert account_limits(account_id(app, "bob")) == AccountLimits(100, 9, 8)
    assert runner.invoke(args=["accounts", "limits", "bob", "--reset"]).exit_code == 0
    with app.extensions["db"].sessions() as session:
        assert session.scalars(select(AccountLimitOverride)).all() == []  # back to every default: no row
