"""Per-account usage (core/usage.py, web/usage.py, GET /usage): inference requests counted per account,
task and model with their errors and latency, stored in buckets that processes add to,
on SQLite and PostgreSQL; asynchronous predictions, prediction URLs and streams too."""

import threading
import time

import pytest
import requests
from sqlalchemy import select

from core.tables import Account, UsageBucket
from core.usage import MODELS_PER_BUCKET, OTHER_MODELS, update_or_insert
from trainers.tabular import TabularTrainer

from .conftest import new_key, until
from .tasks.test_predict import IRIS_ROW, add_trained_version, iris_rows

HAPPY = {"text": "I am so happy today"}


def usage_of(client, headers, **query) -> dict:
    response = client.get("/usage", query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def totals(usage: dict) -> dict:
    """(task, model) -> (requests, errors)."""
    return {(row["task"], row["model"]): (row["requests"], row["errors"]) for row in usage["totals"]}


def account_id(app, name: str) -> int:
    with app.extensions["db"].sessions() as session:
        return session.scalar(select(Account.id).where(Account.name == name))


def stored_rows(app) -> list:
    with app.extensions["db"].sessions() as session:
        return session.scalars(select(UsageBucket).order_by(UsageBucket.bucket_start)).all()


@pytest.fixture
def usage_app(make_app, database_url, tiny_model_dir):
    return make_app(DATABASE_URL=database_url, MODEL_DIR=tiny_model_dir)


def test_requests_are_counted_per_account_task_and_model_with_errors_apart(usage_app):
    client = usage_app.test_client()
    alice, bob = {"x-api-key": new_key(usage_app, "alice")}, {"x-api-key": new_key(usage_app, "bob")}
    for _ in range(2):
        assert client.post("/emotion", json=HAPPY, headers=alice).status_code == 200
    # Refused requests count, as errors: an invalid body, a model that does not exist.
    assert client.post("/emotion", json={"text": 5}, headers=alice).status_code == 422
    assert client.post("/emotion", json={**HAPPY, "model": "no-such-model"}, headers=alice).status_code == 404
    assert client.post("/emotion", json={**HAPPY, "model": ""}, headers=bob).status_code == 200  # "": the default
    # Nobody's: no key; and reading things is not inference.
    assert client.post("/emotion", json=HAPPY).status_code == 401
    assert client.get("/models", headers=alice).status_code == 200

    mine = usage_of(client, alice)
    assert totals(mine) == {("emotion", "english"): (3, 1), ("emotion", "no-such-model"): (1, 1)}
    english = next(row for row in mine["totals"] if row["model"] == "english")
    assert 0 < english["mean_latency_ms"] <= english["max_latency_ms"]
    assert mine["hours"] == 24 and mine["step_seconds"] == 300
    assert sum(bucket["requests"] for bucket in mine["buckets"]) == 4
    assert all(mine["since"] <= bucket["start"] for bucket in mine["buckets"])
    # Another account's usage never appears; GET /usage itself counted nothing.
    assert totals(usage_of(client, bob)) == {("emotion", "english"): (1, 0)}
    assert totals(usage_of(client, alice)) == totals(mine)


def test_two_processes_on_one_database_add_up(make_app, database_url, tiny_model_dir):
    first = make_app(DATABASE_URL=database_url, MODEL_DIR=tiny_model_dir)
    second = make_app(DATABASE_URL=database_url, MODEL_DIR=tiny_model_dir)
    headers = {"x-api-key": new_key(first, "alice")}
    for app, count in ((first, 2), (second, 3)):
        for _ in range(count):
            assert app.test_client().post("/emotion", json=HAPPY, headers=headers).status_code == 200

    assert second.extensions["usage"].flush() == 1  # what its flush thread does every INFER_USAGE_FLUSH_S
    assert totals(usage_of(first.test_client(), headers)) == {("emotion", "english"): (5, 0)}
    assert totals(usage_of(second.test_client(), headers)) == {("emotion", "english"): (5, 0)}  # nothing twice
    assert len(stored_rows(first)) == 1  # one bucket, added to by both


def test_counts_recorded_and_flushed_concurrently_by_two_processes_are_exact(make_app, database_url):
    apps = [make_app(DATABASE_URL=database_url), make_app(DATABASE_URL=database_url)]
    new_key(apps[0], "alice")
    alice = account_id(apps[0], "alice")
    recorders = [app.extensions["usage"] for app in apps]
    stop = threading.Event()

    def keep_flushing(recorder):
        while not stop.is_set():
            recorder.flush()
            time.sleep(0.001)  # let the writers run

    def record(recorder):
        for number in range(300):
            recorder.record(alice, "emotion", f"model-{number % 3}", 500 if number % 10 == 0 else 200, float(number))

    flushers = [threading.Thread(target=keep_flushing, args=(recorder,)) for recorder in recorders]
    writers = [threading.Thread(target=record, args=(recorder,)) for recorder in recorders for _ in range(2)]
    for thread in flushers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in flushers:
        thread.join()
    for recorder in recorders:
        recorder.flush()

    usage = usage_of(apps[1].test_client(), {"x-api-key": new_key(apps[1], "alice")})
    assert totals(usage) == {("emotion", f"model-{n}"): (400, 40) for n in range(3)}  # every 10th fails
    for row in usage["totals"]:
        n = int(row["model"][-1])
        latencies = [number for number in range(300) if number % 3 == n]
        assert row["max_latency_ms"] == max(latencies)
        assert row["mean_latency_ms"] == round(sum(latencies) / len(latencies), 2)



def test_without_an_upsert_rows_are_added_to_or_inserted(make_app, database_url):
    """The path of databases other than SQLite and PostgreSQL, run on both."""
    app = make_app(DATABASE_URL=database_url)
    new_key(app, "alice")
    alice = account_id(app, "alice")
    row = {"account_id": alice, "bucket_start": 600, "task": "emotion", "model": "english", "requests": 2,
           "errors": 1, "latency_ms_total": 30.0, "latency_ms_max": 20.0}
    with app.extensions["db"].sessions() as session:
        update_or_insert(session, [row])
        update_or_insert(session, [{**row, "latency_ms_max": 12.0}, {**row, "model": "other"}])
        session.commit()
    stored = {r.model: (r.requests, r.errors, r.latency_ms_total, r.latency_ms_max) for r in stored_rows(app)}
    assert stored == {"english": (4, 2, 60.0, 20.0), "other": (2, 1, 30.0, 20.0)}

def test_made_up_model_names_cannot_grow_an_accounts_rows_without_bound(make_app):
    """Any name a client sends is counted (a 404 too); past MODELS_PER_BUCKET names
    in a bucket the rest count together."""
    app = make_app()
    headers = {"x-api-key": new_key(app, "alice")}
    recorder, alice, now = app.extensions["usage"], account_id(app, "alice"), time.time()
    for number in range(MODELS_PER_BUCKET + 30):
        recorder.record(alice, "emotion", f"made-up-{number}", 404, 1.0, at=now)
    recorder.record(alice, "emotion", "made-up-0", 200, 1.0, at=now)  # a name already kept apart stays apart
    counted = totals(usage_of(app.test_client(), headers))
    assert len(counted) == MODELS_PER_BUCKET + 1
    assert counted[("emotion", OTHER_MODELS)] == (30, 30) and counted[("emotion", "made-up-0")] == (2, 1)


def test_buckets_older_than_the_retention_are_deleted(make_app, database_url):
    app = make_app(DATABASE_URL=database_url, USAGE_RETENTION_HOURS=2)
    headers = {"x-api-key": new_key(app, "alice")}
    recorder, alice, now = app.extensions["usage"], account_id(app, "alice"), time.time()
    recorder.record(alice, "emotion", "english", 200, 5.0, at=now - 3 * 3600)  # a process that stored it long ago
    recorder.record(alice, "emotion", "english", 200, 7.0, at=now - 3600)

    recorder.flush()  # a process deletes what is past retention when it stores (every 10 minutes at most)
    assert [row.bucket_start for row in stored_rows(app)] == [recorder.bucket_of(now - 3600)]
    usage = usage_of(app.test_client(), headers)
    assert usage["hours"] == 2 and totals(usage) == {("emotion", "english"): (1, 0)}  # the default: the retention
    refused = app.test_client().get("/usage?hours=3", headers=headers)
    assert refused.status_code == 422 and "INFER_USAGE_RETENTION_HOURS" in refused.json["message"]
    assert recorder.prune(now + 2 * 3600) == 1
    assert stored_rows(app) == []


def test_the_answer_can_be_in_longer_buckets(make_app):
    app = make_app()
    headers = {"x-api-key": new_key(app, "alice")}
    recorder, alice, hour = app.extensions["usage"], account_id(app, "alice"), 3600
    start = (int(time.time()) // hour - 1) * hour  # the previous whole hour: its twelve 5-minute buckets
    for minute in (0, 10, 55):
        recorder.record(alice, "emotion", "english", 200, 10.0 * (minute + 1), at=start + minute * 60)

    usage = usage_of(app.test_client(), headers, step=hour, hours=2)
    assert usage["step_seconds"] == hour
    previous = [bucket for bucket in usage["buckets"] if bucket["start"] == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))]
    assert [(b["requests"], b["mean_latency_ms"], b["max_latency_ms"]) for b in previous] == [(3, 226.67, 560.0)]
    bad = app.test_client().get("/usage?step=400", headers=headers)
    assert bad.status_code == 422 and "INFER_USAGE_BUCKET_S" in bad.json["message"]


