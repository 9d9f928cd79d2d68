"""How many of one account's requests a server process works on at once
(web/admission.py): over INFER_ACCOUNT_MAX_IN_FLIGHT, 429 at once; another
account is not affected; a request leaves when its answer is made (a stream when
its last event is sent); background replays do not count.

The requests held in progress wait on a route the test adds to its own app,
released by an event: what the limit counts is any authenticated request, and
this makes "in progress" a state the test controls instead of a race.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Response

from api.prediction_dispatch import run_as
from web.account_limits import set_overrides

from ..conftest import new_key, until

WAIT_S = 10


@pytest.fixture
def held(make_app):
    """An app with a limit of 2 and a route /test-held that waits until released."""
    app = make_app(ACCOUNT_MAX_IN_FLIGHT=2)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def hold():
        entered.release()
        assert release.wait(WAIT_S)
        return {"held": True}

    def stream():
        def events():
            yield b"first\n"
            assert release.wait(WAIT_S)
            yield b"last\n"
        return Response(events(), mimetype="text/plain")

    app.add_url_rule("/test-held", "test_held", hold)
    app.add_url_rule("/test-stream", "test_stream", stream)
    app.release, app.entered = release, entered
    return app


def in_flight(app, account_key_headers) -> int:
    account_id = account_of(app, account_key_headers)
    return app.extensions["in_flight"].count(account_id)


def account_of(app, headers) -> int:
    from core.keys import find_active_key, hash_key

    with app.extensions["db"].sessions() as session:
        return find_active_key(session, hash_key(headers["x-api-key"])).account_id


def test_an_account_over_its_limit_gets_429_at_once_and_another_account_is_served(held):
    alice = {"x-api-key": new_key(held, "alice")}
    bob = {"x-api-key": new_key(held, "bob")}
    with ThreadPoolExecutor(2) as pool:
        holding = [pool.submit(held.test_client().get, "/test-held", headers=alice) for _ in range(2)]
        for _ in range(2):
            assert held.entered.acquire(timeout=WAIT_S)
        assert in_flight(held, alice) == 2

        refused = held.test_client().post("/text-vectorisation", json={"text": "x"}, headers=alice)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert "INFER_ACCOUNT_MAX_IN_FLIGHT" in refused.get_json()["message"]

        # Another account has its own count: its keys and models answer.
        assert held.test_client().get("/keys", headers=bob).status_code == 200
        held.release.set()
        assert [f.result(WAIT_S).status_code for f in holding] == [200, 200]
    assert in_flight(held, alice) == 0
    assert held.test_client().get("/keys", headers=alice).status_code == 200


def test_openai_routes_answer_the_refusal_in_openais_shape(held):
    alice = {"x-api-key": new_key(held, "alice")}
    with ThreadPoolExecutor(2) as pool:
        holding = [pool.submit(held.test_client().get, "/test-held", headers=alice) for _ in range(2)]
        for _ in range(2):
            assert held.entered.acquire(timeout=WAIT_S)
        refused = held.test_client().post("/v1/embeddings", json={"input": "x", "model": "english"}, headers=alice)
        held.release.set()
        [f.result(WAIT_S) for f in holding]
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limit_exceeded"


def test_the_operator_can_give_one_account_its_own_limit(held):
    alice = {"x-api-key": new_key(held, "alice")}
    with held.app_context(), held.extensions["db"].sessions() as session:
        set_overrides(session, account_of(held, alice), {"max_in_flight": 1})  # as `flask accounts limits` does
    with ThreadPoolExecutor(1) as pool:
        holding = pool.submit(held.test_client().get, "/test-held", headers=alice)
        assert held.entered.acquire(timeout=WAIT_S)
        refused = held.test_client().get("/keys", headers=alice)
        held.release.set()
        assert holding.result(WAIT_S).status_code == 200
    assert refused.status_code == 429
    assert "1 requests in progress" in refused.get_json()["message"]


def test_a_stream_counts_until_its_last_event_is_sent(held):
    alice = {"x-api-key": new_key(held, "alice")}
    response = held.test_client().get("/test-stream", headers=alice, buffered=False)
    body = iter(response.response)
    assert next(body) == b"first\n"
    assert in_flight(held, alice) == 1  # the view has returned; the stream goes on
    held.release.set()
    assert next(body) == b"last\n"
    response.close()  # what a server does once it has sent the last byte
    assert in_flight(held, alice) == 0


def test_a_replayed_asynchronous_prediction_is_not_counted(held):
    alice = {"x-api-key": new_key(held, "alice")}
    account = account_of(held, alice)
    with ThreadPoolExecutor(2) as pool:
        holding = [pool.submit(held.test_client().get, "/test-held", headers=alice) for _ in range(2)]
        for _ in range(2):
            assert held.entered.acquire(timeout=WAIT_S)
        # The prediction runner runs a stored request as background work: admitted when submitted,
        # so it goes on to the route's own checks (this body has no text: the route's 422).
        replay = run_as(held, account, "/text-vectorisation", {"model": "english"}, background=True)
        # A run made while serving a client (the UI, a prediction URL) counts like the client's own.
        served = run_as(held, account, "/text-vectorisation", {"model": "english"})
        held.release.set()
        [f.result(WAIT_S) for f in holding]
    assert replay[0] == 422 and "text" in replay[1]["errors"]
    assert served[0] == 429 and "INFER_ACCOUNT_MAX_IN_FLIGHT" in served[1]["message"]
    until(lambda: held.extensions["in_flight"].count(account) == 0)
