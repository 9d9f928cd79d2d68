"""Background work is claimed fairly between accounts, each capped (core/fair_claims.py):
one account's backlog of asynchronous predictions does not hold back another
account's; one account never runs more than its cap at once, even when many
claims race (SQLite and PostgreSQL); builds, dataset parses and training jobs
are claimed the same way."""

import threading
from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import func, select, update

from core.tables import Prediction, TrainingJob, UserModel, utcnow

from ..conftest import ApiClient
from ..uploads.helpers import inference_zip, put_local, upload_url
from .test_async_predictions import GENERATION, submit, wait_for

# About 3 s of generation on the tiny model: long enough that running ones overlap.
SLOW = {**GENERATION, "min_length": 256, "max_length": 256}


def _id_of(api, headers) -> int:
    from core.keys import hash_key
    from core.tables import ApiKey

    with api.app.extensions["db"].sessions() as session:
        return session.scalar(select(ApiKey.account_id).where(ApiKey.key_hash == hash_key(headers["x-api-key"])))


def test_another_accounts_prediction_runs_before_one_accounts_backlog_drains(client_for, tiny_model_dir):
    # One prediction thread; alice queued six before bob queued his one. Oldest
    # first, bob's would run last; by turns, it runs second.
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTION_THREADS=1, PREDICTION_POLL_S=0.05)
    bob = api.headers_for("bob")
    backlog = [submit(api, "/text-generation", {**GENERATION, "text": f"Alice's story {n}"})["id"] for n in range(6)]
    bobs = submit(api, "/text-generation", GENERATION, headers=bob)["id"]
    api.app.extensions["predictions"].start()

    done = [wait_for(api, prediction_id) for prediction_id in backlog]
    assert _wait_as(api, bob, bobs)["status"] == "succeeded"
    assert {p["status"] for p in done} == {"succeeded"}
    started = _started_order(api)  # the API's times are to the second: the database's order
    assert started.index(bobs) == 1, started
    assert started[0] == backlog[0] and started[2:] == backlog[1:]  # oldest first within an account


def _wait_as(api, headers: dict, prediction_id: str, timeout_s: float = 120) -> dict:
    """wait_for, as the account whose key is in `headers`."""
    return wait_for(SimpleNamespace(client=api.client, headers=headers), prediction_id, timeout_s)


def _started_order(api) -> list[str]:
    with api.app.extensions["db"].sessions() as session:
        return list(session.scalars(select(Prediction.id).order_by(Prediction.started_at)).all())


def test_an_account_never_runs_more_than_its_cap_and_another_account_is_served_meanwhile(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTION_THREADS=4, PREDICTION_POLL_S=0.05,
                     ACCOUNT_MAX_RUNNING_PREDICTIONS=2)
    bob = api.headers_for("bob")
    alice_id = _id_of(api, api.headers)
    backlog = [submit(api, "/text-generation", {**SLOW, "text": f"Alice's story {n}"})["id"] for n in range(6)]
    bobs = submit(api, "/text-generation", GENERATION, headers=bob)["id"]
    sessions = api.app.extensions["db"].sessions
    seen, watching = [], threading.Event()

    def watch():  # alice's running predictions, as the database counts them
        while not watching.is_set():
            with sessions() as session:
                seen.append(session.scalar(select(func.count()).select_from(Prediction).where(
                    Prediction.account_id == alice_id, Prediction.status == "running")))
            watching.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    api.app.extensions["predictions"].start()
    bob_done = _wait_as(api, bob, bobs)
    alice_running_then = api.client.get("/predictions?status=queued", headers=api.headers).json["data"]
    finished = [wait_for(api, prediction_id, timeout_s=180) for prediction_id in backlog]
    watching.set()
    watcher.join()

    assert bob_done["status"] == "succeeded" and alice_running_then  # bob's ended while alice's still waited
    assert [p["status"] for p in finished] == ["succeeded"] * 6
    assert max(seen) == 2  # the cap, reached and never passed, with 4 threads free


def _race(calls) -> list:
    """Run the calls on threads of their own, all starting at once; their results."""
    results, start = [None] * len(calls), threading.Barrier(len(calls))

    def run(number, call):
        start.wait()
        results[number] = call()

    racers = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    return results