def test_the_flush_thread_stores_the_counts_by_itself(make_app):
    app = make_app(USAGE_FLUSH_S=0.05)
    new_key(app, "alice")
    app.extensions["usage"].record(account_id(app, "alice"), "emotion", "english", 200, 1.0)
    until(lambda: len(stored_rows(app)) == 1)
    assert app.extensions["usage"].pending() == 0


def test_an_asynchronous_prediction_counts_for_its_account_when_it_runs(make_app, tiny_model_dir):
    app = make_app(MODEL_DIR=tiny_model_dir)  # PREDICTIONS off: the test runs them
    client, headers = app.test_client(), {"x-api-key": new_key(app, "alice")}
    queued = [client.post("/emotion", json=body, headers={**headers, "Prefer": "respond-async"})
              for body in (HAPPY, {**HAPPY, "model": "no-such-model"})]
    assert [answer.status_code for answer in queued] == [202, 202]
    assert totals(usage_of(client, headers)) == {}  # queued is not run

    for answer in queued:
        assert app.extensions["predictions"].run_claimed(answer.json["id"])
    assert client.get(f"/predictions/{queued[1].json['id']}", headers=headers).json["status"] == "failed"
    assert totals(usage_of(client, headers)) == {("emotion", "english"): (1, 0), ("emotion", "no-such-model"): (1, 1)}
    assert totals(usage_of(client, {"x-api-key": new_key(app, "mallory")})) == {}


