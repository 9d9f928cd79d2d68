"""The queue path claims fairly between accounts and under each account's cap, as
the embedded runners do (core/fair_claims.py): a message's row is only a hint; a
message that finds its account at its cap is spent, not lost, and its row runs
once the account has room (sent again when a run ends, or by the sweep)."""

import logging
import threading

from sqlalchemy import func, select

from core.keys import hash_key
from core.tables import ApiKey, Prediction

from ..conftest import ApiClient, until
from ..predictions.test_async_predictions import ASYNC, GENERATION
from .workers import start_workers, stop_workers

# About 3 s of generation on the tiny model.
SLOW = {**GENERATION, "min_length": 256, "max_length": 256}


def _submit(api, headers: dict, body: dict) -> str:
    created = api.client.post("/text-generation", json=body, headers={**headers, **ASYNC})
    assert created.status_code == 202, created.json
    return created.json["id"]


def _rows(api) -> dict:
    with api.app.extensions["db"].sessions() as session:
        return {row.id: row for row in session.scalars(select(Prediction).order_by(Prediction.started_at)).all()}


def _account_of(api, headers: dict) -> int:
    with api.app.extensions["db"].sessions() as session:
        return session.scalar(select(ApiKey.account_id).where(ApiKey.key_hash == hash_key(headers["x-api-key"])))


def test_a_worker_takes_another_accounts_prediction_before_one_accounts_backlog(client_for, redis_url,
                                                                                 tiny_model_dir):
    api = client_for(QUEUE_URL=redis_url, MODEL_DIR=tiny_model_dir)
    work = api.app.extensions["work"]
    backlog = [_submit(api, api.headers, GENERATION) for _ in range(4)]
    bobs = _submit(api, api.headers_for("bob"), GENERATION)
    assert work.queues["predictions"].count == 5  # bob's message is the last

    work.run_worker(["predictions"], burst=True)

    rows = _rows(api)  # in the order they started
    assert {row.status for row in rows.values()} == {"succeeded"}
    assert list(rows) == [backlog[0], bobs, *backlog[1:]]
    assert {row.attempts for row in rows.values()} == {1}


def test_a_message_for_an_account_at_its_cap_is_spent_not_lost(client_for, redis_url, tiny_model_dir, caplog):
    caplog.set_level(logging.INFO)
    api = client_for(QUEUE_URL=redis_url, MODEL_DIR=tiny_model_dir, ACCOUNT_MAX_RUNNING_PREDICTIONS=1)
    work, runner = api.app.extensions["work"], api.app.extensions["predictions"]
    ids = [_submit(api, api.headers, GENERATION) for _ in range(3)]
    assert runner.claim() == ids[0]  # another worker runs the first: alice is at her cap

    work.run_worker(["predictions"], burst=True)  # takes the three messages; may run none of them

    assert work.queues["predictions"].count == 0
    rows = _rows(api)
    assert [rows[prediction_id].status for prediction_id in ids] == ["running", "queued", "queued"]
    assert sum("nothing may run now" in record.getMessage() for record in caplog.records) == 3
    runner.run(ids[0])  # the other worker's run ends
    work.run_worker(["predictions"], burst=True)  # this worker's sweep sends the spent ones again

    rows = _rows(api)
    assert list(rows) == ids and {row.status for row in rows.values()} == {"succeeded"}
    assert {row.attempts for row in rows.values()} == {1}


def test_two_workers_keep_one_account_to_its_cap_and_send_its_spent_messages_when_a_run_ends(
        postgres, redis_url, make_app, tiny_model_dir, tmp_path):
    # No sweep after the workers start: only the end of a run can send a spent message again.
    config = {"QUEUE_URL": redis_url, "DATABASE_URL": postgres.new_database(), "DATA_DIR": str(tmp_path / "data"),
              "MODEL_DIR": tiny_model_dir, "QUEUE_SWEEP_S": 3600, "TORCH_THREADS": 1,
              "ACCOUNT_MAX_RUNNING_PREDICTIONS": 1}
    api = ApiClient(make_app(**config))
    workers = start_workers(config, str(tmp_path), 2, redis_url)
    try:
        alice_id = _account_of(api, api.headers)
        seen, watching = [], threading.Event()

        def watch():  # alice's running predictions, as the database counts them
            while not watching.is_set():
                with api.app.extensions["db"].sessions() as session:
                    seen.append(session.scalar(select(func.count()).select_from(Prediction).where(
                        Prediction.account_id == alice_id, Prediction.status == "running")))
                watching.wait(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        backlog = [_submit(api, api.headers, {**SLOW, "text": f"Alice's story {n}"}) for n in range(3)]
        bobs = _submit(api, api.headers_for("bob"), GENERATION)

        def all_ended():
            return all(row.completed_at for row in _rows(api).values()) and len(_rows(api)) == 4

        until(all_ended, 300)
        watching.set()
        watcher.join()
    finally:
        stop_workers(workers)

    rows = _rows(api)
    assert {row.status for row in rows.values()} == {"succeeded"}
    assert max(seen) == 1  # alice's cap, across both workers
    assert rows[bobs].completed_at < max(rows[prediction_id].completed_at for prediction_id in backlog)
    logs = "".join(worker.log() for worker in workers)
    assert "nothing may run now" in logs  # the idle worker spent alice's messages; they ran all the same