def test_claims_racing_in_many_connections_never_pass_the_cap(make_app, database_url, tiny_model_dir):
    # Two apps on one database stand for two processes, each with several threads claiming at once.
    apis = [ApiClient(make_app(DATABASE_URL=database_url, MODEL_DIR=tiny_model_dir, ACCOUNT_MAX_RUNNING_PREDICTIONS=3))
            for _ in range(2)]
    runners = [api.app.extensions["predictions"] for api in apis]
    alices = [submit(apis[0], "/text-generation", GENERATION)["id"] for _ in range(12)]
    # Queue messages name rows: twelve claims of twelve different rows at once.
    named = _race([lambda row_id=row_id, runner=runners[n % 2]: runner.claims.claim_row(
        runner.sessions, row_id, status="running") for n, row_id in enumerate(alices)])
    assert named.count(True) == 3
    with apis[0].app.extensions["db"].sessions() as session:
        session.execute(update(Prediction).values(status="queued", lease_until=None))  # handed back
        session.commit()
    # Embedded threads claim the next: eight at once, each until it gets nothing.
    claimed = _race([lambda runner=runners[n % 2]: [row_id for row_id in iter(runner.claim, None)] for n in range(8)])
    assert sorted(sum(claimed, []), key=alices.index) == alices[:3]  # the cap, each once, alice's oldest

    # Bob, with nothing running, is claimed next though alice has nine older ones waiting.
    bobs = submit(apis[0], "/text-generation", GENERATION, headers=apis[0].headers_for("bob"))["id"]
    runner = apis[1].app.extensions["predictions"]
    assert runner.claim() == bobs
    assert runner.claim() is None  # alice is at her cap
    assert runner.due() == []  # and nothing of hers may be claimed
    # A process that died stops renewing: its claim no longer counts, and that prediction is due again.
    with apis[0].app.extensions["db"].sessions() as session:
        session.execute(update(Prediction).where(Prediction.id == alices[0])
                        .values(lease_until=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert runner.due() == [alices[0]]
    assert runner.claim() == alices[0]


def test_builds_are_claimed_by_turns_one_at_a_time_per_account(client_for):
    api = client_for(ACCOUNT_MAX_RUNNING_BUILDS=1)
    bob = api.headers_for("bob")
    for name in ("first", "second", "third"):
        assert put_local(api.client, upload_url(api.client, api.headers, name), inference_zip()).status_code == 200
    assert put_local(api.client, upload_url(api.client, bob, "bobs"), inference_zip()).status_code == 200
    builder = api.app.extensions["builder"]
    with api.app.extensions["db"].sessions() as session:
        from core.tables import ModelVersion

        version_of = dict(session.execute(select(UserModel.name, ModelVersion.id).join(
            ModelVersion, ModelVersion.model_id == UserModel.id)).all())
    assert builder.due() == [version_of["first"], version_of["bobs"]]  # each account's oldest, one each
    assert [builder.claim(), builder.claim(), builder.claim()] == [version_of["first"], version_of["bobs"], None]
    assert not builder.run_claimed(version_of["second"])  # a queue's message for it claims nothing either


def test_dataset_parses_and_training_jobs_are_claimed_by_turns_capped_per_account(client_for):
    api = client_for(ACCOUNT_MAX_RUNNING_PARSES=1, ACCOUNT_MAX_RUNNING_JOBS=1)
    bob = api.headers_for("bob")
    alice_id, bob_id = _id_of(api, api.headers), _id_of(api, bob)
    csv = "text,label\ngood,pos\nbad,neg\n"
    datasets = [api.client.post("/datasets", json={"data": csv}, headers=headers).json["id"]
                for headers in (api.headers, api.headers, bob)]
    parse, train = api.app.extensions["dataset_parses"], api.app.extensions["training"]
    assert [parse.claim(), parse.claim(), parse.claim()] == [datasets[0], datasets[2], None]

    # Training jobs: rows as POST /models/{name}/train makes them (their datasets need not be parsed to be claimed).
    with api.app.extensions["db"].sessions() as session:
        models = {account: UserModel(account_id=account, name=f"m{account}") for account in (alice_id, bob_id)}
        session.add_all(models.values())
        session.flush()
        jobs = [TrainingJob(id=f"job_{n}", seq=n, account_id=account, model_id=models[account].id,
                            model_name=models[account].name, task="text-classification", dataset_id=datasets[0],
                            created_at=utcnow() + timedelta(milliseconds=n))
                for n, account in enumerate((alice_id, alice_id, bob_id))]
        session.add_all(jobs)
        session.commit()
    assert train.due() == ["job_0", "job_2"]
    assert [train.claim(), train.claim(), train.claim()] == ["job_0", "job_2", None]
