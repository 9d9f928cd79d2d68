"""/metrics' signals to scale on: work waiting and running per kind, queue depth,
the oldest waiting age (computed when scraped, from the database), and the
durations and prediction lag observed when runs end."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..predictions.test_async_predictions import GENERATION, submit, wait_for


def samples(client) -> dict:
    """{(name, ((label, value), ...)): value} of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.data.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def idle_api(client_for, tiny_model_dir, database_url):
    """On SQLite and on PostgreSQL (the census is SQL of its own)."""
    return client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=False, DATABASE_URL=database_url,
                      WORK_METRICS_MAX_AGE_S=0)


def test_queued_predictions_show_as_waiting_work_and_queue_depth(idle_api):
    before = samples(idle_api.client)
    assert before[("infer_work_waiting", (("kind", "predict"),))] == 0
    assert before[("infer_work_oldest_waiting_seconds", (("kind", "predict"),))] == 0

    for _ in range(2):
        submit(idle_api, "/text-generation", GENERATION)
    submit(idle_api, "/text-generation", GENERATION, headers=idle_api.headers_for("bob"))  # all accounts count
    after = samples(idle_api.client)

    assert after[("infer_work_waiting", (("kind", "predict"),))] == 3
    assert after[("infer_work_running", (("kind", "predict"),))] == 0
    assert after[("infer_queue_depth", (("queue", "predictions"),))] == 3
    assert after[("infer_work_oldest_waiting_seconds", (("kind", "predict"),))] > 0
    for kind in ("build", "parse", "train"):
        assert after[("infer_work_waiting", (("kind", kind),))] == 0


def test_scrapes_reuse_the_work_figures_for_their_max_age(client_for, tiny_model_dir):
    """/metrics needs no key: a flood of scrapes costs one round of queries per INFER_WORK_METRICS_MAX_AGE_S."""
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=False, WORK_METRICS_MAX_AGE_S=3600)
    waiting = ("infer_work_waiting", (("kind", "predict"),))
    assert samples(api.client)[waiting] == 0

    submit(api, "/text-generation", GENERATION)

    assert samples(api.client)[waiting] == 0  # the figures of the first scrape, not asked again
    fresh = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=False, WORK_METRICS_MAX_AGE_S=0)  # same database
    assert samples(fresh.client)[waiting] == 1


def test_a_finished_prediction_observes_its_duration_and_its_lag(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05, WORK_METRICS_MAX_AGE_S=0)
    duration = ("infer_work_seconds_count", (("kind", "predict"), ("status", "succeeded")))
    lag = ("infer_prediction_lag_seconds_count", (("status", "succeeded"),))
    before = samples(api.client)

    done = wait_for(api, submit(api, "/text-generation", GENERATION)["id"])
    after = samples(api.client)

    assert done["status"] == "succeeded"
    assert after[duration] == before.get(duration, 0) + 1
    assert after[lag] == before.get(lag, 0) + 1
    assert after[("infer_work_waiting", (("kind", "predict"),))] == 0


def test_a_models_batch_queue_length_is_reported(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir)
    assert api.client.post("/text-generation", json=GENERATION, headers=api.headers).status_code == 200

    found = samples(api.client)

    queues = {labels: value for (name, labels), value in found.items() if name == "infer_batch_queue_length"}
    assert queues, "no batch queue reported for the model just used"
    assert all(value == 0 for value in queues.values())  # nothing waits once the request was answered
