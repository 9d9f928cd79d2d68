"""Webhooks of asynchronous predictions: a real HTTP server receives one signed call;
a failing one is retried with back-off; loopback, private and link-local
destinations are refused unless the operator allows their network."""

import hashlib
import hmac
import json
import socket
import threading
import time

import pytest

from predictions import webhooks

from .test_async_predictions import ASYNC, GENERATION


def webhook_state(api, prediction_id: str, timeout_s: float = 30) -> tuple:
    """(webhook_status, webhook_attempts, webhook_error) once the delivery has ended."""
    from core.tables import Prediction

    deadline = time.monotonic() + timeout_s
    while True:
        with api.app.extensions["db"].sessions() as session:
            row = session.get(Prediction, prediction_id)
            if row.webhook_status != "pending":
                return row.webhook_status, row.webhook_attempts, row.webhook_error
        assert time.monotonic() < deadline, "the webhook delivery never ended"
        time.sleep(0.02)


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
    resolver = webhooks.Resolver(threads=2, timeout_s=5)
    with pytest.raises(webhooks.WebhookRefused, match="10.0.0.5, a private address"):
        webhooks.destination("http://rebind.example/hook", [], resolver)
    assert webhooks.destination("http://rebind.example/hook", webhooks.allowed_networks("10.0.0.0/8"),
                                resolver)[3] == "93.184.215.14"


def test_a_webhook_refused_at_delivery_time_fails_without_retrying(idle_api_with_hook):
    api, prediction_id = idle_api_with_hook
    runner = api.app.extensions["predictions"]
    runner.webhooks.networks = []  # the operator removed the network since
    runner.run(runner.claim())
    assert runner.webhooks.deliver_one()  # what a pool thread does (this app runs none)
    assert not runner.webhooks.deliver_one()  # not retried
    with api.app.extensions["db"].sessions() as session:
        from core.tables import Prediction

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


# --- IPv6 forms that carry an IPv4 address ---------------------------------------------

@pytest.mark.parametrize("address, says", [
    ("2002:a00:1::1", "6to4 (2002::/16) address carrying 10.0.0.1, a private address"),
    ("2001:0:a00:1:8000:63bf:a2c9:1c87", "Teredo (2001::/32) server address carrying 10.0.0.1, a private address"),
    ("2001:0:4136:e378:8000:63bf:3f57:fefe", "Teredo (2001::/32) client address carrying 192.168.1.1, a private"),
    ("64:ff9b::7f00:1", "NAT64 (64:ff9b::/96) address carrying 127.0.0.1, a loopback address"),
    ("64:ff9b:1::5db8:d70e", "local-use NAT64 (64:ff9b:1::/48) address carrying 93.184.215.14: it reaches the "
                             "operator's own translator"),
    ("::a00:1", "IPv4-compatible (::/96) address carrying 10.0.0.1, a private address"),
    ("2a00:1450::5efe:a00:1", "ISATAP (interface identifier ::5efe:a.b.c.d) address carrying 10.0.0.1, a private"),
    ("2a00:1450::200:5efe:a9fe:a9fe", "ISATAP (interface identifier ::5efe:a.b.c.d) address carrying "
                                      "169.254.169.254, a link-local address"),
    ("::ffff:0:a00:1", "IPv4-translated (::ffff:0:0:0/96) address carrying 10.0.0.1, a private address"),
    ("::ffff:169.254.169.254", "IPv4-mapped (::ffff:0:0/96) address carrying 169.254.169.254, a link-local"),
])
def test_an_ipv6_address_carrying_a_non_public_ipv4_address_is_refused_naming_the_form(client_for, tiny_model_dir,
                                                                                        address, says):
    api = client_for(MODEL_DIR=tiny_model_dir)
    refused = api.client.post("/text-generation", json={**GENERATION, "webhook": f"http://[{address}]/hook"},
                              headers={**api.headers, **ASYNC})
    assert refused.status_code == 422 and says in refused.json["message"], refused.json
    assert api.client.get("/predictions", headers=api.headers).json["data"] == []


@pytest.mark.parametrize("address", ["2002:5db8:d70e::1", "64:ff9b::5db8:d70e", "2a00:1450::5efe:5db8:d70e"])
def test_an_ipv6_address_carrying_a_public_ipv4_address_is_accepted(client_for, tiny_model_dir, address):
    api = client_for(MODEL_DIR=tiny_model_dir)
    created = api.client.post("/text-generation", json={**GENERATION, "webhook": f"http://[{address}]/hook"},
                              headers={**api.headers, **ASYNC})
    assert created.status_code == 202, created.json


def test_an_operator_allowed_network_admits_the_ipv4_address_inside_an_ipv6_form():
    allowed = webhooks.allowed_networks("10.0.0.0/8")
    assert webhooks.why_refused(webhooks.ipaddress.ip_address("2002:a00:1::1"), allowed) is None
    assert "192.168.0.1" in webhooks.why_refused(webhooks.ipaddress.ip_address("2002:c0a8:1::1"), allowed)


# --- a slow-loris endpoint --------------------------------------------------------------

class SlowLoris:
    """A TCP server on 127.0.0.1 that reads a request, then answers one byte a second:
    an HTTP answer that would take a minute to arrive. Records, per connection,
    how many bytes it sent before the client hung up."""

    ANSWER = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 60 + b"\r\n\r\n"

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.sent: list[int] = []  # bytes sent on each connection so far
        self.ended: list[bool] = []  # whether the client hung up on it
        self.changed = threading.Condition()
        self.closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self.changed:
                self.sent.append(0)
                self.ended.append(False)
                number = len(self.sent) - 1
                self.changed.notify_all()
            threading.Thread(target=self._dribble, args=(connection, number), daemon=True).start()

    def _dribble(self, connection, number: int):
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            for byte in self.ANSWER:
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    break
                with self.changed:
                    self.sent[number] += 1
                    self.changed.notify_all()
                connection.settimeout(1.0)  # a second until the next byte, or the client hanging up
                try:
                    if connection.recv(1) == b"":
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
                if self.closing.is_set():
                    return
        with self.changed:
            self.ended[number] = True
            self.changed.notify_all()

    def wait(self, condition, timeout_s: float = 60):
        with self.changed:
            assert self.changed.wait_for(condition, timeout_s), (self.sent, self.ended)

    def close(self):
        self.closing.set()
        self.listener.close()


