"""Asynchronous predictions over HTTP: Prefer: respond-async -> 202 and a prediction to
poll; the same output as the synchronous call; cancel; list; errors; retention;
a prediction whose process died runs again."""

import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from core.tables import Prediction, utcnow

ASYNC = {"Prefer": "respond-async"}
GENERATION = {"text": "Once upon a time", "temperature": 0, "min_length": 3, "max_length": 8, "model": "gpt2-large"}


@pytest.fixture
def api(client_for, tiny_model_dir):
    return client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05)


@pytest.fixture
def idle_api(client_for, tiny_model_dir):
    """No runner: predictions stay queued until the test runs them."""
    return client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=False)


def submit(api, path, body, headers=None):
    response = api.client.post(path, json=body, headers={**api.headers, **ASYNC, **(headers or {})})
    assert response.status_code == 202, response.json
    assert response.headers["Location"] == f"/predictions/{response.json['id']}"
    assert response.headers["Preference-Applied"] == "respond-async"
    return response.json


def wait_for(api, prediction_id, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        answer = api.client.get(f"/predictions/{prediction_id}", headers=api.headers)
        assert answer.status_code == 200, answer.json
        if answer.json["status"] in ("succeeded", "failed", "cancelled"):
            return answer.json
        assert time.monotonic() < deadline, answer.json
        time.sleep(0.05)


def test_a_request_with_prefer_respond_async_is_answered_202_then_polled_to_the_synchronous_output(api):
    created = submit(api, "/text-generation", GENERATION)
    assert created["status"] == "queued" and created["task"] == "text-generation"
    assert created["model"] == "gpt2-large" and created["output"] is None
    done = wait_for(api, created["id"])
    synchronous = api.client.post("/text-generation", json=GENERATION, headers=api.headers)
    assert synchronous.status_code == 200
    assert done["status"] == "succeeded" and done["output"] == synchronous.json
    assert done["error"] is None and done["started_at"] and done["completed_at"]
    assert done["metrics"]["queue_seconds"] >= 0 and done["metrics"]["predict_seconds"] > 0


def test_without_the_header_every_endpoint_answers_at_once_as_before(api):
    answer = api.client.post("/text-generation", json=GENERATION, headers={**api.headers, "Prefer": "return=minimal"})
    assert answer.status_code == 200 and "output" in answer.json


def test_the_v1_routes_answer_asynchronously_too_but_not_while_streaming(api):
    body = {"model": "gpt2-large", "prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}
    done = wait_for(api, submit(api, "/v1/completions", body)["id"])
    assert done["status"] == "succeeded" and done["task"] == "text-generation"
    assert done["output"]["object"] == "text_completion"
    streaming = api.client.post("/v1/completions", json={**body, "stream": True}, headers={**api.headers, **ASYNC})
    assert streaming.status_code == 400 and "respond-async" in streaming.json["error"]["message"]


def test_a_malformed_request_is_refused_before_it_is_queued_with_the_synchronous_error(idle_api):
    bad = {"text": "hi", "max_length": "long", "model": "gpt2-large"}
    queued = idle_api.client.post("/text-generation", json=bad, headers={**idle_api.headers, **ASYNC})
    synchronous = idle_api.client.post("/text-generation", json=bad, headers=idle_api.headers)
    assert queued.status_code == synchronous.status_code == 422
    assert queued.json == synchronous.json
    listed = idle_api.client.get("/predictions", headers=idle_api.headers)
    assert listed.json["data"] == []


def test_what_only_running_tells_ends_the_prediction_failed_with_the_synchronous_error_body(api):
    body = {**GENERATION, "model": "no-such-model"}
    done = wait_for(api, submit(api, "/text-generation", body)["id"])
    synchronous = api.client.post("/text-generation", json=body, headers=api.headers)
    assert done["status"] == "failed" and done["output"] is None
    assert done["error"] == synchronous.json and synchronous.status_code == 404


def test_a_queued_prediction_cancelled_never_runs(idle_api):
    created = submit(idle_api, "/text-generation", GENERATION)
    cancelled = idle_api.client.post(f"/predictions/{created['id']}/cancel", headers=idle_api.headers)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    runner = idle_api.app.extensions["predictions"]
    assert runner.claim() is None  # nothing left to run
    again = idle_api.client.get(f"/predictions/{created['id']}", headers=idle_api.headers).json
    assert again["status"] == "cancelled" and again["output"] is None and again["completed_at"]


def test_a_running_prediction_cancelled_drops_its_answer(idle_api):
    created = submit(idle_api, "/text-generation", GENERATION)
    runner = idle_api.app.extensions["predictions"]
    assert runner.claim() == created["id"]
    assert idle_api.client.get(f"/predictions/{created['id']}", headers=idle_api.headers).json["status"] == "running"
    idle_api.client.post(f"/predictions/{created['id']}/cancel", headers=idle_api.headers)
    runner.run(created["id"])
    done = idle_api.client.get(f"/predictions/{created['id']}", headers=idle_api.headers).json
    assert done["status"] == "cancelled" and done["output"] is None


def test_a_prediction_whose_process_died_runs_again_and_gives_up_after_the_attempts(idle_api):
    runner = idle_api.app.extensions["predictions"]
    sessions = idle_api.app.extensions["db"].sessions
    first = submit(idle_api, "/text-generation", GENERATION)["id"]
    assert runner.claim() == first  # then the process "dies": nobody renews the lease
    with sessions() as session:
        session.execute(update(Prediction).where(Prediction.id == first)
                        .values(lease_until=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert runner.due() == [first]
    assert runner.claim() == first
    runner.run(first)
    with sessions() as session:
        row = session.get(Prediction, first)
        assert (row.status, row.attempts) == ("succeeded", 2)
    second = submit(idle_api, "/text-generation", GENERATION)["id"]
    with sessions() as session:
        session.execute(update(Prediction).where(Prediction.id == second).values(attempts=3))
        session.commit()
    assert runner.claim() == second
    runner.run(second)
    done = idle_api.client.get(f"/predictions/{second}", headers=idle_api.headers).json
    assert done["status"] == "failed" and "stopped 3 times" in done["error"]["message"]


def test_predictions_are_listed_newest_first_by_status_a_page_at_a_time_and_only_the_accounts_own(idle_api):
    ids = [submit(idle_api, "/text-generation", GENERATION)["id"] for _ in range(3)]
    idle_api.client.post(f"/predictions/{ids[0]}/cancel", headers=idle_api.headers)
    page = idle_api.client.get("/predictions?limit=2", headers=idle_api.headers).json
    assert [p["id"] for p in page["data"]] == [ids[2], ids[1]] and page["has_more"]
    rest = idle_api.client.get(f"/predictions?limit=2&after={ids[1]}", headers=idle_api.headers).json
    assert [p["id"] for p in rest["data"]] == [ids[0]] and not rest["has_more"]
    queued = idle_api.client.get("/predictions?status=queued", headers=idle_api.headers).json
    assert {p["id"] for p in queued["data"]} == {ids[1], ids[2]}
    mallory = idle_api.headers_for("mallory")
    assert idle_api.client.get("/predictions", headers=mallory).json["data"] == []
    for path in (f"/predictions/{ids[1]}", f"/predictions?after={ids[1]}"):
        assert idle_api.client.get(path, headers=mallory).status_code == 404
    assert idle_api.client.post(f"/predictions/{ids[1]}/cancel", headers=mallory).status_code == 404
    assert idle_api.client.get(f"/predictions/{ids[1]}", headers=idle_api.headers).json["status"] == "queued"


def test_an_account_with_too_many_waiting_predictions_gets_429(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, ACCOUNT_MAX_QUEUED_PREDICTIONS=2)
    submit(api, "/text-generation", GENERATION)
    submit(api, "/text-generation", GENERATION)
    refused = api.client.post("/text-generation", json=GENERATION, headers={**api.headers, **ASYNC})
    assert refused.status_code == 429 and "INFER_ACCOUNT_MAX_QUEUED_PREDICTIONS" in refused.json["message"]
    # Another account is not held back by alice's.
    other = api.client.post("/text-generation", json=GENERATION, headers={**api.headers_for("bob"), **ASYNC})
    assert other.status_code == 202


def test_finished_predictions_are_deleted_after_the_retention_time(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTION_RETENTION_S=60)
    created = submit(api, "/text-generation", GENERATION)
    runner = api.app.extensions["predictions"]
    runner.run(runner.claim())
    runner.housekeeping()  # within the retention time: kept
    assert api.client.get(f"/predictions/{created['id']}", headers=api.headers).json["status"] == "succeeded"
    with api.app.extensions["db"].sessions() as session:
        session.execute(update(Prediction).values(completed_at=utcnow() - timedelta(seconds=61)))
        session.commit()
    runner.housekeeping()
    gone = api.client.get(f"/predictions/{created['id']}", headers=api.headers)
    assert gone.status_code == 404 and "INFER_PREDICTION_RETENTION_S" in gone.json["message"]



def test_many_predictions_submitted_at_once_all_run_once(api):
    texts = [f"Story number {n} begins" for n in range(8)]
    created = [submit(api, "/text-generation", {**GENERATION, "text": text})["id"] for text in texts]
    finished = [wait_for(api, prediction_id) for prediction_id in created]
    assert [p["status"] for p in finished] == ["succeeded"] * 8
    assert [p["output"]["output"].startswith(text) for p, text in zip(finished, texts)] == [True] * 8
    with api.app.extensions["db"].sessions() as session:
        assert {session.get(Prediction, prediction_id).attempts for prediction_id in created} == {1}
