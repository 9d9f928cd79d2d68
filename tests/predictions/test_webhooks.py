"""Webhooks of asynchronous predictions: a real HTTP server receives one signed call;
a failing one is retried with back-off; loopback, private and link-local
destinations are refused unless the operator allows their network."""

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from predictions import webhooks

from .test_async_predictions import ASYNC, GENERATION


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers the given statuses in turn."""

    def __init__(self, statuses=(200,)):
        self.calls: list[tuple[dict, bytes]] = []
        self.statuses = list(statuses)
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.calls.append((dict(self.headers), body))
                    status = receiver.statuses[min(len(receiver.calls), len(receiver.statuses)) - 1]
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?source=infer"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_calls(self, count: int, timeout_s: float = 30) -> list:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.calls) >= count, timeout_s), self.calls
            return list(self.calls)

    def close(self):
        self.server.shutdown()


def webhook_state(api, prediction_id: str, timeout_s: float = 30) -> tuple:
    """(webhook_status, webhook_attempts, webhook_error) once the delivery has ended."""
    from app.db import Prediction

    deadline = time.monotonic() + timeout_s
    while True:
        with api.app.extensions["db"].sessions() as session:
            row = session.get(Prediction, prediction_id)
            if row.webhook_status != "pending":
                return row.webhook_status, row.webhook_attempts, row.webhook_error
        assert time.monotonic() < deadline, "the webhook delivery never ended"
        time.sleep(0.02)


@pytest.fixture
def receiver():
    receivers = []

    def make(statuses=(200,)):
        receivers.append(Receiver(statuses))
        return receivers[-1]

    yield make
    for one in receivers:
        one.close()


@pytest.fixture
def local_hooks_api(client_for, tiny_model_dir):
    return client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05,
                      WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32", WEBHOOK_RETRY_S=0.05)


def test_a_finished_prediction_calls_its_webhook_once_signed_with_the_accounts_secret(local_hooks_api, receiver):
    api, hook = local_hooks_api, receiver()
    created = api.client.post("/text-generation", json={**GENERATION, "webhook": hook.url},
                              headers={**api.headers, **ASYNC})
    assert created.status_code == 202 and created.json["webhook"] == hook.url
    [(headers, body)] = hook.wait_calls(1)
    secret = api.client.get("/webhook-secret", headers=api.headers).json["secret"]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Infer-Signature"], expected)
    sent = json.loads(body)
    assert sent["id"] == created.json["id"] and sent["status"] == "succeeded"
    assert sent["output"] == api.client.post("/text-generation", json=GENERATION, headers=api.headers).json
    assert webhook_state(api, created.json["id"])[:2] == ("delivered", 1)
    assert hook.calls == [(headers, body)]  # once
    # Another account signs with another secret; a rotated secret signs from then on.
    assert api.client.get("/webhook-secret", headers=api.headers_for("bob")).json["secret"] != secret
    rotated = api.client.post("/webhook-secret/rotate", headers=api.headers).json["secret"]
    assert rotated != secret and api.client.get("/webhook-secret", headers=api.headers).json["secret"] == rotated


def test_a_failing_webhook_is_retried_with_back_off_until_it_is_accepted(local_hooks_api, receiver):
    api, hook = local_hooks_api, receiver(statuses=(500, 503, 200))
    created = api.client.post("/text-generation", json={**GENERATION, "webhook": hook.url},
                              headers={**api.headers, **ASYNC})
    calls = hook.wait_calls(3)
    assert len({body for _headers, body in calls}) == 1  # the same body each time
    assert [headers["X-Infer-Delivery"] for headers, _ in calls] == [f"{created.json['id']}.{n}" for n in (1, 2, 3)]
    assert webhook_state(api, created.json["id"])[:2] == ("delivered", 3)


def test_a_webhook_that_never_succeeds_is_given_up_after_the_attempts(client_for, tiny_model_dir, receiver):
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_POLL_S=0.05,
                     WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32", WEBHOOK_RETRY_S=0.01, WEBHOOK_MAX_ATTEMPTS=2)
    hook = receiver(statuses=(500,))
    created = api.client.post("/text-generation", json={**GENERATION, "webhook": hook.url},
                              headers={**api.headers, **ASYNC})
    hook.wait_calls(2)
    status, attempts, error = webhook_state(api, created.json["id"])
    assert (status, attempts) == ("failed", 2) and "HTTP 500" in error
    assert len(hook.calls) == 2


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/hook", "http://10.1.2.3/hook",
    "http://192.168.0.10/hook", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/",
])
def test_a_webhook_to_a_loopback_or_private_address_is_refused_by_default(client_for, tiny_model_dir, url):
    api = client_for(MODEL_DIR=tiny_model_dir)
    refused = api.client.post("/text-generation", json={**GENERATION, "webhook": url},
                              headers={**api.headers, **ASYNC})
    assert refused.status_code == 422 and "INFER_WEBHOOK_ALLOWED_NETWORKS" in refused.json["message"]
    assert "webhook" in refused.json["errors"]
    assert api.client.get("/predictions", headers=api.headers).json["data"] == []


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost", "http://user:pw@example.com/",
                                 "javascript:alert(1)", "http://" + "a" * 2000 + ".com/"])
def test_a_webhook_that_is_not_a_plain_http_url_is_refused(url):
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.check_url(url)


def test_a_host_that_resolves_to_a_public_and_a_private_address_is_refused(monkeypatch):
    # DNS cannot be served here: getaddrinfo stands in for a resolver that answers both.
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 80)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 80))]
    monkeypatch.setattr(webhooks.socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(webhooks.WebhookRefused, match="10.0.0.5, a private address"):
        webhooks.destination("http://rebind.example/hook", [])
    assert webhooks.destination("http://rebind.example/hook", webhooks.allowed_networks("10.0.0.0/8"))[3] \
        == "93.184.215.14"


def test_a_webhook_refused_at_delivery_time_fails_without_retrying(idle_api_with_hook):
    api, prediction_id = idle_api_with_hook
    runner = api.app.extensions["predictions"]
    runner.networks = []  # the operator removed the network since
    runner.run(runner.claim())
    with api.app.extensions["db"].sessions() as session:
        from app.db import Prediction

        row = session.get(Prediction, prediction_id)
        assert (row.status, row.webhook_status, row.webhook_attempts) == ("succeeded", "failed", 1)
        assert "loopback" in row.webhook_error


@pytest.fixture
def idle_api_with_hook(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
    created = api.client.post("/text-generation", json={**GENERATION, "webhook": "http://127.0.0.1:9/hook"},
                              headers={**api.headers, **ASYNC})
    assert created.status_code == 202
    return api, created.json["id"]


def test_a_bad_allowed_networks_setting_fails_naming_it():
    with pytest.raises(ValueError, match="INFER_WEBHOOK_ALLOWED_NETWORKS: 'intranet'"):
        webhooks.allowed_networks("10.0.0.0/8, intranet")