def test_prediction_url_calls_count_for_the_urls_owner(client_for):
    api = client_for()
    add_trained_version(api.app, "alice", "iris", TabularTrainer(), iris_rows(), [], "tabular", {"n_estimators": 20})
    made = api.client.post("/models/iris/prediction-url", json={"task": "tabular"}, headers=api.headers)
    path = made.json["url"][made.json["url"].index("/p/"):]

    for _ in range(2):
        assert api.client.post(path, json={"features": IRIS_ROW}).status_code == 200  # no key
    assert api.client.get(f"{path}?sepal_length=5.1").status_code == 422  # the model's own check: an error
    assert api.client.get("/p/pk_guessed?sepal_length=1").status_code == 404  # no URL: nobody's

    assert totals(usage_of(api.client, api.headers)) == {("tabular", "iris"): (3, 1)}
    assert totals(usage_of(api.client, api.headers_for("mallory"))) == {}


def test_a_streamed_completion_counts_once_its_stream_has_ended(make_app, tiny_model_dir):
    app = make_app(MODEL_DIR=tiny_model_dir)
    client, headers = app.test_client(), {"x-api-key": new_key(app, "alice")}
    response = client.post("/v1/completions", headers=headers, json={
        "model": "gpt2-large", "prompt": "Once upon", "max_tokens": 3, "temperature": 0, "stream": True})
    assert response.status_code == 200 and response.is_streamed
    assert app.extensions["usage"].pending() == 0  # its answer has begun, not ended

    assert response.get_data(as_text=True).rstrip().endswith("data: [DONE]")
    assert totals(usage_of(client, headers)) == {("text-generation", "gpt2-large"): (1, 0)}


def test_the_prometheus_metrics_still_count_requests_per_route(make_app, tiny_model_dir):
    app = make_app(MODEL_DIR=tiny_model_dir)
    headers = {"x-api-key": new_key(app, "alice")}
    assert app.test_client().post("/emotion", json=HAPPY, headers=headers).status_code == 200
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'infer_requests_total{endpoint="/emotion",method="POST",status="200"}' in metrics


def test_gunicorn_workers_store_their_counts_when_they_stop(tmp_path, make_app):
    """Two workers, neither flushing on its own within the test: a graceful stop stores
    what each counted (atexit), and the counts of both add up."""
    from .gunicorn import production_server

    with production_server(tmp_path, INFER_WORKERS="2", INFER_THREADS="2", INFER_USAGE_FLUSH_S="3600") as server:
        [key] = server.printed_keys()
        for _ in range(6):  # refused (no model loads), counted as errors, by whichever worker takes each
            refused = requests.post(server.url + "/emotion", json={"text": 5}, headers={"x-api-key": key}, timeout=30)
            assert refused.status_code == 422

    app = make_app(DATA_DIR=str(tmp_path / "data"))
    assert totals(usage_of(app.test_client(), {"x-api-key": key})) == {("emotion", "english"): (6, 6)}