@pytest.fixture
def slow_loris():
    server = SlowLoris()
    yield server
    server.close()


def test_a_slow_loris_webhook_holds_one_pool_thread_until_its_deadline_while_others_are_served(
        client_for, tiny_model_dir, slow_loris, monkeypatch):
    calls_on = []
    real_post = webhooks.webhook_http.post

    def post_recording_its_thread(*args, **kwargs):  # the real call, noting where it runs
        calls_on.append(threading.current_thread().name)
        return real_post(*args, **kwargs)

    monkeypatch.setattr(webhooks.webhook_http, "post", post_recording_its_thread)
    # One prediction thread: before the pool, the call held it, and bob's prediction waited.
    api = client_for(MODEL_DIR=tiny_model_dir, PREDICTIONS=True, PREDICTION_THREADS=1, PREDICTION_POLL_S=0.05,
                     WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32", WEBHOOK_TIMEOUT_S=6, WEBHOOK_RETRY_S=0.05,
                     WEBHOOK_MAX_ATTEMPTS=2, WEBHOOK_THREADS=2)
    bob = api.headers_for("bob")
    alices = api.client.post("/text-generation", json={**GENERATION, "webhook": slow_loris.url},
                             headers={**api.headers, **ASYNC}).json["id"]
    slow_loris.wait(lambda: slow_loris.sent and slow_loris.sent[0] >= 1)  # the call is under way, answered slowly

    bobs = api.client.post("/text-generation", json=GENERATION, headers={**bob, **ASYNC}).json["id"]
    until_done = time.monotonic() + 60
    while api.client.get(f"/predictions/{bobs}", headers=bob).json["status"] != "succeeded":
        assert time.monotonic() < until_done
        time.sleep(0.02)
    assert slow_loris.ended == [False]  # bob was served while the slow call still held its thread
    assert api.client.get("/healthz").status_code == 200

    # Each call ends at the deadline, long before the minute the answer takes (a
    # deadline per read would never end it: a byte comes every second); then
    # it is retried, and given up after the attempts.
    status, attempts, error = webhook_state(api, alices, timeout_s=60)
    assert (status, attempts) == ("failed", 2) and "INFER_WEBHOOK_TIMEOUT_S" in error, error
    slow_loris.wait(lambda: slow_loris.ended == [True, True])
    assert all(sent < len(SlowLoris.ANSWER) for sent in slow_loris.sent), slow_loris.sent
    assert calls_on and all(name.startswith("webhooks-") for name in calls_on), calls_on  # only on the pool
    pool = [thread for thread in threading.enumerate() if thread.name.startswith("webhooks-") and thread.is_alive()]
    assert len(pool) >= 2  # the pool's own threads: this app's two (and any a previous test left to end)


# --- the call's deadline, and the lookup's --------------------------------------------

class QuietServer:
    """A TCP server on 127.0.0.1 that accepts connections and then only sends what it is told."""

    def __init__(self, answer: bytes = b""):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer = answer
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)  # held open: never closed by the server
            if self.answer:
                connection.sendall(self.answer)

    def close(self):
        self.listener.close()
        for connection in self.connections:
            connection.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_endpoint_that_never_answers_ends_the_call_at_its_deadline(scheme):
    server = QuietServer()
    try:
        # https: the TLS handshake never gets its answer either.
        with pytest.raises(TimeoutError, match=r"INFER_WEBHOOK_TIMEOUT_S \(0.5 s\)"):
            webhooks.webhook_http.post(scheme, "hooks.example", server.port, "127.0.0.1", "/hook", {}, b"{}", 0.5)
        assert len(server.connections) == 1
    finally:
        server.close()


def test_an_interim_answer_is_skipped_and_an_answer_without_a_body_is_not_waited_for():
    server = QuietServer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    try:
        assert webhooks.webhook_http.post("http", "hooks.example", server.port, "127.0.0.1", "/", {}, b"{}", 60) == 204
    finally:
        server.close()


def test_a_lookup_is_bounded_in_time_and_in_number(monkeypatch):
    # DNS cannot be served here: getaddrinfo stands in for a resolver that does not answer.
    answering = threading.Event()

    def slow_getaddrinfo(host, port, *args, **kwargs):
        answering.wait(30)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]

    monkeypatch.setattr(webhooks.socket, "getaddrinfo", slow_getaddrinfo)
    resolver = webhooks.Resolver(threads=1, timeout_s=0.2)
    with pytest.raises(webhooks.WebhookUnresolved, match=r"did not resolve within INFER_WEBHOOK_RESOLVE_TIMEOUT_S"):
        resolver.addresses("slow.example", 443)
    with pytest.raises(webhooks.WebhookUnresolved, match="every lookup slot is busy") as busy:
        resolver.addresses("other.example", 443)  # the first lookup still holds the only slot
    assert not busy.value.final  # tried again later, not given up
    answering.set()
    until_free = time.monotonic() + 30
    while True:
        try:
            assert resolver.addresses("slow.example", 443) == ["93.184.215.14"]
            break
        except webhooks.WebhookUnresolved:
            assert time.monotonic() < until_free
            time.sleep(0.05)
