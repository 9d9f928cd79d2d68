"""Webhooks of training jobs, builds and batches: a real HTTP server on 127.0.0.1
(allowed by INFER_WEBHOOK_ALLOWED_NETWORKS) receives one call when the object
ends, signed with the account's webhook secret, carrying the object as its GET
answers it; a failed call is retried; a URL the guard refuses is a 422 at POST."""

import hashlib
import hmac
import io
import json

import pytest

from ..training.flow import add_dataset, iris_csv, start_job, wait_job
from ..uploads.helpers import inference_zip, put_local, wait_built
from .test_batches import jsonl, post_batch, request_line, wait_until_ended

LOOPBACK = "127.0.0.1/32"


def verified(api, headers: dict, body: bytes) -> dict:
    """The call's JSON, once its signature is checked with the account's secret."""
    secret = api.client.get("/webhook-secret", headers=api.headers).json["secret"]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Infer-Signature"], expected)
    return json.loads(body)


def test_a_training_jobs_webhook_is_called_once_signed_with_the_job_as_get_answers_it(client_for, receiver):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, PREDICTIONS=True, PREDICTION_POLL_S=0.05,
                     WEBHOOK_ALLOWED_NETWORKS=LOOPBACK)
    hook = receiver()
    dataset = add_dataset(api.client, api.headers, iris_csv(), name="iris")
    job = start_job(api.client, api.headers, "iris", task="tabular", dataset_id=dataset["id"], webhook=hook.url)
    assert job["webhook"] == hook.url
    done = wait_job(api.client, api.headers, job["id"])
    assert done["status"] == "succeeded", done["message"]
    ((headers, body),) = hook.wait_calls(1)
    assert headers["X-Infer-Event"] == "training_job.finished"
    assert verified(api, headers, body) == api.client.get(f"/jobs/{job['id']}", headers=api.headers).json
    # Signed with this account's secret, not another's.
    other = api.client.get("/webhook-secret", headers=api.headers_for("bob")).json["secret"]
    assert headers["X-Infer-Signature"] != "sha256=" + hmac.new(other.encode(), body, hashlib.sha256).hexdigest()


def test_a_build_webhook_carries_the_version_when_the_build_ends(client_for, tiny_model_dir, receiver):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, MODEL_DIR=tiny_model_dir, PREDICTIONS=True,
                     PREDICTION_POLL_S=0.05, WEBHOOK_ALLOWED_NETWORKS=LOOPBACK)
    hook = receiver()
    url = api.client.post("/upload-url", json={"model_name": "scaled", "webhook": hook.url}, headers=api.headers)
    assert url.status_code == 200, url.json
    assert put_local(api.client, url.json, inference_zip()).status_code == 200
    assert wait_built(api.client, api.headers, "scaled")["build_status"] == "success"
    ((headers, body),) = hook.wait_calls(1)
    assert headers["X-Infer-Event"] == "build.finished"
    sent = verified(api, headers, body)
    (version,) = api.client.get("/models/scaled/versions", headers=api.headers).json
    assert sent == {"object": "model.version", "model": "scaled", **version}
    assert sent["status"] == "success" and sent["version"] == 1


def test_a_batch_webhook_is_retried_until_it_is_answered_2xx(client_for, tiny_model_dir, receiver):
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05,
                     WEBHOOK_ALLOWED_NETWORKS=LOOPBACK, WEBHOOK_RETRY_S=0.05)
    hook = receiver(statuses=(500, 200))
    created = post_batch(api, jsonl([request_line("a", "/emotion", {"text": "hi"})]), webhook=hook.url)
    assert created.status_code == 202, created.json
    done = wait_until_ended(api, created.json["id"])
    calls = hook.wait_calls(2)
    assert calls[0][1] == calls[1][1]  # the same body each time
    assert calls[0][0]["X-Infer-Delivery"] != calls[1][0]["X-Infer-Delivery"]
    assert verified(api, calls[1][0], calls[1][1]) == done


def test_a_job_cancelled_before_it_started_calls_its_webhook_too(client_for, receiver):
    api = client_for(PREDICTIONS=True, PREDICTION_POLL_S=0.05, WEBHOOK_ALLOWED_NETWORKS=LOOPBACK)
    hook = receiver()
    created = api.client.post("/datasets", json={"data": iris_csv()}, headers=api.headers).json
    api.app.extensions["dataset_parses"].run_claimed(created["id"])
    job = start_job(api.client, api.headers, "iris", task="tabular", dataset_id=created["id"], webhook=hook.url)
    cancelled = api.client.post(f"/jobs/{job['id']}/cancel", headers=api.headers).json
    assert cancelled["status"] == "cancelled"
    ((headers, body),) = hook.wait_calls(1)
    assert verified(api, headers, body) == cancelled


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "ftp://example.com/x",
                                 "http://10.0.0.1/hook"])
def test_a_webhook_the_guard_refuses_is_a_422_when_it_is_sent(client, headers, url):
    train = client.post("/models/iris/train", json={"task": "tabular", "dataset_id": "ds_x", "webhook": url},
                        headers=headers)
    upload = client.post("/upload-url", json={"model_name": "scaled", "webhook": url}, headers=headers)
    batch = client.post("/batches", data={"file": (io.BytesIO(b"{}\n"), "a.jsonl"), "webhook": url},
                        headers=headers, content_type="multipart/form-data")
    for answer in (train, upload, batch):
        assert answer.status_code == 422 and "webhook" in answer.json["errors"], answer.json
